//! GEP-1731 retries and the retry budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambit_waypoint::{body, RetryBudgetConfig, Settings};
use http::{Response, StatusCode};
use tracing::info;

use crate::support::{client, config, get, http_route, reviews, Backend, Proxy};

/// A backend answering 503 to the first two of every three requests.
async fn flaky() -> Backend {
    let n = Arc::new(AtomicUsize::new(0));
    Backend::start(Arc::new(move |_| {
        let nth = n.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let status = if nth % 3 == 2 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Response::builder()
                .status(status)
                .body(body::full("flaky"))
                .expect("response")
        })
    }))
    .await
}

#[tokio::test]
async fn three_retries_hide_a_backend_failing_two_of_three_times() {
    let backend = flaky().await;
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: flaky, port: 80}]\n      retry: {attempts: 3, codes: [503], backoff: 1ms}\n",
    );
    let proxy = Proxy::start(&config(&[("flaky", vec![backend.addr])], &routes)).await;
    let client = client();
    info!("30 requests, each needing two retries");
    for _ in 0..30 {
        assert_eq!(get(&client, proxy.addr, "/", &[]).await.status, 200);
    }
    assert_eq!(backend.hits(), 90, "every request took three tries");
}

#[tokio::test]
async fn without_retry_the_failures_reach_the_client() {
    let backend = flaky().await;
    let routes = http_route("reviews", "    - backendRefs: [{name: flaky, port: 80}]\n");
    let proxy = Proxy::start(&config(&[("flaky", vec![backend.addr])], &routes)).await;
    let client = client();
    let mut failures = 0;
    for _ in 0..30 {
        failures += usize::from(get(&client, proxy.addr, "/", &[]).await.status == 503);
    }
    assert_eq!(failures, 20);
    assert_eq!(backend.hits(), 30);
}

#[tokio::test]
async fn retry_budget_caps_extra_load_in_an_outage() {
    let down = Backend::start(Arc::new(|_| {
        Box::pin(async {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(body::empty())
                .expect("response")
        })
    }))
    .await;
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: down, port: 80}]\n      retry: {attempts: 3, codes: [503], backoff: 1ms}\n",
    );
    let settings = Settings {
        retry_budget: RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 1,
            window: Duration::from_secs(10),
        },
        ..Settings::default()
    };
    let proxy = Proxy::with(
        &config(&[("down", vec![down.addr])], &routes),
        settings,
        reviews(80),
    )
    .await;
    let client = client();
    info!("100 requests to a backend that is down; without a budget that is 400 tries");
    for _ in 0..100 {
        assert_eq!(get(&client, proxy.addr, "/", &[]).await.status, 503);
    }
    let hits = down.hits();
    // 100 requests + 20 % of them + 1 per second over the 10 s window.
    assert!(hits > 100, "some retries were sent ({hits} hits)");
    assert!(
        hits <= 130,
        "the budget allows at most 130 tries, backend saw {hits}"
    );
    let metrics = proxy.waypoint.metrics().render();
    assert!(
        metrics.contains("ambit_waypoint_retry_budget_exhausted_total{route=\"shop/reviews/0\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bodies_are_replayed_on_retry() {
    let n = Arc::new(AtomicUsize::new(0));
    let backend = Backend::start(Arc::new(move |request| {
        let first = n.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move {
            use http_body_util::BodyExt;
            let bytes = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let status = if first {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Response::builder()
                .status(status)
                .body(body::full(bytes))
                .expect("response")
        })
    }))
    .await;
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: echo, port: 80}]\n      retry: {attempts: 1, codes: [503], backoff: 1ms}\n",
    );
    let proxy = Proxy::start(&config(&[("echo", vec![backend.addr])], &routes)).await;
    let request = http::Request::post(format!("http://{}/", proxy.addr))
        .body(body::full("order #42"))
        .expect("request");
    let answer = crate::support::send(&client(), request).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "order #42"));
    assert_eq!(backend.hits(), 2);
}
