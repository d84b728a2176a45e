//! The cluster most end-to-end tests start from.
#![allow(
    dead_code,
    reason = "each test binary compiles this module and uses a different part of it"
)]

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

/// [`two_node_shop`] with its agents running, a test-app server in `shop/<server>`, and
/// node1's enrollment settled.
pub struct RunningShop {
    pub mesh: MeshCluster,
    /// `shop/client`, on node1.
    pub client: Pod,
    pub server: Pod,
    pub node1: ambit_e2e::Node,
    pub node2: ambit_e2e::Node,
    _servers: ambit_e2e::Process,
}

pub fn running_shop(label: &str, agent_args: &[&str], server: &str) -> RunningShop {
    let mut mesh = two_node_shop(label);
    mesh.agent_args = agent_args.iter().map(|a| a.to_string()).collect();
    mesh.start_agents().expect("agents");
    let client = pod(&mesh, "shop", "client");
    let server = pod(&mesh, "shop", server);
    let node1 = mesh.node("node1").expect("node1");
    let node2 = mesh.node("node2").expect("node2");
    let servers = mesh.serve(&server).expect("server");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("enrolled");
    RunningShop {
        mesh,
        client,
        server,
        node1,
        node2,
        _servers: servers,
    }
}

/// How a connection went: captured by the client node's agent, or straight to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Mesh,
    Direct,
}

/// Runs a whoami from `client` to `server` and checks how it went: the client node's kernel
/// redirected it (or not). Either way the server saw the client's own address: the
/// delivering agent keeps it (`--client-address preserve`).
pub fn assert_route(mesh: &MeshCluster, client: &Pod, server: &Pod, route: Route, when: &str) {
    use ambit_e2e::testapp::WHOAMI_PORT;
    let before = mesh.counter(&client.node, "redirected").expect("counters");
    let seen = mesh
        .whoami(client, std::net::SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    let redirected = mesh.counter(&client.node, "redirected").expect("counters") - before;
    assert_eq!(
        seen.peer.ip(),
        std::net::IpAddr::V4(client.ip),
        "{when}: {seen:?}"
    );
    match route {
        Route::Mesh => assert!(redirected > 0, "{when}: not redirected"),
        Route::Direct => assert_eq!(redirected, 0, "{when}: redirected"),
    }
}
