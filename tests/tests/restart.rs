//! Restarting the node agent: the redirect stays attached, pinned maps are reused, nothing
//! stale survives.

mod common;

use std::net::{IpAddr, SocketAddrV4};

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{ECHO_PORT, WHOAMI_PORT};
use common::{running_shop, RunningShop};

#[test]
fn agent_restart_keeps_redirecting_without_stale_records() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mut mesh,
        client,
        server,
        ..
    } = running_shop("restart", &[], "echo-2");
    let held = mesh
        .hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
        .expect("hold");
    mesh.wait_records("node1", 1).expect("one live record");

    eprintln!("stop node1's agent: its connections end, their records go with them");
    mesh.stop_agent("node1").expect("stop");
    drop(held);
    mesh.wait_records("node1", 0)
        .expect("no record survives the agent");

    eprintln!("the inspector still reads the pinned maps; pods stay enrolled and captured");
    let report = mesh
        .inspect("node1")
        .expect("inspect with no agent running");
    assert_eq!(
        report["enrolled"].as_array().map_or(0, Vec::len),
        2,
        "{report}"
    );
    assert_eq!(report["programs"]["redirect_connect4"], true, "{report}");
    eprintln!(
        "while the agent is down, enrolled pods' connections fail closed (never bypass the mesh)"
    );
    assert!(mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .is_err());

    eprintln!("start it again: new connections are redirected");
    mesh.start_agent("node1").expect("restart");
    let streams = "ambit_hbone_inbound_streams_total{status=\"200\"}";
    let (redirected, delivered) = (
        mesh.counter("node1", "redirected").unwrap(),
        mesh.metric("node2", streams).unwrap_or(0),
    );
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    // node2's agent delivers from the client's address: the counters show the route.
    assert_eq!(seen.peer.ip(), IpAddr::V4(client.ip), "{seen:?}");
    assert!(mesh.counter("node1", "redirected").unwrap() > redirected);
    assert!(mesh.metric("node2", streams).unwrap() > delivered);
    mesh.wait_records("node1", 0)
        .expect("no stale records after restart");
    let log = mesh.agent_log("node1");
    assert!(
        log.matches("ambit-node ready").count() >= 2,
        "agent log:\n{log}"
    );
}
