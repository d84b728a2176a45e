//! HTTP/1.1 Upgrade (WebSocket): both sides upgrade, then bytes flow both ways.

use std::sync::Arc;

use ambit_waypoint::body;
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{config, http_route, Backend, Proxy};

#[tokio::test]
async fn websocket_upgrade_echoes_through_the_waypoint() {
    let echo = Backend::start(Arc::new(|mut request| {
        Box::pin(async move {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(body::empty())
                .expect("response")
        })
    }))
    .await;
    let routes = http_route("reviews", "    - backendRefs: [{name: ws, port: 80}]\n");
    let proxy = Proxy::start(&config(&[("ws", vec![echo.addr])], &routes)).await;

    let mut stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nhost: reviews.shop\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.expect("read head"),
            1,
            "connection closed early"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");

    for message in [&b"hello"[..], b"over the upgraded stream"] {
        stream.write_all(message).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(echoed, message);
    }
}
