//! Ambit's Kubernetes API: the custom resources, and the CRDs generated from them.
//!
//! The CRD files under `deploy/crds/` (and the chart's `crds/`) are written by
//! `cargo xtask gen-crds` from [`crd_files`]; a test fails when they are stale.

pub mod duration;
mod traffic_policy;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use duration::{Duration, DurationError};
pub use traffic_policy::{
    ConnectionPool, FaultAbort, FaultDelay, FaultInjection, OutlierDetection, TargetKind,
    TargetRef, TargetRefError, TrafficPolicy, TrafficPolicySpec, TrafficPolicyStatus,
};

/// First line of every generated CRD file.
pub const GENERATED_HEADER: &str =
    "# Generated from mesh/src/api by `cargo xtask gen-crds`; do not edit.\n";

/// Every Ambit CRD.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![TrafficPolicy::crd()]
}

/// Every Ambit CRD as (file name, YAML text); file names follow controller-gen's
/// `<group>_<plural>.yaml`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            Ok((
                name,
                format!("{GENERATED_HEADER}{}", serde_yaml::to_string(&crd)?),
            ))
        })
        .collect()
}
