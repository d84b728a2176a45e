//! What the node agent leaves alone when it redirects an enrolled pod's traffic.

use serde::Serialize;

use super::Cidr;

/// Exclusions that apply to every enrolled pod on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectSettings {
    /// Destination ports connected to directly, bypassing the mesh.
    pub exclude_ports: Vec<u16>,
    /// Destination networks connected to directly, bypassing the mesh.
    pub exclude_cidrs: Vec<Cidr>,
}
