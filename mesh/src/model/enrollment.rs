//! Which workloads join the mesh, and why the others do not.
//!
//! A namespace labelled `ambit.dev/dataplane-mode: ambient` enrolls its pods; a pod labelled
//! `ambit.dev/dataplane-mode: none` opts out even there. A pod cannot opt in alone: the label
//! `ambient` on a pod in an unlabelled namespace does nothing, as in Istio ambient.
//! Host-network pods share their node's network namespace and are never enrolled.
//!
//! The file source refuses other label values. Should one reach this decision anyway, it
//! counts as absent: a namespace needs exactly `ambient` to enroll, a pod exactly `none` to
//! opt out.

use std::fmt;

use serde::Serialize;

use super::labels::{DataplaneMode, DATAPLANE_MODE};
use super::{Namespace, Workload};

/// Whether a workload is in the mesh; when it is not, the reason an operator needs.
///
/// When several reasons hold, the first of `HostNetwork`, `OptedOut`, `NamespaceNotEnrolled`
/// is given: the most specific one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Enrollment {
    /// The node agent redirects the pod's traffic into the mesh.
    Enrolled,
    /// The pod's namespace is not labelled `ambit.dev/dataplane-mode: ambient`.
    NamespaceNotEnrolled,
    /// The pod is labelled `ambit.dev/dataplane-mode: none`.
    OptedOut,
    /// The pod uses its node's network namespace.
    HostNetwork,
}

impl Enrollment {
    pub fn is_enrolled(self) -> bool {
        self == Self::Enrolled
    }
}

impl fmt::Display for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Enrolled => "enrolled",
            Self::NamespaceNotEnrolled => {
                "not enrolled: namespace is not labelled ambit.dev/dataplane-mode=ambient"
            }
            Self::OptedOut => "not enrolled: pod is labelled ambit.dev/dataplane-mode=none",
            Self::HostNetwork => "not enrolled: pod uses the host network",
        })
    }
}

/// Decides `workload`'s enrollment from its own labels and those of its namespace (`None`
/// when no source lists the namespace: no labels).
pub fn decide(namespace: Option<&Namespace>, workload: &Workload) -> Enrollment {
    if workload.host_network {
        Enrollment::HostNetwork
    } else if mode(&workload.labels) == Some(DataplaneMode::None) {
        Enrollment::OptedOut
    } else if namespace_enrolls(namespace) {
        Enrollment::Enrolled
    } else {
        Enrollment::NamespaceNotEnrolled
    }
}

/// Whether the namespace is labelled to enroll its pods.
pub fn namespace_enrolls(namespace: Option<&Namespace>) -> bool {
    namespace.and_then(|ns| mode(&ns.labels)) == Some(DataplaneMode::Ambient)
}

fn mode(labels: &std::collections::BTreeMap<String, String>) -> Option<DataplaneMode> {
    labels
        .get(DATAPLANE_MODE)
        .and_then(|value| DataplaneMode::parse(value))
}
