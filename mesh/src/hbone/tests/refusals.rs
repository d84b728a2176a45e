use std::sync::atomic::Ordering;

use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::*;
use crate::hbone::client::{dial, TunnelError};

fn deny(_: ConnectRequest) -> std::future::Ready<Result<TcpStream, Refusal>> {
    std::future::ready(Err(Refusal::Denied(
        "shop/client may not call shop/reviews".into(),
    )))
}

#[tokio::test]
async fn refused_destination_answers_503_and_the_client_gets_it() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());

    let err = pool
        .connect(key(node), closed_port().await, client_addr(), String::new())
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    until(&stats.streams_unreachable, 1).await;
    assert_eq!(stats.streams_accepted.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn policy_deny_answers_401_and_leaves_other_streams_alone() {
    let ca = TestCa::new("mesh");
    let destination = shouting_destination().await;
    let deny_one = move |request: ConnectRequest| async move {
        if request.target == destination {
            forward(request).await
        } else {
            deny(request).await
        }
    };
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), deny_one, ServerSettings::default()).await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());

    let mut allowed = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    let err = pool
        .connect(key(node), closed_port().await, client_addr(), String::new())
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED), "{err}");
    until(&stats.streams_denied, 1).await;

    allowed.write_all(b"still here").await.unwrap();
    allowed.shutdown().await.unwrap();
    let mut answer = Vec::new();
    allowed.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"STILL HERE");
    assert_eq!(pool.stats().connections_opened.load(Ordering::Relaxed), 1);
}

/// Sends `request` on a fresh mTLS HTTP/2 connection and returns the status.
async fn raw_request(ca: &TestCa, node: SocketAddr, request: Request<()>) -> StatusCode {
    let (mut sender, connection) = dial(
        &key(node),
        ca.svid(CLIENT),
        ca.roots(),
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let (response, _body) = sender.send_request(request, true).unwrap();
    response.await.unwrap().status()
}

#[tokio::test]
async fn methods_other_than_connect_get_400() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{node}/"))
        .body(())
        .unwrap();
    assert_eq!(
        raw_request(&ca, node, request).await,
        StatusCode::BAD_REQUEST
    );
    until(&stats.streams_bad_request, 1).await;
}

#[tokio::test]
async fn connect_to_a_name_instead_of_ip_port_gets_400() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri("reviews.shop:9080")
        .body(())
        .unwrap();
    assert_eq!(
        raw_request(&ca, node, request).await,
        StatusCode::BAD_REQUEST
    );
    until(&stats.streams_bad_request, 1).await;
}

#[tokio::test]
async fn a_target_not_on_this_node_gets_400() {
    let ca = TestCa::new("mesh");
    let not_here = |request: ConnectRequest| async move {
        Err::<TcpStream, _>(Refusal::BadTarget(format!(
            "{} is not on this node",
            request.target
        )))
    };
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), not_here, ServerSettings::default()).await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());
    let err = pool
        .connect(key(node), closed_port().await, client_addr(), String::new())
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    until(&stats.streams_bad_request, 1).await;
}

#[tokio::test]
async fn client_refuses_a_server_presenting_another_identity() {
    let ca = TestCa::new("mesh");
    let ratings = "spiffe://cluster.local/ns/shop/sa/ratings";
    // Asked for `reviews`, this server answers with the certificate of `ratings`.
    let certs = ServerCerts::new();
    certs.insert(id(SERVER), ca.svid(ratings));
    let (node, _) = start_server(&ca, certs, forward, ServerSettings::default()).await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());

    let err = pool
        .connect(
            key(node),
            echo_destination().await,
            client_addr(),
            String::new(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::WrongIdentity { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("peer {node} presented {ratings}, expected {SERVER}")
    );
    assert_eq!(pool.open_connections(), 0);
}

#[tokio::test]
async fn server_refuses_client_certificates_it_must_not_trust() {
    let ca = TestCa::new("mesh");
    let rogue = TestCa::new("rogue");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = echo_destination().await;
    let refused = [
        (
            "another trust domain",
            ca.svid("spiffe://other.example/ns/shop/sa/client"),
        ),
        ("another root", rogue.svid(CLIENT)),
        ("expired", ca.expired_svid(CLIENT)),
    ];
    for (n, (why, svid)) in refused.into_iter().enumerate() {
        let pool = pool_as(svid, &ca, PoolSettings::default());
        let result = pool
            .connect(key(node), destination, client_addr(), String::new())
            .await;
        assert!(result.is_err(), "{why}: the server accepted it");
        until(&stats.client_certs_rejected, n as u64 + 1).await;
    }
    assert_eq!(stats.streams_accepted.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn plaintext_on_the_hbone_port_is_refused_and_counted() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let mut tcp = TcpStream::connect(node).await.unwrap();
    tcp.write_all(b"CONNECT 10.0.0.1:80 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "the server answered plaintext: {rest:?}");
    until(&stats.plaintext_refused, 1).await;
    until(&stats.connections_active, 0).await;
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_after_the_timeout() {
    let ca = TestCa::new("mesh");
    let settings = ServerSettings {
        handshake_timeout: Duration::from_millis(200),
        ..ServerSettings::default()
    };
    let (node, stats) = start_server(&ca, reviews_certs(&ca), forward, settings).await;
    let mut tcp = TcpStream::connect(node).await.unwrap();
    // The start of a TLS record, then silence.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    until(&stats.handshake_timeouts, 1).await;
    until(&stats.connections_active, 0).await;
}

#[tokio::test]
async fn garbage_http2_after_the_handshake_ends_only_that_connection() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());
    let destination = shouting_destination().await;
    let mut good = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();

    let config = tls::client_config(ca.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let tcp = TcpStream::connect(node).await.unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(tls::sni_for(&id(SERVER)), tcp)
        .await
        .unwrap();
    tls.write_all(b"this is not an HTTP/2 connection preface\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    until(&stats.http2_errors, 1).await;

    good.write_all(b"unaffected").await.unwrap();
    good.shutdown().await.unwrap();
    let mut answer = Vec::new();
    good.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"UNAFFECTED");
}
