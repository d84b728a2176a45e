//! gRPC-style HTTP/2: header routing, streaming bodies and trailers pass through.

use std::sync::Arc;
use std::time::Duration;

use ambit_waypoint::body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, Notify};
use tracing::info;

use crate::support::{config, http_route, Backend, ChannelBody, Proxy};

/// A gRPC length-prefixed message.
fn message(payload: &[u8]) -> Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(payload);
    Bytes::from(framed)
}

/// Streams `first`, waits for `go`, then streams `second` and `grpc-status: 0` trailers.
async fn streaming_backend(name: &'static str, go: Arc<Notify>) -> Backend {
    Backend::start(Arc::new(move |request: Request<hyper::body::Incoming>| {
        let go = go.clone();
        Box::pin(async move {
            let version = request.version();
            let host = request.headers().get("host").cloned();
            let got = request
                .into_body()
                .collect()
                .await
                .expect("request body")
                .to_bytes();
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let _ = tx
                    .send(Frame::data(message(
                        format!("{name}:first:{}", got.len()).as_bytes(),
                    )))
                    .await;
                go.notified().await;
                let _ = tx.send(Frame::data(message(b"second"))).await;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().expect("value"));
                let _ = tx.send(Frame::trailers(trailers)).await;
            });
            Response::builder()
                .header("content-type", "application/grpc")
                .header("x-backend-version", format!("{version:?}"))
                .header(
                    "x-backend-host",
                    host.unwrap_or_else(|| "-".parse().expect("value")),
                )
                .body(body::boxed(ChannelBody(rx)))
                .expect("response")
        })
    }))
    .await
}

#[tokio::test]
async fn grpc_streams_and_trailers_pass_through_a_header_route() {
    let go = Arc::new(Notify::new());
    let a = streaming_backend("a", go.clone()).await;
    let b = streaming_backend("b", go.clone()).await;
    let routes = http_route(
        "reviews",
        "    - matches: [{headers: [{name: x-variant, value: b}]}]\n      backendRefs: [{name: grpc-b, port: 80}]\n\
         \x20   - backendRefs: [{name: grpc-a, port: 80}]\n",
    );
    let proxy = Proxy::start(&config(
        &[("grpc-a", vec![a.addr]), ("grpc-b", vec![b.addr])],
        &routes,
    ))
    .await;

    info!("an HTTP/2 (prior knowledge) client calls a streaming method");
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel(4);
    let request = Request::post("http://reviews.shop/shop.Reviews/Watch")
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-variant", "b")
        .body(ChannelBody(rx))
        .expect("request");
    tx.send(Frame::data(message(b"hello"))).await.expect("send");
    drop(tx);
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-backend-version"],
        "HTTP/2.0",
        "backend spoke HTTP/2"
    );
    let mut body = response.into_body();

    info!("the first message arrives while the backend still holds the second");
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .expect("first frame was not buffered")
        .expect("a frame")
        .expect("ok frame");
    assert_eq!(first.data_ref().map(|d| &d[5..]), Some(&b"b:first:10"[..]));
    go.notify_one();
    let rest = body.collect().await.expect("rest of the stream");
    let trailers = rest.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(&rest.to_bytes()[5..], b"second");
    assert_eq!((a.hits(), b.hits()), (0, 1));
}

#[tokio::test]
async fn a_grpc_call_no_rule_matches_gets_grpc_status_unimplemented() {
    let go = Arc::new(Notify::new());
    let a = streaming_backend("a", go.clone()).await;
    let routes = http_route(
        "reviews",
        "    - matches: [{headers: [{name: x-variant, value: a}]}]\n      backendRefs: [{name: grpc-a, port: 80}]\n",
    );
    let proxy = Proxy::start(&config(&[("grpc-a", vec![a.addr])], &routes)).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::post("http://reviews.shop/shop.Reviews/Get")
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body::full(message(b"hello")))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");

    info!("a trailers-only answer: HTTP 200, the outcome in grpc-status");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "12", "UNIMPLEMENTED");
    assert_eq!(response.headers()["grpc-message"], "no route matches");
    assert_eq!(a.hits(), 0);

    let metrics = proxy.waypoint.metrics().render();
    assert!(
        metrics.contains("ambit_waypoint_requests_total{route=\"none\",class=\"4xx\"} 1\n"),
        "counted as the 404 it stands for: {metrics}"
    );
}
