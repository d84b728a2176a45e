//! The CA on a cluster: callers authenticated by service-account tokens, reviewed by an API
//! server (a `kube::Client` over an in-process service answering TokenReviews and pod reads),
//! over real TLS and gRPC.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{id, temp_dir, test_ca};
use crate::identity::{
    authorize_own, serve, server_config, Ca, CaClient, CaMetrics, CaService, ClientAuth, KubeAuth,
    TokenError, TokenOwner, TOKEN_AUDIENCE,
};

/// Extra fields as a TokenReview answers them, from `(key suffix, value)` pairs.
fn extra(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                format!("authentication.kubernetes.io/{k}"),
                vec![(*v).to_owned()],
            )
        })
        .collect()
}

fn status(value: Value) -> TokenReviewStatus {
    serde_json::from_value(value).expect("a TokenReview status")
}

fn owner(ns: &str, sa: &str) -> TokenOwner {
    TokenOwner {
        namespace: ns.into(),
        service_account: sa.into(),
        pod: None,
        pod_uid: None,
        node: None,
    }
}

#[test]
fn review_names_the_service_account_pod_and_node() {
    let owner = TokenOwner::from_status(
        &status(json!({
            "authenticated": true,
            "audiences": ["ambit-ca"],
            "user": {
                "username": "system:serviceaccount:ambit-system:ambit-node",
                "extra": extra(&[("pod-name", "ambit-node-x1"), ("pod-uid", "u-1"), ("node-name", "n1")]),
            },
        })),
        TOKEN_AUDIENCE,
    )
    .unwrap();
    assert_eq!(
        owner,
        TokenOwner {
            namespace: "ambit-system".into(),
            service_account: "ambit-node".into(),
            pod: Some("ambit-node-x1".into()),
            pod_uid: Some("u-1".into()),
            node: Some("n1".into()),
        }
    );
    assert_eq!(
        owner.to_string(),
        "service account ambit-system/ambit-node (pod ambit-node-x1)"
    );
}

#[test]
fn review_refuses_unauthenticated_other_audiences_and_users() {
    let refused = TokenOwner::from_status(
        &status(json!({"authenticated": false, "error": "token expired"})),
        TOKEN_AUDIENCE,
    );
    assert_eq!(refused, Err(TokenError::Rejected("token expired".into())));
    let other_audience = TokenOwner::from_status(
        &status(json!({
            "authenticated": true,
            "audiences": ["https://kubernetes.default.svc"],
            "user": {"username": "system:serviceaccount:shop:web"},
        })),
        TOKEN_AUDIENCE,
    )
    .unwrap_err();
    assert!(
        other_audience
            .to_string()
            .contains("not for audience ambit-ca"),
        "{other_audience}"
    );
    for username in [
        "alice",
        "system:serviceaccount:shop",
        "system:serviceaccount::x",
    ] {
        let err = TokenOwner::from_status(
            &status(json!({
                "authenticated": true,
                "audiences": ["ambit-ca"],
                "user": {"username": username},
            })),
            TOKEN_AUDIENCE,
        )
        .unwrap_err();
        assert_eq!(err, TokenError::NotServiceAccount(username.into()));
    }
}

#[test]
fn a_workload_token_obtains_its_own_identity_only() {
    let waypoint = owner("shop", "shop-waypoint");
    assert_eq!(
        authorize_own("cluster.local", &waypoint, &id("shop", "shop-waypoint")),
        Ok(())
    );
    let message = authorize_own("cluster.local", &waypoint, &id("shop", "payments"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "service account shop/shop-waypoint may obtain only its own identity \
         spiffe://cluster.local/ns/shop/sa/shop-waypoint, not spiffe://cluster.local/ns/shop/sa/payments"
    );
    let foreign = crate::identity::SpiffeId::new("elsewhere.org", "shop", "shop-waypoint").unwrap();
    assert!(authorize_own("cluster.local", &waypoint, &foreign).is_err());
}

/// What the fake API server knows: token → review status, and pods.
#[derive(Default)]
struct Cluster {
    tokens: BTreeMap<String, Value>,
    pods: Vec<Value>,
    /// Requests seen, as `METHOD path?query`.
    seen: Vec<String>,
}

fn pod(ns: &str, name: &str, uid: &str, sa: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "uid": uid},
        "spec": {"nodeName": node, "serviceAccountName": sa, "containers": []},
        "status": {"phase": "Running"},
    })
}

fn service_account_token(ns: &str, sa: &str, extras: &[(&str, &str)]) -> Value {
    json!({
        "authenticated": true,
        "audiences": [TOKEN_AUDIENCE],
        "user": {
            "username": format!("system:serviceaccount:{ns}:{sa}"),
            "extra": extra(extras),
        },
    })
}

