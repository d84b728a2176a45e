//! What a waypoint is made of: the objects of the waypoint template, filled in for one Gateway.
//!
//! The template is the chart's `ambit-waypoint-template` ConfigMap (one object per data
//! entry, with `${GATEWAY_NAME}` and `${GATEWAY_NAMESPACE}` to fill), so the deployer and a
//! person applying it by hand make the same objects. The deployer adds only what a template
//! cannot say: the image (`--waypoint-image`), the owner (the Gateway), the
//! `app.kubernetes.io/managed-by` label, and on the cluster-scoped ClusterRoleBinding, which
//! no namespaced Gateway can own, the Gateway's namespace as a label, so that a binding
//! whose Gateway is gone can be found and deleted.

use std::collections::BTreeMap;

use gateway_api::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::ApiResource;
use kube::Resource;
use serde_json::{json, Value};

/// The template as the plain manifests ship it (rendered from the chart with its defaults).
pub const BUILTIN_TEMPLATE: &str =
    include_str!("../../../deploy/manifests/base/waypoint-template.yaml");

/// The waypoint image the chart installs by default.
pub const DEFAULT_IMAGE: &str = concat!("ambit/ambit-waypoint:", env!("CARGO_PKG_VERSION"));

/// The field manager of every object the deployer applies, and their `managed-by` label.
pub const FIELD_MANAGER: &str = "ambit-controller";

/// `app.kubernetes.io/managed-by`: set to [`FIELD_MANAGER`] on every object applied.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// On a cluster-scoped object: the namespace of its Gateway (the template labels the name,
/// `gateway.networking.k8s.io/gateway-name`).
pub const GATEWAY_NAMESPACE: &str = "ambit.dev/gateway-namespace";

/// The ConfigMap, one per namespace with a waypoint, holding the mesh root (`root.pem`).
pub const ROOT_CERT_CONFIGMAP: &str = "ambit-root-cert";

/// The waypoint's container in the template's Deployment.
const CONTAINER: &str = "ambit-waypoint";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading the waypoint template {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the waypoint template directory {0} holds no template file")]
    Empty(std::path::PathBuf),
    #[error("the waypoint template is not a ConfigMap with data")]
    NotAConfigMap(#[source] serde_yaml::Error),
    #[error("waypoint template {file}: a placeholder is left unfilled ({placeholder})")]
    Unfilled { file: String, placeholder: String },
    #[error("waypoint template {file} is not valid YAML once filled in")]
    Yaml {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("waypoint template {file}: {what}")]
    Unsupported { file: String, what: String },
    #[error("Gateway {0} has no name, namespace or uid (not read from an API server?)")]
    Incomplete(String),
}

/// The waypoint template: file name → text with placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    files: BTreeMap<String, String>,
}

impl Template {
    /// The template built into the binary ([`BUILTIN_TEMPLATE`]).
    pub fn builtin() -> Result<Self, RenderError> {
        Self::from_configmap(BUILTIN_TEMPLATE)
    }

    /// A template from the YAML of the `ambit-waypoint-template` ConfigMap.
    pub fn from_configmap(yaml: &str) -> Result<Self, RenderError> {
        let configmap: ConfigMap =
            serde_yaml::from_str(yaml).map_err(RenderError::NotAConfigMap)?;
        Ok(Template {
            files: configmap.data.unwrap_or_default(),
        })
    }

    /// A template from a directory with one file per ConfigMap entry, as a ConfigMap volume
    /// holds them (Kubernetes' `..data` entries are skipped).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, RenderError> {
        fn read(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
            move |source| RenderError::Read {
                path: path.to_owned(),
                source,
            }
        }
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read(dir))? {
            let path = entry.map_err(read(dir))?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            // A ConfigMap volume's entries are symlinks into a `..data` directory.
            if name.starts_with('.') || !std::fs::metadata(&path).map_err(read(&path))?.is_file() {
                continue;
            }
            files.insert(name, std::fs::read_to_string(&path).map_err(read(&path))?);
        }
        if files.is_empty() {
            return Err(RenderError::Empty(dir.to_owned()));
        }
        Ok(Template { files })
    }

    /// Every object of the template filled in for `gateway`, in [`apply_order`], with
    /// `image` as the waypoint's image.
    pub fn render(&self, gateway: &Gateway, image: &str) -> Result<Vec<Desired>, RenderError> {
        let (namespace, name, uid) = identity(gateway)?;
        let mut out = Vec::new();
        for (file, text) in &self.files {
            let filled = text
                .replace("${GATEWAY_NAME}", name)
                .replace("${GATEWAY_NAMESPACE}", namespace);
            if let Some(at) = filled.find("${") {
                let placeholder = filled[at..].chars().take_while(|c| *c != '}').collect();
                return Err(RenderError::Unfilled {
                    file: file.clone(),
                    placeholder,
                });
            }
            for document in serde_yaml::Deserializer::from_str(&filled) {
                let object: Value =
                    serde::Deserialize::deserialize(document).map_err(|source| {
                        RenderError::Yaml {
                            file: file.clone(),
                            source,
                        }
                    })?;
                if object.is_null() {
                    continue;
                }
                let unsupported = |what: String| RenderError::Unsupported {
                    file: file.clone(),
                    what,
                };
                let mut desired = Desired::new(object).map_err(unsupported)?;
                desired.label(MANAGED_BY, FIELD_MANAGER);
                match &desired.namespace {
                    Some(ns) if ns == namespace => {
                        desired.object["metadata"]["ownerReferences"] =
                            json!([owner(name, uid, true)]);
                    }
                    Some(ns) => {
                        return Err(unsupported(format!(
                            "{} {} is in namespace {ns}, not the Gateway's",
                            desired.kind(),
                            desired.name
                        )))
                    }
                    None => desired.label(GATEWAY_NAMESPACE, namespace),
                }
                if desired.kind() == "Deployment" {
                    desired.set_image(image).map_err(unsupported)?;
                }
                out.push(desired);
            }
        }
        out.sort_by_key(|d| apply_order(d.kind()));
        Ok(out)
    }
}

