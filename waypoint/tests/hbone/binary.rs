//! `ambit-waypoint run` as a process: ready once its SVID and routes are loaded, then serving
//! HBONE with the routes of its route file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::info;

use crate::support::*;

/// Kills and reaps the waypoint process, also when the test panics.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_ready_once_its_svid_is_written_then_routes_over_hbone() {
    let ca = MeshCa::new("binary");
    let (v1, v2) = (backend("v1").await, backend("v2").await);
    let agent =
        NodeAgent::start(&ca, HashMap::from([(addr(V1_POD), v1), (addr(V2_POD), v2)])).await;

    info!("an identity directory, the mesh config and a route file");
    let dir = temp_dir("binary-files");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("root.pem"), ca.ca.root_pem()).expect("root");
    std::fs::write(dir.join("mesh.yaml"), MESH).expect("mesh config");
    std::fs::write(dir.join("routes.yaml"), format!("httpRoutes:\n{ROUTES}")).expect("routes");

    let (hbone, metrics, readiness) = (free_port(), free_port(), free_port());
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let _waypoint = Process(
        Command::new(env!("CARGO_BIN_EXE_ambit-waypoint"))
            .arg("run")
            .args(["--config".as_ref(), dir.join("mesh.yaml").as_os_str()])
            .args(["--name", "waypoint", "--namespace", "shop"])
            .args(["--hbone", &local(hbone).to_string()])
            .args(["--metrics", &local(metrics).to_string()])
            .args(["--readiness", &local(readiness).to_string()])
            .args(["--identity-dir".as_ref(), dir.as_os_str()])
            .args(["--routes".as_ref(), dir.join("routes.yaml").as_os_str()])
            .args(["--node-hbone-port", &agent.addr.port().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("ambit-waypoint starts"),
    );

    info!("without an SVID the waypoint is up but not ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match status(local(readiness), "/healthz/ready").await.as_deref() {
            Some("503") => break,
            other => assert!(
                other.is_none() && tokio::time::Instant::now() < deadline,
                "readiness answered {other:?} before the SVID was written"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    info!("the SVID appears in the identity directory; readiness turns 200");
    let (svid, pem) = signed(&ca.ca, WAYPOINT_ID);
    write_svid(&dir, &pem, &svid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status(local(readiness), "/healthz/ready").await.as_deref() != Some("200") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waypoint did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    info!("a meshed client is routed by the route file's HTTPRoute");
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &client);
    let stream = connect(&pool, &client.id, local(hbone), REVIEWS_VIP)
        .await
        .expect("CONNECT accepted");
    let mut http = http1(stream).await;
    assert_eq!(
        get(&mut http, &[("x-version", "v2")]).await,
        (200, "v2".into())
    );
    assert_eq!(get(&mut http, &[]).await, (200, "v1".into()));

    info!("metrics count the accepted CONNECT and the streams to the node agent");
    let metrics = fetch(local(metrics), "/metrics")
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
