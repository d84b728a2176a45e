//! Gateway API objects in the model: Gateways, HTTPRoutes and GRPCRoutes, as the gateway-api
//! crate's types, trimmed to what their authors wrote.
//!
//! Both sources hand objects over through [`Trimmed::trimmed`], so that the same manifest
//! makes the same model whether it came from a file or from the API server: what the server
//! adds (`uid`, `resourceVersion`, `generation`, `managedFields`, timestamps, owners,
//! kubectl's last-applied annotation) and `status` (written by controllers, not read by the
//! mesh) are dropped; name, namespace, labels, other annotations and `spec` are kept. Routes
//! and TrafficPolicies also keep `generation`, which their status conditions report as
//! `observedGeneration` (it changes only with `spec`, so it costs no extra rebuild; a
//! file's objects have none).

use std::collections::BTreeMap;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gateways::Gateway;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::TrafficPolicy;

/// kubectl's copy of the applied manifest: large, and the same as the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Gateway API object as the model keeps it.
pub trait Trimmed: Sized {
    /// The object without server-set metadata and without `status`.
    fn trimmed(self) -> Self;
}

impl Trimmed for Gateway {
    fn trimmed(self) -> Self {
        Self {
            metadata: trimmed_meta(self.metadata),
            spec: self.spec,
            status: None,
        }
    }
}

impl Trimmed for HttpRoute {
    fn trimmed(self) -> Self {
        let generation = self.metadata.generation;
        Self {
            metadata: ObjectMeta {
                generation,
                ..trimmed_meta(self.metadata)
            },
            spec: self.spec,
            status: None,
        }
    }
}

impl Trimmed for TrafficPolicy {
    fn trimmed(self) -> Self {
        let generation = self.metadata.generation;
        Self {
            metadata: ObjectMeta {
                generation,
                ..trimmed_meta(self.metadata)
            },
            spec: self.spec,
            status: None,
        }
    }
}

impl Trimmed for GrpcRoute {
    fn trimmed(self) -> Self {
        let generation = self.metadata.generation;
        Self {
            metadata: ObjectMeta {
                generation,
                ..trimmed_meta(self.metadata)
            },
            spec: self.spec,
            status: None,
        }
    }
}

/// Name, namespace, labels and annotations (but kubectl's last-applied copy); an empty map
/// becomes `None`, as the API server omits it.
pub fn trimmed_meta(meta: ObjectMeta) -> ObjectMeta {
    let non_empty = |map: Option<BTreeMap<String, String>>| map.filter(|m| !m.is_empty());
    let mut annotations = meta.annotations;
    if let Some(a) = annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: non_empty(meta.labels),
        annotations: non_empty(annotations),
        ..ObjectMeta::default()
    }
}

/// `namespace/name` of an object's metadata, `""` for a missing part (refused by the model).
pub(super) fn key(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}