/// Answers the three requests the CA makes: create TokenReview, list pods by node, get pod.
async fn answer(
    cluster: Arc<Mutex<Cluster>>,
    req: Request<kube::client::Body>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let mut cluster = cluster.lock().unwrap();
    cluster
        .seen
        .push(format!("{} {path}?{query}", parts.method));
    let ok = |v: Value| {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    let not_found = || {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}).to_string(),
            )))
            .unwrap()
    };
    if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(review["spec"]["audiences"], json!([TOKEN_AUDIENCE]));
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let status =
            cluster.tokens.get(token).cloned().unwrap_or_else(
                || json!({"authenticated": false, "error": "invalid bearer token"}),
            );
        let mut review = review;
        review["status"] = status;
        return ok(review);
    }
    if path == "/api/v1/pods" {
        let query = urlencoding_decode(&query);
        let node = query
            .split(['&', ','])
            .find_map(|kv| {
                kv.strip_prefix("fieldSelector=spec.nodeName=")
                    .or_else(|| kv.strip_prefix("spec.nodeName="))
            })
            .unwrap_or_default()
            .to_owned();
        let items: Vec<Value> = cluster
            .pods
            .iter()
            .filter(|p| p["spec"]["nodeName"] == json!(node))
            .cloned()
            .collect();
        return ok(
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
        );
    }
    if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        if let Some((ns, name)) = rest.split_once("/pods/") {
            let found = cluster
                .pods
                .iter()
                .find(|p| {
                    p["metadata"]["namespace"] == json!(ns) && p["metadata"]["name"] == json!(name)
                })
                .cloned();
            return found.map_or_else(not_found, ok);
        }
    }
    not_found()
}

/// Percent-decoding of the few characters a field selector is encoded with.
fn urlencoding_decode(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%21", "!")
}

fn kube_client(cluster: &Arc<Mutex<Cluster>>) -> kube::Client {
    let cluster = cluster.clone();
    let service = tower::service_fn(move |req| {
        let cluster = cluster.clone();
        async move { Ok::<_, Infallible>(answer(cluster, req).await) }
    });
    kube::Client::new(service, "default")
}

/// The CA in cluster mode on loopback, node agents being `ambit-system/ambit-node`.
struct KubeCa {
    addr: SocketAddr,
    ca: Arc<Ca>,
    metrics: Arc<CaMetrics>,
    cluster: Arc<Mutex<Cluster>>,
    server: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
}

