//! The cluster most end-to-end tests start from.

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::Pod;

/// Two nodes; namespace `shop` enrolled with `client` and `echo-1` on node1 and `echo-2` on
/// node2; `shop/batch` (node1) opted out; `legacy/old-client` (node1) in a namespace that is
/// not enrolled. Agents are not started yet.
pub fn two_node_shop(label: &str) -> MeshCluster {
    let mut mesh = MeshCluster::new(label).expect("sandbox");
    mesh.add_node("node1").expect("node1");
    mesh.add_node("node2").expect("node2");
    for (node, ns, name) in [
        ("node1", "shop", "client"),
        ("node1", "shop", "echo-1"),
        ("node2", "shop", "echo-2"),
        ("node1", "shop", "batch"),
        ("node1", "legacy", "old-client"),
    ] {
        mesh.add_pod(node, ns, name).expect("pod");
    }
    mesh.enroll_namespace("shop");
    let batch = pod(&mesh, "shop", "batch");
    mesh.opt_out_pod(&batch);
    mesh
}

pub fn pod(mesh: &MeshCluster, ns: &str, name: &str) -> Pod {
    mesh.sb
        .pod(ns, name)
        .unwrap_or_else(|| panic!("no pod {ns}/{name}"))
        .clone()
}

/// The workloads node1 enrolls in `two_node_shop`.
pub const NODE1_ENROLLED: [&str; 2] = ["shop/client", "shop/echo-1"];
