//! A Kubernetes Service: virtual IPs and ports in front of the workloads its selector picks.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Workload;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// Cluster IPs clients connect to; empty for a headless service.
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Labels a workload of the same namespace must all carry to be an endpoint. Empty
    /// selects nothing, as for a Kubernetes Service without a selector.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The Service's own labels, such as `ambit.dev/use-waypoint` (see
    /// [`Model::waypoint_for`](super::Model::waypoint_for)).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Required by Kubernetes only when a service has several ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port clients connect to on a VIP.
    pub port: u16,
    /// The port the endpoints listen on.
    pub target_port: u16,
    pub protocol: Protocol,
}

/// Transport protocol of a service port, spelled as in Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Service {
    /// Whether `workload` is one of this service's endpoints: same namespace, a non-empty
    /// selector, and every selector label present on the workload with the same value.
    pub fn selects(&self, workload: &Workload) -> bool {
        workload.namespace == self.namespace
            && !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(key, value)| workload.labels.get(key) == Some(value))
    }
}
