//! A workload is a pod: its identity, where it runs and the addresses it answers on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The service account a pod runs as when its spec names none, as in Kubernetes.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The pod's UID (`metadata.uid`), from which the node agent finds its cgroup and network
    /// namespace; `None` when the source does not know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// With the namespace and the trust domain, the workload's SPIFFE ID.
    pub service_account: String,
    /// The name of the node the pod is scheduled on.
    pub node: String,
    /// The pod's addresses, usually one per IP family.
    pub ips: Vec<IpAddr>,
    /// The pod's network-namespace file (`/run/netns/x`, `/proc/<pid>/ns/net`), which the
    /// node agent enrolls; `None` when the source does not know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod shares its node's network namespace and addresses: never enrolled, and its
    /// addresses (the node's) do not identify it.
    pub host_network: bool,
}
