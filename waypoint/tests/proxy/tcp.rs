//! Opaque TCP: a port with a non-HTTP appProtocol, split by a TCPRoute per connection.

use std::net::SocketAddr;

use ambit_waypoint::{Config, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{reviews, Proxy};

/// A TCP server that writes `name` and echoes one line back.
async fn tcp_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(name.as_bytes()).await;
                let mut buf = [0u8; 16];
                if let Ok(n) = stream.read(&mut buf).await {
                    let _ = stream.write_all(&buf[..n]).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn opaque_tcp_is_split_by_tcproute() {
    let (primary, replica) = (tcp_backend("pri:").await, tcp_backend("rep:").await);
    let yaml = format!(
        "services:\n\
         - {{namespace: shop, name: reviews, ports: [{{port: 5432, appProtocol: postgresql, endpoints: []}}]}}\n\
         - {{namespace: shop, name: db-primary, ports: [{{port: 5432, appProtocol: tcp, endpoints: [\"{primary}\"]}}]}}\n\
         - {{namespace: shop, name: db-replica, ports: [{{port: 5432, appProtocol: tcp, endpoints: [\"{replica}\"]}}]}}\n\
         tcpRoutes:\n\
         - apiVersion: gateway.networking.k8s.io/v1alpha2\n  kind: TCPRoute\n  metadata: {{name: db, namespace: shop}}\n  spec:\n\
         \x20   parentRefs: [{{kind: Service, group: \"\", name: reviews, port: 5432}}]\n\
         \x20   rules: [{{backendRefs: [{{name: db-primary, port: 5432, weight: 3}}, {{name: db-replica, port: 5432, weight: 1}}]}}]\n"
    );
    let config: Config = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let proxy = Proxy::with(&config, Settings::default(), reviews(5432)).await;

    let mut replicas = 0;
    for _ in 0..400 {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        stream.write_all(b"ping").await.expect("write");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read");
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(
            text == "pri:ping" || text == "rep:ping",
            "unexpected bytes {text:?}"
        );
        replicas += usize::from(text.starts_with("rep:"));
    }
    let share = replicas as f64 / 400.0;
    assert!(
        (0.18..=0.32).contains(&share),
        "replica got {share:.2}, want ~0.25"
    );
    assert!(proxy
        .waypoint
        .metrics()
        .render()
        .contains("ambit_waypoint_tcp_connections_total{route=\"shop/db\"} 400"));
}
