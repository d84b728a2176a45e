//! The mTLS tunnel between node agents: nothing readable on the wire, the caller's identity
//! proven to the receiving agent, certificates rotating under live connections.

mod common;

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use ambit_e2e::capture::{contains, Capture};
use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{ECHO_PORT, WHOAMI_PORT};
use common::{pod, running_shop, RunningShop};

#[test]
fn cross_node_payload_is_encrypted_and_the_caller_identity_is_verified() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        client,
        server,
        ..
    } = running_shop("mtls-wire", &[], "echo-2");
    let outsider = pod(&mesh, "legacy", "old-client");
    let fabric = PathBuf::from("/run/netns").join(mesh.sb.fabric_netns());

    eprintln!("capturing every frame node1 exchanges with the other nodes");
    let capture = Capture::start(&fabric, "node1").expect("capture");
    let secret = format!("AMBIT-MESH-MARKER-{}", std::process::id());
    let control = format!("AMBIT-PLAINTEXT-CONTROL-{}", std::process::id());
    let to = SocketAddrV4::new(server.ip, ECHO_PORT);
    let sent = mesh
        .run_client(&client, mesh.app.say(to, &secret))
        .expect("mesh client");
    assert!(sent.status.success(), "{sent:?}");
    let sent = mesh
        .run_client(&outsider, mesh.app.say(to, &control))
        .expect("plaintext client");
    assert!(sent.status.success(), "{sent:?}");
    let frames = capture.finish().expect("capture");

    eprintln!("captured {} bytes", frames.len());
    assert!(
        contains(&frames, control.as_bytes()),
        "the capture missed the plaintext control: it sees nothing"
    );
    assert!(
        !contains(&frames, secret.as_bytes()),
        "the mesh payload crossed the wire in plaintext"
    );

    eprintln!("node2's agent logged the caller identity its certificate proved");
    let log = mesh.agent_log("node2");
    let line = log
        .lines()
        .find(|l| l.contains("inbound connection") && l.contains(&format!("target={to}")))
        .unwrap_or_else(|| panic!("no inbound connection to {to} in node2's log:\n{log}"));
    assert!(
        line.contains("caller=spiffe://cluster.local/ns/shop/sa/client"),
        "{line}"
    );
    assert!(
        line.contains(&format!("client=Some({}:", client.ip)),
        "{line}"
    );
}

#[test]
fn certificate_rotation_does_not_break_a_live_connection() {
    if !require_privileged() {
        return;
    }
    eprintln!("agents ask for 4-second certificates: renewed every 2 seconds");
    let RunningShop {
        mesh,
        client,
        server,
        ..
    } = running_shop("rotation", &["--svid-ttl-secs", "4"], "echo-2");
    let signed = |mesh: &ambit_e2e::cluster::MeshCluster| {
        let log = std::fs::read_to_string(mesh.sb.dir().join("ca.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("signed a workload certificate") && l.contains("sa/client"))
            .count()
    };
    let mut held = mesh
        .hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
        .expect("hold");
    let before = signed(&mesh);
    for second in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        held.ping()
            .unwrap_or_else(|e| panic!("the tunnelled connection broke after {second}s: {e}"));
    }
    let after = signed(&mesh);
    assert!(
        after >= before + 2,
        "the client identity was renewed {} times in 6 s",
        after - before
    );
    eprintln!("a new connection after the rotations handshakes with the new certificates");
    mesh.whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("new connection");
    held.ping().expect("still open");
}

#[test]
fn plaintext_to_the_hbone_port_is_refused_and_counted() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        server,
        node2,
        ..
    } = running_shop("hbone-plain", &[], "echo-2");
    let outsider = pod(&mesh, "legacy", "old-client");
    let refused = || {
        mesh.metric(
            "node2",
            "ambit_hbone_inbound_connections_total{outcome=\"plaintext_refused\"}",
        )
        .unwrap()
    };
    let say_plaintext = |hbone: SocketAddrV4| {
        let out = mesh
            .run_client(&outsider, mesh.app.say(hbone, "GET / HTTP/1.1\r\n\r\n"))
            .expect("client ran");
        assert!(
            !out.status.success(),
            "plaintext got an answer on the mTLS port {hbone}: {out:?}"
        );
    };

    eprintln!("a pod outside the mesh speaks plaintext to node2's HBONE port");
    say_plaintext(SocketAddrV4::new(node2.address, 15008));
    assert_eq!(refused(), 1);

    eprintln!(
        "the same on the server pod's own address (where Istio's ztunnel dials): node2's \
         kernel steers it to the agent, whose HBONE server refuses it"
    );
    let captured = mesh.counter("node2", "hbone_captured").unwrap();
    say_plaintext(SocketAddrV4::new(server.ip, 15008));
    assert!(mesh.counter("node2", "hbone_captured").unwrap() > captured);
    assert_eq!(refused(), 2);
}