impl Drop for KubeCa {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(name: &str) -> KubeCa {
    let ca = test_ca(name);
    let mut cluster = Cluster {
        pods: vec![
            pod(
                "ambit-system",
                "ambit-node-a",
                "uid-agent-a",
                "ambit-node",
                "n1",
            ),
            pod(
                "ambit-system",
                "ambit-node-b",
                "uid-agent-b",
                "ambit-node",
                "n2",
            ),
            pod("shop", "client-1", "uid-c1", "client", "n1"),
            pod("shop", "payments-1", "uid-p1", "payments", "n2"),
            pod("shop", "shop-waypoint-1", "uid-w1", "shop-waypoint", "n2"),
        ],
        ..Cluster::default()
    };
    // Kubernetes ≥ 1.30: the node is in the token.
    cluster.tokens.insert(
        "agent-n1".into(),
        service_account_token(
            "ambit-system",
            "ambit-node",
            &[
                ("pod-name", "ambit-node-a"),
                ("pod-uid", "uid-agent-a"),
                ("node-name", "n1"),
            ],
        ),
    );
    // Older: only the pod; the CA reads its node.
    cluster.tokens.insert(
        "agent-n2-pod-only".into(),
        service_account_token(
            "ambit-system",
            "ambit-node",
            &[("pod-name", "ambit-node-b"), ("pod-uid", "uid-agent-b")],
        ),
    );
    // A token that outlived its pod: same name, another UID now.
    cluster.tokens.insert(
        "agent-stale".into(),
        service_account_token(
            "ambit-system",
            "ambit-node",
            &[("pod-name", "ambit-node-b"), ("pod-uid", "uid-gone")],
        ),
    );
    cluster.tokens.insert(
        "waypoint".into(),
        service_account_token(
            "shop",
            "shop-waypoint",
            &[("pod-name", "shop-waypoint-1"), ("pod-uid", "uid-w1")],
        ),
    );
    let cluster = Arc::new(Mutex::new(cluster));
    let auth = KubeAuth::new(
        kube_client(&cluster),
        ("ambit-system".into(), "ambit-node".into()),
    );
    let service = CaService::kube(ca.clone(), auth);
    let metrics = service.metrics();
    let tls = server_config(&ca, ClientAuth::NodeCertificateOrToken).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        serve(listener, service, tls, std::future::pending())
            .await
            .unwrap();
    });
    let dir = temp_dir(&format!("{name}-client"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
    KubeCa {
        addr,
        ca,
        metrics,
        cluster,
        server,
        dir,
    }
}

/// A token client, its token file holding `token`, reaching the CA by host name.
fn token_client(running: &KubeCa, token: &str) -> CaClient {
    let token_file = running.dir.join(format!("token-{token}"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let addr = format!("localhost:{}", running.addr.port());
    CaClient::with_token(addr, &running.dir.join("root.pem"), &token_file).unwrap()
}

fn code(err: &crate::identity::CaClientError) -> Option<tonic::Code> {
    err.code()
}

#[tokio::test]
async fn node_agent_token_naming_its_node_obtains_identities_of_pods_there_only() {
    let running = start("token-node").await;
    let agent = token_client(&running, "agent-n1");
    let svid = agent.sign(&id("shop", "client")).await.unwrap();
    assert_eq!(svid.id, id("shop", "client"));
    super::verify_client_chain(running.ca.root(), &svid.chain).unwrap();

    let err = agent.sign(&id("shop", "payments")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains(
            "node n1 may not obtain spiffe://cluster.local/ns/shop/sa/payments: no workload of \
             service account payments in namespace shop is scheduled on n1"
        ),
        "{err}"
    );
    assert_eq!(running.metrics.signed_total.load(Ordering::Relaxed), 1);
    assert_eq!(running.metrics.refused_total.load(Ordering::Relaxed), 1);
    let seen = running.cluster.lock().unwrap().seen.clone();
    assert!(
        seen.iter()
            .all(|r| !r.contains("/namespaces/ambit-system/pods/")),
        "the node was in the token; no pod read needed: {seen:?}"
    );
}

#[tokio::test]
async fn node_agent_token_bound_only_to_a_pod_acts_as_that_pods_node() {
    let running = start("token-pod").await;
    let agent = token_client(&running, "agent-n2-pod-only");
    agent.sign(&id("shop", "payments")).await.unwrap();
    let err = agent.sign(&id("shop", "client")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::PermissionDenied), "{err}");

    let stale = token_client(&running, "agent-stale");
    let err = stale.sign(&id("shop", "payments")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(
        err.to_string()
            .contains("its pod ambit-node-b is not found"),
        "{err}"
    );
}

#[tokio::test]
async fn waypoint_token_obtains_its_own_identity_and_nothing_else() {
    let running = start("token-waypoint").await;
    let waypoint = token_client(&running, "waypoint");
    let svid = waypoint.sign(&id("shop", "shop-waypoint")).await.unwrap();
    assert_eq!(svid.id, id("shop", "shop-waypoint"));
    let err = waypoint.sign(&id("shop", "payments")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains("may obtain only its own identity"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_token_and_no_credential_are_unauthenticated() {
    let running = start("token-refused").await;
    let forged = token_client(&running, "forged");
    let err = forged.sign(&id("shop", "client")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(err.to_string().contains("invalid bearer token"), "{err}");

    // TLS without a client certificate and without a token.
    let root = std::fs::read_to_string(running.dir.join("root.pem")).unwrap();
    let tls = crate::identity::token_client_config(&root).unwrap();
    let bare = CaClient::new(running.addr, tls);
    let err = bare.sign(&id("shop", "client")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::Unauthenticated), "{err}");
    assert!(
        err.to_string().contains("no service-account token"),
        "{err}"
    );
    assert_eq!(running.metrics.signed_total.load(Ordering::Relaxed), 0);
    assert_eq!(running.metrics.refused_total.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn node_certificates_still_work_with_placement_from_the_api_server() {
    let running = start("token-nodecert").await;
    let node = crate::identity::NodeId::new("cluster.local", "n2").unwrap();
    let (chain, key) = running.ca.issue_node_cert(&node).unwrap();
    let tls = crate::identity::client_config(&chain, &key, running.ca.root_pem()).unwrap();
    let client = CaClient::new(running.addr, tls);
    client.sign(&id("shop", "payments")).await.unwrap();
    let err = client.sign(&id("shop", "client")).await.unwrap_err();
    assert_eq!(code(&err), Some(tonic::Code::PermissionDenied), "{err}");
    let seen = running.cluster.lock().unwrap().seen.clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("GET /api/v1/pods?") && r.contains("spec.nodeName%3Dn2")),
        "{seen:?}"
    );
}

#[test]
fn a_token_file_that_is_missing_or_empty_is_a_clear_error() {
    let dir = temp_dir("token-files");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = test_ca("token-files-ca");
    std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("empty"), "\n").unwrap();
    let root = dir.join("root.pem");
    let missing = CaClient::with_token("ca:15012", &root, Path::new("/nonexistent/token"))
        .err()
        .expect("a missing token file is refused");
    assert!(
        missing.to_string().contains("/nonexistent/token"),
        "{missing}"
    );
    let empty = CaClient::with_token("ca:15012", &root, &dir.join("empty"))
        .err()
        .expect("an empty token file is refused");
    assert!(empty.to_string().contains("is empty"), "{empty}");
    let _ = std::fs::remove_dir_all(&dir);
}
