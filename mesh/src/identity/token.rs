//! Callers that prove who they are with a Kubernetes service-account token (cluster mode).
//!
//! On a cluster there is no node certificate to hand out: the kubelet already gives every pod
//! a token signed by the API server. A caller sends a projected token for the audience
//! [`TOKEN_AUDIENCE`]; the CA asks the API server whose it is (TokenReview) and trusts only
//! that answer. The node agent's service account then acts as the node its pod runs on (node
//! authorization, exactly as with a node certificate); any other service account may obtain
//! its own identity and nothing else, which is how a waypoint gets its SVID.
//!
//! The node comes from the token itself where the API server binds it (Kubernetes ≥ 1.30 puts
//! the node name in the review's extra fields), else from the pod the token is bound to.
//! Placement is read from the API server at each request rather than from a cache: requests
//! are rare (one per identity per half-life, plus new pods), and a stale cache would let a
//! node keep identities of pods that left it.

use std::fmt;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::authz::Scheduled;

/// The audience node agents and waypoints ask their token for, and the CA requires.
pub const TOKEN_AUDIENCE: &str = "ambit-ca";

const SA_USER_PREFIX: &str = "system:serviceaccount:";
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// Why a token caller is turned away before any authorization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the API server rejected the token: {0}")]
    Rejected(String),
    #[error("the token is not for audience {expected} (it is for {got:?})")]
    Audience { expected: String, got: Vec<String> },
    #[error("the token belongs to {0:?}, not to a service account")]
    NotServiceAccount(String),
    #[error("asking the API server failed: {0}")]
    Api(String),
    #[error("{owner} acts as a node, but the API server names no node for it and its pod {pod} is not found")]
    NoNode { owner: String, pod: String },
    #[error("{owner} acts as a node, but its token is bound to no pod, so its node is unknown")]
    Unbound { owner: String },
}

impl TokenError {
    /// Whether the caller's credential is at fault (Unauthenticated) rather than the CA's
    /// access to the API server (Unavailable).
    pub fn is_callers_fault(&self) -> bool {
        !matches!(self, TokenError::Api(_))
    }
}

/// Whose a token is, as the API server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub namespace: String,
    pub service_account: String,
    /// The pod a bound (projected) token belongs to.
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    /// The node that pod runs on, where the API server says so.
    pub node: Option<String>,
}

impl TokenOwner {
    /// Reads a TokenReview's answer: authenticated, for `audience`, and a service account.
    pub fn from_status(status: &TokenReviewStatus, audience: &str) -> Result<Self, TokenError> {
        if status.authenticated != Some(true) {
            let why = status.error.clone().unwrap_or_default();
            return Err(TokenError::Rejected(if why.is_empty() {
                "not authenticated".to_owned()
            } else {
                why
            }));
        }
        let audiences = status.audiences.clone().unwrap_or_default();
        if !audiences.iter().any(|a| a == audience) {
            return Err(TokenError::Audience {
                expected: audience.to_owned(),
                got: audiences,
            });
        }
        let user = status.user.clone().unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let (namespace, service_account) = username
            .strip_prefix(SA_USER_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
            .ok_or_else(|| TokenError::NotServiceAccount(username.clone()))?;
        let extra = user.extra.unwrap_or_default();
        let first = |key: &str| -> Option<String> {
            extra
                .get(key)
                .and_then(|values| values.first())
                .filter(|v| !v.is_empty())
                .cloned()
        };
        Ok(TokenOwner {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            pod: first(EXTRA_POD_NAME),
            pod_uid: first(EXTRA_POD_UID),
            node: first(EXTRA_NODE_NAME),
        })
    }
}

impl fmt::Display for TokenOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service account {}/{}",
            self.namespace, self.service_account
        )?;
        if let Some(pod) = &self.pod {
            write!(f, " (pod {pod})")?;
        }
        Ok(())
    }
}

/// The API server as the CA uses it: token reviews and pod placement.
#[derive(Clone)]
pub struct KubeAuth {
    client: Client,
    audience: String,
    /// `(namespace, name)` of the node agents' service account.
    node_agents: (String, String),
}

impl KubeAuth {
    /// `node_agents` is the node agents' service account as `namespace/name`.
    pub fn new(client: Client, node_agents: (String, String)) -> Self {
        KubeAuth {
            client,
            audience: TOKEN_AUDIENCE.to_owned(),
            node_agents,
        }
    }

    /// Whether `owner` is a node agent, and so acts as its node.
    pub fn is_node_agent(&self, owner: &TokenOwner) -> bool {
        (owner.namespace.as_str(), owner.service_account.as_str())
            == (self.node_agents.0.as_str(), self.node_agents.1.as_str())
    }

    /// Asks the API server whose `token` is.
    pub async fn review(&self, token: &str) -> Result<TokenOwner, TokenError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answered = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| TokenError::Api(format!("TokenReview: {e}")))?;
        TokenOwner::from_status(&answered.status.unwrap_or_default(), &self.audience)
    }

    /// The node a node agent's token speaks for: named by the token, else its pod's node.
    pub async fn node_of(&self, owner: &TokenOwner) -> Result<String, TokenError> {
        if let Some(node) = &owner.node {
            return Ok(node.clone());
        }
        let Some(pod_name) = &owner.pod else {
            return Err(TokenError::Unbound {
                owner: owner.to_string(),
            });
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &owner.namespace);
        let pod = api
            .get_opt(pod_name)
            .await
            .map_err(|e| TokenError::Api(format!("reading pod {pod_name}: {e}")))?;
        let no_node = || TokenError::NoNode {
            owner: owner.to_string(),
            pod: pod_name.clone(),
        };
        let pod = pod.ok_or_else(no_node)?;
        // A token outliving its pod, with a new pod of the same name, does not count.
        if owner.pod_uid.is_some() && pod.metadata.uid != owner.pod_uid {
            return Err(no_node());
        }
        pod.spec.and_then(|s| s.node_name).ok_or_else(no_node)
    }

    /// The pods scheduled on `node` that are not finished.
    pub async fn pods_on_node(&self, node: &str) -> Result<Vec<Scheduled>, TokenError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!(
            "spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
        ));
        let pods = api
            .list(&params)
            .await
            .map_err(|e| TokenError::Api(format!("listing pods on {node}: {e}")))?;
        Ok(pods.items.iter().map(scheduled).collect())
    }
}

fn scheduled(pod: &Pod) -> Scheduled {
    let spec = pod.spec.clone().unwrap_or_default();
    Scheduled {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        service_account: spec
            .service_account_name
            .filter(|sa| !sa.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
        host_network: spec.host_network.unwrap_or(false),
    }
}

/// The bearer token of a request's `authorization` metadata, if any.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
