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
            let mut value = serde_yaml::to_value(&crd)?;
            integral_numbers_as_integers(&mut value);
            let text = serde_yaml::to_string(&value)?;
            Ok((name, format!("{GENERATED_HEADER}{text}")))
        })
        .collect()
}

/// schemars writes bounds as floats (`minimum: 1.0`); write whole numbers as integers, as
/// the API server and kubectl print them back.
fn integral_numbers_as_integers(value: &mut serde_yaml::Value) {
    use serde_yaml::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if (i64::MIN as f64..=i64::MAX as f64).contains(&f) {
                    *n = (f as i64).into();
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Mapping(fields) => fields
            .iter_mut()
            .for_each(|(_, v)| integral_numbers_as_integers(v)),
        Value::Tagged(tagged) => integral_numbers_as_integers(&mut tagged.value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crd_bounds_are_written_as_integers() {
        let files = super::crd_files().expect("serializing the CRDs");
        let (_, text) = &files[0];
        assert!(text.contains("minimum: 1\n"), "{text}");
        assert!(!text.contains("minimum: 1.0"), "{text}");
    }
}
