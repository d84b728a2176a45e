//! The test app's clients against its servers, across two nodes of a sandbox.

use std::io::Write;
use std::net::SocketAddrV4;
use std::process::{Command, Stdio};
use std::time::Duration;

use ambit_e2e::require_privileged;
use ambit_e2e::sandbox::{Pod, Sandbox};
use ambit_e2e::testapp::{
    self, BulkReport, ConcurrentReport, EchoReport, RrReport, TestApp, ECHO_PORT, SINK_PORT,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn app() -> TestApp {
    TestApp::at(env!("CARGO_BIN_EXE_ambit-testapp"))
}

/// A sandbox with a client on node1 and a running server pod on node2.
fn client_and_server(label: &str) -> (Sandbox, Pod, Pod) {
    let mut sb = Sandbox::new(label).expect("creating the sandbox");
    sb.add_node("node1").expect("adding node1");
    sb.add_node("node2").expect("adding node2");
    let client = sb
        .add_pod("node1", "shop", "client")
        .expect("adding the client");
    let server = sb
        .add_pod("node2", "shop", "server")
        .expect("adding the server");
    app()
        .serve_in_pod(&sb, &server, "server")
        .expect("starting the server");
    (sb, client, server)
}

fn run<T: serde::de::DeserializeOwned>(sb: &Sandbox, pod: &Pod, cmd: Command) -> T {
    let output = sb
        .run_in_pod(pod, cmd, RUN_TIMEOUT)
        .expect("running the client");
    testapp::parse_report(&output).expect("reading the client's report")
}

#[test]
fn two_thousand_connections_open_at_once_all_echo() {
    if !require_privileged() {
        return;
    }
    let (sb, client, server) = client_and_server("concurrent");
    eprintln!("2000 connections from {} to {}", client.id(), server.id());
    let echo = SocketAddrV4::new(server.ip, ECHO_PORT);
    let report: ConcurrentReport = run(&sb, &client, app().concurrent(echo, 2000, 4096));
    eprintln!("  {report:?}");
    assert_eq!((report.ok, report.failed), (2000, 0), "{report:?}");
}

#[test]
fn an_echo_mismatch_is_reported_with_its_offset() {
    if !require_privileged() {
        return;
    }
    let (sb, client, server) = client_and_server("mismatch");
    eprintln!("sending to the sink, which answers a count instead of an echo");
    let sink = SocketAddrV4::new(server.ip, SINK_PORT);
    let output = sb
        .run_in_pod(&client, app().echo(sink, 1000), RUN_TIMEOUT)
        .unwrap();
    assert!(!output.status.success());
    let line = String::from_utf8_lossy(&output.stdout);
    let report: EchoReport = serde_json::from_str(line.trim()).unwrap();
    eprintln!("  {report:?}");
    assert!(!report.ok);
    assert_eq!(report.first_mismatch, Some(0), "{report:?}");
}

#[test]
fn a_held_connection_answers_every_ping() {
    if !require_privileged() {
        return;
    }
    let (sb, client, server) = client_and_server("hold");
    let mut cmd = app().hold(SocketAddrV4::new(server.ip, ECHO_PORT));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut holder = sb.spawn_in_pod(&client, cmd).unwrap();
    let lines = holder.stdout_lines().unwrap();
    for round in 1..=3 {
        eprintln!("ping {round}");
        writeln!(holder.stdin().unwrap(), "ping").unwrap();
        let answer = lines.next_line(Duration::from_secs(10)).unwrap();
        assert_eq!(answer.as_deref(), Some("ok"));
    }
    writeln!(holder.stdin().unwrap(), "pong").unwrap();
    let answer = lines.next_line(Duration::from_secs(10)).unwrap().unwrap();
    assert!(answer.starts_with("error: unknown command"), "{answer}");
    eprintln!("closing stdin ends hold");
    drop(holder.take_stdin());
    assert!(holder
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .success());
}

#[test]
fn latency_and_throughput_clients_report_sane_numbers() {
    if !require_privileged() {
        return;
    }
    let (sb, client, server) = client_and_server("rr-bulk");
    let echo = SocketAddrV4::new(server.ip, ECHO_PORT);
    let rr: RrReport = run(&sb, &client, app().rr(echo, 64, Duration::from_millis(500)));
    eprintln!("  rr {rr:?}");
    assert!(
        rr.count > 100 && rr.p50_us > 0.0 && rr.p50_us <= rr.p99_us,
        "{rr:?}"
    );

    let sink = SocketAddrV4::new(server.ip, SINK_PORT);
    let bulk: BulkReport = run(&sb, &client, app().bulk(sink, Duration::from_millis(500)));
    eprintln!("  bulk {bulk:?}");
    assert!(bulk.bytes > 0 && bulk.gbit_per_s > 0.0, "{bulk:?}");
}
