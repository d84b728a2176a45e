//! The outbound redirect on a real kernel: which connections the node agent captures.

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{parse_report, ConcurrentReport, ECHO_PORT, WHOAMI_PORT};
use std::net::SocketAddrV4;

mod common;

use common::{pod, running_shop, RunningShop};

const MIB: u64 = 1024 * 1024;

#[test]
fn enrolled_pod_reaches_other_node_through_its_agent() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        client,
        server,
        node2,
        ..
    } = running_shop("cross-node", &[], "echo-2");

    eprintln!("whoami: through the tunnel, the server sees the client pod's own address");
    let steered = mesh.counter("node2", "replies_steered").unwrap();
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    assert_eq!(
        seen.peer.ip(),
        std::net::IpAddr::V4(client.ip),
        "server saw {seen:?}"
    );
    assert!(
        mesh.counter("node2", "replies_steered").unwrap() > steered,
        "node2's kernel steered none of the server's replies back to its agent"
    );
    let kept = mesh
        .metric("node2", "ambit_client_address_kept_pods")
        .unwrap();
    assert!(kept >= 1, "node2 keeps the client address for {kept} pods");
    let log = mesh.agent_log("node2");
    assert!(
        log.lines().any(|l| l.contains("inbound connection")
            && l.contains(&format!("from=Some({})", client.ip))),
        "node2's agent did not log a delivery from the client's address:\n{log}"
    );
    let report = mesh.inspect("node2").unwrap();
    let return_path = &report["workloads"]["returnPath"];
    assert_eq!(
        return_path["keptPods"],
        serde_json::json!([server.ip.to_string()]),
        "{report}"
    );
    assert!(
        return_path["replyInterfaces"]
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "steer_replies on the server pod's interface: {report}"
    );
    assert_eq!(
        return_path["hboneInterfaces"],
        serde_json::json!(["eth0"]),
        "capture_hbone on the node's link to the fabric: {report}"
    );
    assert!(
        mesh.ip_rules(&node2.short_name)
            .unwrap()
            .contains("lookup 15008"),
        "node2 has no reply rule"
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
    let relayed = mesh
        .metric(
            "node1",
            "ambit_outbound_connections_total{result=\"relayed\"}",
        )
        .unwrap();
    assert!(
        relayed >= 2,
        "the agent's metrics show {relayed} relayed connections"
    );
    let tunnelled = mesh
        .metric("node1", "ambit_outbound_tunnelled_total")
        .unwrap();
    assert!(
        tunnelled >= 2,
        "{tunnelled} connections went over the mTLS tunnel"
    );
    let log = mesh.agent_log("node1");
    assert!(log.contains("enrollment reconciled"), "agent log:\n{log}");
}

#[test]
fn same_node_connection_takes_the_socket_fast_path() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        client,
        server,
        ..
    } = running_shop("fastpath", &["--fastpath"], "echo-1");

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

    eprintln!("an open connection has all four ends on the fast path: pod, agent x2, pod");
    let mut held = mesh
        .hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
        .expect("hold");
    held.ping().expect("round trip");
    let report = mesh.inspect("node1").unwrap();
    assert_eq!(report["fastpath_sockets"], 4, "{report}");
}

#[test]
fn unenrolled_namespace_and_opted_out_pod_are_not_redirected() {
    if !require_privileged() {
        return;
    }
    let RunningShop { mesh, server, .. } = running_shop("not-enrolled", &[], "echo-2");
    let before = mesh.counter("node1", "skipped_not_enrolled").unwrap();
    let redirected_before = mesh.counter("node1", "redirected").unwrap();

    for (ns, name) in [("legacy", "old-client"), ("shop", "batch")] {
        let client = pod(&mesh, ns, name);
        eprintln!("{ns}/{name} connects directly: the server sees the pod's own address");
        let seen = mesh
            .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
            .expect("whoami");
        assert_eq!(
            seen.peer.ip(),
            std::net::IpAddr::V4(client.ip),
            "{ns}/{name}: server saw {seen:?}"
        );
    }
    let enrolled = mesh.enrolled("node1").unwrap();
    assert!(
        !enrolled
            .iter()
            .any(|w| w == "legacy/old-client" || w == "shop/batch"),
        "{enrolled:?}"
    );
    assert!(mesh.counter("node1", "skipped_not_enrolled").unwrap() >= before + 2);
    assert_eq!(
        mesh.counter("node1", "redirected").unwrap(),
        redirected_before
    );
}
