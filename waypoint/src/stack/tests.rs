//! The request path driven with `oneshot`, paused time and an in-memory connector.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::info;

use crate::body;
use crate::connector::{BoxIo, ConnectFuture, Connector};
use crate::model::{Destination, ServiceName};
use crate::{Config, Settings, Waypoint};

/// Serves each "connection" with an in-process HTTP/1.1 server over a duplex pipe; the
/// server waits `delay`, then answers `status`.
struct InMemory {
    delay: Duration,
    status: StatusCode,
    tries: Arc<AtomicUsize>,
}

impl Connector for InMemory {
    fn connect(&self, _endpoint: SocketAddr) -> ConnectFuture {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (delay, status, tries) = (self.delay, self.status, self.tries.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                tries.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(delay).await;
                    let mut response = Response::new(body::full("answer"));
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Box::pin(async move { Ok(Box::new(client) as BoxIo) })
    }
}

/// A waypoint whose `reviews` Service has one rule, `rule` (YAML), to Service `v1`.
fn waypoint(rule: &str, delay: Duration, status: StatusCode) -> (Waypoint, Arc<AtomicUsize>) {
    let tries = Arc::new(AtomicUsize::new(0));
    let connector = InMemory {
        delay,
        status,
        tries: tries.clone(),
    };
    let waypoint = Waypoint::new(Arc::new(connector), Settings::default());
    let yaml = format!(
        "services:\n\
         - {{namespace: shop, name: reviews, ports: [{{port: 80}}]}}\n\
         - {{namespace: shop, name: v1, ports: [{{port: 80, endpoints: [\"10.0.0.1:8080\"]}}]}}\n\
         httpRoutes:\n\
         - metadata: {{name: reviews, namespace: shop}}\n  spec:\n\
         \x20   parentRefs: [{{kind: Service, group: \"\", name: reviews}}]\n\
         \x20   rules:\n    - backendRefs: [{{name: v1, port: 80}}]\n{rule}"
    );
    let config: Config = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(waypoint.apply(&config).iter().all(|v| v.accepted));
    (waypoint, tries)
}

fn request() -> Request<body::Body> {
    let mut request = Request::get("/reviews/1")
        .body(body::empty())
        .expect("request");
    request.extensions_mut().insert(Destination {
        service: ServiceName::new("shop", "reviews"),
        port: 80,
    });
    request
}

#[tokio::test(start_paused = true)]
async fn request_timeout_covers_all_retries() {
    let (waypoint, tries) = waypoint(
        "      timeouts: {request: 1s, backendRequest: 300ms}\n      retry: {attempts: 10, backoff: 10ms}\n",
        Duration::from_secs(10),
        StatusCode::OK,
    );
    info!("Sending a request that no try answers within backendRequest");
    let started = Instant::now();
    let response = crate::stack::call(waypoint.http_service(), request())
        .await
        .expect("a response");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1010),
        "{elapsed:?}"
    );
    // Tries start at 0, ~310, ~630 and ~960 ms (backoff 10, 20, 40 ms plus jitter).
    assert!(
        (3..=4).contains(&tries.load(Ordering::SeqCst)),
        "{} tries",
        tries.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_and_stop_after_attempts() {
    let (waypoint, tries) = waypoint(
        "      retry: {attempts: 2, codes: [503], backoff: 100ms}\n",
        Duration::ZERO,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let started = Instant::now();
    let response = crate::stack::call(waypoint.http_service(), request())
        .await
        .expect("a response");
    let elapsed = started.elapsed();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the last answer reaches the client"
    );
    assert_eq!(tries.load(Ordering::SeqCst), 3, "one try and two retries");
    // Waits of 100 ms and 200 ms, each with up to 25 % jitter.
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed <= Duration::from_millis(375),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn codes_not_listed_are_not_retried() {
    let (waypoint, tries) = waypoint(
        "      retry: {attempts: 2, codes: [503]}\n",
        Duration::ZERO,
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    let response = crate::stack::call(waypoint.http_service(), request())
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn backend_request_timeout_without_retry_answers_504() {
    let (waypoint, tries) = waypoint(
        "      timeouts: {backendRequest: 250ms}\n",
        Duration::from_secs(5),
        StatusCode::OK,
    );
    let started = Instant::now();
    let response = crate::stack::call(waypoint.http_service(), request())
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_millis(260));
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn injected_aborts_never_reach_the_backend_and_answer_grpc_in_grpc() {
    let tries = Arc::new(AtomicUsize::new(0));
    let connector = InMemory {
        delay: Duration::ZERO,
        status: StatusCode::OK,
        tries: tries.clone(),
    };
    let waypoint = Waypoint::new(Arc::new(connector), Settings::default());
    let yaml = "services:\n\
         - {namespace: shop, name: reviews, ports: [{port: 80, endpoints: [\"10.0.0.1:8080\"]}],\n\
         \x20  trafficPolicy: {faultInjection: {abort: {percentage: 100, httpStatus: 503, grpcStatus: 8}}}}\n";
    let config: Config = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(waypoint.apply(&config).iter().all(|v| v.accepted));

    let response = crate::stack::call(waypoint.http_service(), request())
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("grpc-status").is_none());

    let mut grpc = request();
    grpc.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    let response = crate::stack::call(waypoint.http_service(), grpc)
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::OK, "trailers-only");
    assert_eq!(response.headers()["grpc-status"], "8");
    assert_eq!(tries.load(Ordering::SeqCst), 0, "aborted before any try");
}
