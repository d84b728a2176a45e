//! Enrolling and un-enrolling by config reload, without restarting pods or the agent.

mod common;

use std::net::{IpAddr, SocketAddrV4};

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{ECHO_PORT, WHOAMI_PORT};
use common::{running_shop, RunningShop, NODE1_ENROLLED};

#[test]
fn unenrolling_stops_new_redirects_and_keeps_open_connections() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mut mesh,
        client,
        server,
        node2,
        ..
    } = running_shop("unenroll", &[], "echo-2");

    eprintln!("a connection opened while shop is enrolled goes through the agent");
    let mut held = mesh
        .hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
        .expect("hold");
    mesh.wait_records("node1", 1).expect("one live record");

    eprintln!("un-enroll shop by editing the config; the agent reloads it on its own");
    mesh.unenroll_namespace("shop");
    mesh.write_config().expect("config");
    mesh.wait_enrolled("node1", &[]).expect("nothing enrolled");

    eprintln!("new connections go direct; the open one still works");
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    assert_eq!(
        seen.peer.ip(),
        IpAddr::V4(client.ip),
        "after un-enrolling: {seen:?}"
    );
    for _ in 0..3 {
        held.ping()
            .expect("the open connection survives un-enrolling");
    }

    eprintln!("enroll again: new connections are redirected, with no pod restart");
    mesh.enroll_namespace("shop");
    mesh.write_config().expect("config");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("enrolled again");
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    assert_eq!(
        seen.peer.ip(),
        IpAddr::V4(node2.address),
        "after re-enrolling: {seen:?}"
    );
    held.ping().expect("still open");
}
