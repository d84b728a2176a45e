//! `ambit-waypoint run` as a process: ready once its SVID and routes are loaded, then serving
//! HBONE with the routes of its route file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ambit_mesh::identity::{serve, server_config, Ca, CaService, ClientAuth, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::info;

use crate::support::*;

/// The running waypoint process, killed and reaped on drop (also when the test panics).
struct Process {
    child: Child,
    hbone: SocketAddr,
    metrics: SocketAddr,
    readiness: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Writes the mesh config and the route file into `dir` (the identity directory too).
fn write_config(dir: &Path, ca: &MeshCa) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("root.pem"), ca.ca.root_pem()).expect("root");
    std::fs::write(dir.join("mesh.yaml"), MESH).expect("mesh config");
    std::fs::write(dir.join("routes.yaml"), format!("httpRoutes:\n{ROUTES}")).expect("routes");
}

/// `ambit-waypoint run` for shop's waypoint on loopback ports, with `extra` arguments.
fn spawn(dir: &Path, agent: &NodeAgent, extra: &[&str]) -> Process {
    let (hbone, metrics, readiness) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_ambit-waypoint"))
        .arg("run")
        .args(["--config".as_ref(), dir.join("mesh.yaml").as_os_str()])
        .args(["--name", "waypoint", "--namespace", "shop"])
        .args(["--hbone", &hbone.to_string()])
        .args(["--metrics", &metrics.to_string()])
        .args(["--readiness", &readiness.to_string()])
        .args(["--identity-dir".as_ref(), dir.as_os_str()])
        .args(["--routes".as_ref(), dir.join("routes.yaml").as_os_str()])
        .args(["--node-hbone-port", &agent.addr.port().to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("ambit-waypoint starts");
    Process {
        child,
        hbone,
        metrics,
        readiness,
    }
}

/// The whole HTTP/1.1 answer to `GET path`, or `None` if nothing answers.
async fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: waypoint\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

/// The status code of `GET path`, or `None` if nothing answers.
async fn status(addr: SocketAddr, path: &str) -> Option<String> {
    let answer = fetch(addr, path).await?;
    answer.split(' ').nth(1).map(str::to_string)
}

/// Waits until readiness answers `want` (20 s at most).
async fn wait_for_readiness(waypoint: &Process, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = status(waypoint.readiness, "/healthz/ready").await;
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness answered {got:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Backends v1 and v2 behind a stand-in node agent.
async fn reviews_node(ca: &MeshCa) -> NodeAgent {
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    NodeAgent::start(ca, HashMap::from([(addr(V1_POD), v1), (addr(V2_POD), v2)])).await
}

/// A meshed client's requests are routed by the route file's HTTPRoute.
async fn routes_over_hbone(ca: &MeshCa, waypoint: &Process) {
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(ca, &client);
    let stream = connect(&pool, &client.id, waypoint.hbone, REVIEWS_VIP)
        .await
        .expect("CONNECT accepted");
    let mut http = http1(stream).await;
    assert_eq!(
        get(&mut http, &[("x-version", "v2")]).await,
        (200, "v2".into())
    );
    assert_eq!(get(&mut http, &[]).await, (200, "v1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_ready_once_its_svid_is_written_then_routes_over_hbone() {
    let ca = MeshCa::new("binary");
    let agent = reviews_node(&ca).await;
    let dir = temp_dir("binary-files");
    write_config(&dir, &ca);
    let waypoint = spawn(&dir, &agent, &[]);

    info!("without an SVID the waypoint is up but not ready");
    wait_for_readiness(&waypoint, "503").await;

    info!("the SVID appears in the identity directory; readiness turns 200");
    let (svid, pem) = signed(&ca.ca, WAYPOINT_ID);
    write_svid(&dir, &pem, &svid);
    wait_for_readiness(&waypoint, "200").await;
    routes_over_hbone(&ca, &waypoint).await;

    info!("metrics count the accepted CONNECT and the streams to the node agent");
    let metrics = fetch(waypoint.metrics, "/metrics")
        .await
        .expect("metrics answer");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "ambit_hbone_inbound_streams_total{status=\"200\"} 1",
        "ambit_hbone_outbound_streams_total{result=\"opened\"} 2",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_gets_its_svid_from_the_ca_with_its_nodes_credential() {
    let ca = MeshCa::new("binary-ca");
    let agent = reviews_node(&ca).await;

    info!("the mesh CA, authorizing nodes by the model (the waypoint is a workload on n1)");
    let signer = Arc::new(Ca::load(&ca.dir, TRUST_DOMAIN).expect("CA load"));
    let (_model_tx, models) = watch::channel(model());
    let service = CaService::new(signer.clone(), models);
    let tls = server_config(&signer, ClientAuth::NodeCertificate).expect("CA TLS");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind CA");
    let ca_addr = listener.local_addr().expect("CA addr");
    let server = tokio::spawn(serve(listener, service, tls, std::future::pending()));

    info!("the identity directory holds n1's credential, not an SVID");
    let dir = temp_dir("binary-ca-files");
    write_config(&dir, &ca);
    let node = NodeId::new(TRUST_DOMAIN, "n1").expect("node id");
    let (chain, key) = ca.ca.issue_node_cert(&node).expect("node cert");
    std::fs::write(dir.join("node.pem"), chain).expect("node cert");
    std::fs::write(dir.join("node-key.pem"), key).expect("node key");

    let waypoint = spawn(&dir, &agent, &["--ca-addr", &ca_addr.to_string()]);
    wait_for_readiness(&waypoint, "200").await;
    routes_over_hbone(&ca, &waypoint).await;

    info!("with the credential of a node the waypoint does not run on, the CA signs nothing");
    let elsewhere = temp_dir("binary-ca-elsewhere");
    write_config(&elsewhere, &ca);
    let node = NodeId::new(TRUST_DOMAIN, "n9").expect("node id");
    let (chain, key) = ca.ca.issue_node_cert(&node).expect("node cert");
    std::fs::write(elsewhere.join("node.pem"), chain).expect("node cert");
    std::fs::write(elsewhere.join("node-key.pem"), key).expect("node key");
    let stranger = spawn(&elsewhere, &agent, &["--ca-addr", &ca_addr.to_string()]);
    wait_for_readiness(&stranger, "503").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status(stranger.readiness, "/healthz/ready")
            .await
            .as_deref(),
        Some("503"),
        "the CA signed the waypoint's identity for a node it does not run on"
    );
    server.abort();
}
