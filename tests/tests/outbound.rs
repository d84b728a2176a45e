//! The outbound listener (15001) is not an open relay, and records do not leak.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{parse_report, ConcurrentReport, ECHO_PORT};
use common::{pod, running_shop, two_node_shop, RunningShop};

const OUTBOUND_PORT: u16 = 15001;

#[test]
fn direct_connection_to_the_outbound_port_is_refused() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("open-relay");
    mesh.start_agents().expect("agents");
    let node1 = mesh.node("node1").unwrap();
    let outsider = pod(&mesh, "legacy", "old-client");

    eprintln!("a pod outside the mesh dials node1's agent on 15001 directly: no kernel record");
    let out = mesh
        .run_client(
            &outsider,
            mesh.app
                .echo(SocketAddrV4::new(node1.address, OUTBOUND_PORT), 1024),
        )
        .expect("client ran");
    assert!(
        !out.status.success(),
        "the agent relayed a connection without a kernel record: {out:?}"
    );

    eprintln!("so does a process on the node itself");
    let read = ambit_e2e::sandbox::run_inside(&node1.netns_path, || {
        let probe = || -> std::io::Result<usize> {
            let addr = SocketAddrV4::new(node1.address, OUTBOUND_PORT).into();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 16];
            s.read(&mut buf)
        };
        Ok(probe())
    })
    .expect("entering node1");
    match read {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset or EOF, got {other:?}"),
    }
    let log = mesh.agent_log("node1");
    assert!(log.contains("no kernel record"), "agent log:\n{log}");
    let refused = mesh
        .metric(
            "node1",
            "ambit_outbound_connections_total{result=\"refused_no_record\"}",
        )
        .unwrap();
    assert_eq!(refused, 2);
}

#[test]
fn thousand_concurrent_redirected_connections_leave_no_records_behind() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        client,
        server,
        ..
    } = running_shop("thousand", &[], "echo-2");
    mesh.wait_records("node1", 0).expect("baseline: no records");
    let established = mesh.counter("node1", "established").unwrap();

    eprintln!("1,000 connections, all open at once, each echoing 4 KiB through node1's agent");
    let out = mesh
        .run_client(
            &client,
            mesh.app
                .concurrent(SocketAddrV4::new(server.ip, ECHO_PORT), 1000, 4096),
        )
        .expect("client");
    let report: ConcurrentReport = parse_report(&out).expect("report");
    if report.failed > 0 {
        eprintln!("diagnostics: node1's listen-queue and reset counters");
        let node1 = mesh.node("node1").unwrap();
        let nstat = std::process::Command::new("ip")
            .args(["netns", "exec", &node1.netns, "nstat", "-az"])
            .output()
            .expect("nstat");
        let text = String::from_utf8_lossy(&nstat.stdout);
        let interesting: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("Listen")
                    || l.contains("Drop")
                    || l.contains("Reset")
                    || l.contains("Cookie")
                    || l.contains("Abort")
            })
            .filter(|l| l.split_whitespace().nth(1).is_none_or(|v| v != "0"))
            .collect();
        eprintln!("node1 TCP counters:\n{}", interesting.join("\n"));
        let ss = std::process::Command::new("ip")
            .args(["netns", "exec", &node1.netns, "ss", "-ltn"])
            .output()
            .expect("ss");
        eprintln!("{}", String::from_utf8_lossy(&ss.stdout));
    }
    assert_eq!((report.ok, report.failed), (1000, 0), "{report:?}");
    assert!(mesh.counter("node1", "established").unwrap() >= established + 1000);

    eprintln!("every record is removed when its connection closes");
    mesh.wait_records("node1", 0)
        .expect("records back to baseline");
    assert_eq!(mesh.counter("node1", "orig_dst_map_full").unwrap(), 0);
}
