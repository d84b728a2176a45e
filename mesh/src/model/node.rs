//! A Kubernetes node: where workloads run and where their node agent listens.

use std::net::IpAddr;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    /// The address other node agents reach this node's agent on (HBONE, port 15008).
    pub address: IpAddr,
}
