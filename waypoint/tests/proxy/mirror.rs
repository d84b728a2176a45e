//! RequestMirror: the shadow gets a copy, the client only the primary's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_waypoint::body;
use http::Response;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::info;

use crate::support::{client, config, http_route, send, Backend, Proxy};

#[tokio::test]
async fn mirror_copies_the_request_without_slowing_it() {
    let primary = Backend::named("primary").await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let shadow = Backend::start(Arc::new(move |request| {
        let seen_tx = seen_tx.clone();
        Box::pin(async move {
            let host = request
                .headers()
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let path = request.uri().path().to_owned();
            let body = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let _ = seen_tx.send((host, path, body));
            info!("the shadow takes its time answering");
            tokio::time::sleep(Duration::from_secs(2)).await;
            Response::builder()
                .status(500)
                .body(body::full("shadow"))
                .expect("response")
        })
    }))
    .await;
    let routes = http_route(
        "reviews",
        "    - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}}}]\n      backendRefs: [{name: primary, port: 80}]\n",
    );
    let proxy = Proxy::start(&config(
        &[
            ("primary", vec![primary.addr]),
            ("shadow", vec![shadow.addr]),
        ],
        &routes,
    ))
    .await;

    let started = Instant::now();
    let request = http::Request::post(format!("http://{}/orders", proxy.addr))
        .header("host", "reviews.shop")
        .body(body::full("order #7"))
        .expect("request");
    let answer = send(&client(), request).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "primary"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "mirror slowed the request: {:?}",
        started.elapsed()
    );

    let (host, path, body) = tokio::time::timeout(Duration::from_secs(2), seen.recv())
        .await
        .expect("shadow got a copy in time")
        .expect("copy");
    assert_eq!(host, "reviews.shop-shadow");
    assert_eq!(path, "/orders");
    assert_eq!(&body[..], b"order #7");
    assert_eq!(primary.hits(), 1);
}
