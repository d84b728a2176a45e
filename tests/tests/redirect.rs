//! The outbound redirect on a real kernel: which connections the node agent captures, and what
//! it does with them (issue: foundation, tests 1–6).

use std::net::SocketAddrV4;
use std::time::Duration;

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{parse_report, ConcurrentReport, ECHO_PORT, WHOAMI_PORT};

const MIB: u64 = 1024 * 1024;

/// Two nodes; `shop` enrolled with a client on node1 and servers on both nodes; `legacy` not
/// enrolled; `shop/batch` opted out.
fn two_node_shop(label: &str) -> MeshCluster {
    let mut mesh = MeshCluster::new(label).expect("sandbox");
    mesh.add_node("node1").expect("node1");
    mesh.add_node("node2").expect("node2");
    for (node, ns, pod) in [
        ("node1", "shop", "client"),
        ("node1", "shop", "echo-1"),
        ("node2", "shop", "echo-2"),
        ("node1", "legacy", "old-client"),
        ("node1", "shop", "batch"),
    ] {
        mesh.add_pod(node, ns, pod).expect("pod");
    }
    mesh.enroll_namespace("shop");
    let batch = mesh.sb.pod("shop", "batch").expect("batch").clone();
    mesh.opt_out_pod(&batch);
    mesh
}

fn pod(mesh: &MeshCluster, ns: &str, name: &str) -> ambit_e2e::Pod {
    mesh.sb
        .pod(ns, name)
        .unwrap_or_else(|| panic!("no pod {ns}/{name}"))
        .clone()
}

#[test]
fn enrolled_pod_reaches_other_node_through_its_agent() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("cross-node");
    mesh.start_agents().expect("agents");
    let client = pod(&mesh, "shop", "client");
    let server = pod(&mesh, "shop", "echo-2");
    let _srv = mesh.serve(&server).expect("server");
    let node1 = mesh.node("node1").unwrap();
    mesh.wait_enrolled("node1", &["shop/client", "shop/echo-1"])
        .expect("enrolled");

    eprintln!("whoami: the server should see node1's agent, not the client pod");
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    assert_eq!(
        seen.peer.ip(),
        std::net::IpAddr::V4(node1.address),
        "server saw {seen:?}"
    );

    eprintln!("1 MiB echoed back byte-exact through the agent");
    let before = mesh.counter("node1", "established").unwrap();
    let report = mesh
        .echo(&client, SocketAddrV4::new(server.ip, ECHO_PORT), MIB)
        .expect("echo");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.bytes, MIB);
    let after = mesh.counter("node1", "established").unwrap();
    assert!(
        after > before,
        "the kernel counted no redirected connection ({before} -> {after})"
    );
    assert!(mesh.counter("node1", "redirected").unwrap() >= 2);
    eprintln!("agent log:\n{}", mesh.agent_log("node1"));
    let _ = Duration::ZERO;
}

#[test]
fn same_node_connection_takes_the_socket_fast_path() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("fastpath");
    mesh.agent_args.push("--fastpath".into());
    mesh.start_agents().expect("agents");
    let client = pod(&mesh, "shop", "client");
    let server = pod(&mesh, "shop", "echo-1");
    let _srv = mesh.serve(&server).expect("server");
    mesh.wait_enrolled("node1", &["shop/client", "shop/echo-1"])
        .expect("enrolled");

    eprintln!("1 MiB to a pod on the same node, through the agent and the sk_msg fast path");
    eprintln!(
        "(an epoll-driven client: blocking full-duplex readers see EAGAIN on sockmap sockets)"
    );
    let before = mesh.counter("node1", "fastpath_redirected").unwrap();
    let out = mesh
        .run_client(
            &client,
            mesh.app
                .concurrent(SocketAddrV4::new(server.ip, ECHO_PORT), 1, MIB),
        )
        .expect("client");
    let report: ConcurrentReport = parse_report(&out).expect("report");
    assert_eq!((report.ok, report.failed), (1, 0), "{report:?}");
    let after = mesh.counter("node1", "fastpath_redirected").unwrap();
    eprintln!("fast-path messages: {before} -> {after}");
    assert!(after > before, "no message took the fast path");
}
