//! A Kubernetes namespace, as far as the mesh cares: its name and labels.

use std::collections::BTreeMap;

use serde::Serialize;

/// A namespace that workloads name but no source lists is treated as one without labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
