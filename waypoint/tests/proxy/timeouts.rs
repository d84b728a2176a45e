//! `timeouts.request` and `timeouts.backendRequest`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_waypoint::body;
use http::Response;

use crate::support::{client, config, get, http_route, Backend, Proxy};

async fn sleepy() -> Backend {
    Backend::start(Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Response::new(body::full("late"))
        })
    }))
    .await
}

#[tokio::test]
async fn request_timeout_answers_504_in_time() {
    let backend = sleepy().await;
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: sleepy, port: 80}]\n      timeouts: {request: 200ms}\n",
    );
    let proxy = Proxy::start(&config(&[("sleepy", vec![backend.addr])], &routes)).await;
    let started = Instant::now();
    let answer = get(&client(), proxy.addr, "/", &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(300),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn request_timeout_covers_all_retries() {
    let backend = sleepy().await;
    let routes = http_route(
        "reviews",
        "    - backendRefs: [{name: sleepy, port: 80}]\n      timeouts: {request: 400ms, backendRequest: 100ms}\n      retry: {attempts: 5, backoff: 10ms}\n",
    );
    let proxy = Proxy::start(&config(&[("sleepy", vec![backend.addr])], &routes)).await;
    let started = Instant::now();
    let answer = get(&client(), proxy.addr, "/", &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(500),
        "took {elapsed:?}"
    );
    assert!(
        backend.hits() >= 2,
        "backendRequest expiry was retried ({} tries)",
        backend.hits()
    );
}
