//! Splits, header matches, filters and metrics through the whole proxy.

use std::sync::Arc;

use ambit_waypoint::body;
use http::Response;
use tracing::info;

use crate::support::{client, config, get, http_route, Backend, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_sends_ten_percent_to_canary() {
    let (v1, v2) = (Backend::named("v1").await, Backend::named("v2").await);
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: v1, port: 80, weight: 90}, {name: v2, port: 80, weight: 10}]\n",
    );
    let proxy = Proxy::start(&config(
        &[("v1", vec![v1.addr]), ("v2", vec![v2.addr])],
        &routes,
    ))
    .await;

    info!("2,000 requests through the waypoint, 8 keep-alive clients");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut canary = 0;
            for _ in 0..250 {
                let answer = get(&client, addr, "/", &[]).await;
                assert_eq!(answer.status, 200);
                canary += usize::from(answer.body == "v2");
            }
            canary
        }));
    }
    let mut canary = 0;
    for t in tasks {
        canary += t.await.expect("client task");
    }
    let share = canary as f64 / 2000.0;
    assert!(
        (0.07..=0.13).contains(&share),
        "canary got {share:.3}, want ~0.10"
    );
    assert_eq!(v1.hits() + v2.hits(), 2000);
}

#[tokio::test]
async fn header_match_sends_testers_to_v2() {
    let (v1, v2) = (Backend::named("v1").await, Backend::named("v2").await);
    let routes = http_route(
        "reviews",
        "    - matches: [{headers: [{name: x-user, value: tester}]}]\n      backendRefs: [{name: v2, port: 80}]\n\
         \x20   - backendRefs: [{name: v1, port: 80}]\n",
    );
    let proxy = Proxy::start(&config(
        &[("v1", vec![v1.addr]), ("v2", vec![v2.addr])],
        &routes,
    ))
    .await;
    let client = client();
    for _ in 0..10 {
        assert_eq!(
            get(&client, proxy.addr, "/", &[("x-user", "tester")])
                .await
                .body,
            "v2"
        );
        assert_eq!(
            get(&client, proxy.addr, "/", &[("x-user", "someone")])
                .await
                .body,
            "v1"
        );
        assert_eq!(get(&client, proxy.addr, "/", &[]).await.body, "v1");
    }
}

#[tokio::test]
async fn filters_rewrite_redirect_and_modify_headers() {
    let echo = Backend::start(Arc::new(|request| {
        Box::pin(async move {
            let seen = format!(
                "{} host={} x-added={} x-secret={}",
                request.uri().path(),
                request
                    .headers()
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
                request
                    .headers()
                    .get("x-added")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
                request
                    .headers()
                    .get("x-secret")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
            );
            Response::builder()
                .header("server", "backend")
                .body(body::full(seen))
                .expect("response")
        })
    }))
    .await;
    let routes = http_route(
        "reviews",
        "    - matches: [{path: {type: PathPrefix, value: /api}}]\n\
         \x20     filters:\n\
         \x20     - {type: URLRewrite, urlRewrite: {hostname: internal.shop, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}\n\
         \x20     - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-added, value: yes}], remove: [x-secret]}}\n\
         \x20     - {type: ResponseHeaderModifier, responseHeaderModifier: {remove: [server], add: [{name: x-via, value: waypoint}]}}\n\
         \x20     backendRefs: [{name: echo, port: 80}]\n\
         \x20   - matches: [{path: {type: PathPrefix, value: /old}}]\n\
         \x20     filters: [{type: RequestRedirect, requestRedirect: {hostname: new.shop, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]\n",
    );
    let proxy = Proxy::start(&config(&[("echo", vec![echo.addr])], &routes)).await;
    let client = client();

    let answer = get(
        &client,
        proxy.addr,
        "/api/users?id=1",
        &[("x-secret", "s3cr3t")],
    )
    .await;
    assert_eq!(
        answer.body,
        "/v2/users host=internal.shop x-added=yes x-secret=-"
    );
    assert_eq!(
        answer.headers.get("x-via").map(|v| v.as_bytes()),
        Some(&b"waypoint"[..])
    );
    assert!(
        answer.headers.get("server").is_none(),
        "response header removed"
    );

    let answer = get(&client, proxy.addr, "/old/page?x=1", &[]).await;
    assert_eq!(answer.status, 301);
    assert_eq!(
        answer.headers.get("location").map(|v| v.as_bytes()),
        Some(&b"http://new.shop/new/page?x=1"[..])
    );
    assert_eq!(echo.hits(), 1, "redirects never reach a backend");

    assert_eq!(
        get(&client, proxy.addr, "/elsewhere", &[]).await.status,
        404
    );
    let metrics = proxy.waypoint.metrics().render();
    assert!(
        metrics
            .contains("ambit_waypoint_requests_total{route=\"shop/reviews/0\",class=\"2xx\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("ambit_waypoint_requests_total{route=\"shop/reviews/1\",class=\"3xx\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ambit_waypoint_requests_total{route=\"none\",class=\"4xx\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_service_without_routes_reaches_its_own_endpoints() {
    let own = Backend::named("reviews itself").await;
    let proxy = Proxy::start(&config(&[("reviews", vec![own.addr])], "")).await;
    assert_eq!(
        get(&client(), proxy.addr, "/", &[]).await.body,
        "reviews itself"
    );
}