/// The ConfigMap [`ROOT_CERT_CONFIGMAP`] of `namespace`, holding `root_pem` and owned by every
/// waypoint Gateway of the namespace (`owners`), none of them as controller: it is shared, and
/// goes when the last of them does.
pub fn root_cert(
    namespace: &str,
    owners: &[&Gateway],
    root_pem: &str,
) -> Result<Desired, RenderError> {
    let mut refs = Vec::new();
    for gateway in owners {
        let (_, name, uid) = identity(gateway)?;
        refs.push(owner(name, uid, false));
    }
    refs.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CERT_CONFIGMAP,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "ambit", MANAGED_BY: FIELD_MANAGER},
            "ownerReferences": refs,
        },
        "data": {"root.pem": root_pem},
    });
    Desired::new(object).map_err(|what| RenderError::Unsupported {
        file: ROOT_CERT_CONFIGMAP.to_owned(),
        what,
    })
}

/// Where a kind comes in the order of applying: the Deployment last, so that its first pod
/// finds its service account, its RBAC and the mesh root.
pub fn apply_order(kind: &str) -> u8 {
    match kind {
        "ServiceAccount" => 0,
        "ClusterRoleBinding" => 1,
        "ConfigMap" => 2,
        "Service" => 3,
        _ => 4,
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub resource: ApiResource,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
    /// The whole object, as sent in the server-side apply.
    pub object: Value,
}

impl Desired {
    fn new(object: Value) -> Result<Self, String> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let (resource, namespaced) = match (api_version, kind) {
            ("v1", "ServiceAccount") => (ApiResource::erase::<ServiceAccount>(&()), true),
            ("v1", "Service") => (ApiResource::erase::<Service>(&()), true),
            ("v1", "ConfigMap") => (ApiResource::erase::<ConfigMap>(&()), true),
            ("apps/v1", "Deployment") => (ApiResource::erase::<Deployment>(&()), true),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                (ApiResource::erase::<ClusterRoleBinding>(&()), false)
            }
            _ => {
                return Err(format!(
                    "the deployer does not apply {kind} ({api_version}); extend render.rs and the controller's RBAC"
                ))
            }
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(format!("a {kind} without a name"));
        }
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        if namespaced != namespace.is_some() {
            return Err(format!(
                "{kind} {name}: a namespace is {} for this kind",
                if namespaced {
                    "required"
                } else {
                    "not allowed"
                }
            ));
        }
        Ok(Desired {
            resource,
            namespace,
            name,
            object,
        })
    }

    pub fn kind(&self) -> &str {
        &self.resource.kind
    }

    fn label(&mut self, key: &str, value: &str) {
        let labels = &mut self.object["metadata"]["labels"];
        if labels.is_null() {
            *labels = json!({});
        }
        labels[key] = json!(value);
    }

    fn set_image(&mut self, image: &str) -> Result<(), String> {
        let containers = self.object["spec"]["template"]["spec"]["containers"].as_array_mut();
        let container = containers
            .into_iter()
            .flatten()
            .find(|c| c["name"] == CONTAINER)
            .ok_or_else(|| format!("Deployment {} has no container {CONTAINER}", self.name))?;
        container["image"] = json!(image);
        Ok(())
    }
}

/// `(namespace, name, uid)` of a Gateway as read from the API server.
fn identity(gateway: &Gateway) -> Result<(&str, &str, &str), RenderError> {
    let meta = &gateway.metadata;
    match (&meta.namespace, &meta.name, &meta.uid) {
        (Some(ns), Some(name), Some(uid)) => Ok((ns, name, uid)),
        _ => Err(RenderError::Incomplete(format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ))),
    }
}

/// An ownerReference to the Gateway `name` (no `blockOwnerDeletion`, which would need
/// `update` on gateways/finalizers).
fn owner(name: &str, uid: &str, controller: bool) -> Value {
    let mut owner = json!({
        "apiVersion": Gateway::api_version(&()),
        "kind": Gateway::kind(&()),
        "name": name,
        "uid": uid,
    });
    if controller {
        owner["controller"] = json!(true);
    }
    owner
}
