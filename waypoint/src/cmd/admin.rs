//! Admin listeners: Prometheus metrics (`GET /metrics`) and readiness (`GET /healthz/ready`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ambit_waypoint::{body, Waypoint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The engine's metrics, then `more()` (e.g. the HBONE counters).
pub async fn serve_metrics(
    waypoint: Arc<Waypoint>,
    more: impl Fn() -> String + Send + Sync + 'static,
    listen: SocketAddr,
) {
    serve(listen, "metrics", move |path| {
        if path == "/metrics" {
            http::Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(body::full(waypoint.metrics().render() + &more()))
        } else {
            http::Response::builder().status(404).body(body::empty())
        }
    })
    .await
}

/// 200 on `/healthz/ready` once `ready()` holds, 503 before.
pub async fn serve_readiness(ready: impl Fn() -> bool + Send + Sync + 'static, listen: SocketAddr) {
    serve(listen, "readiness", move |path| {
        let status = match (path == "/healthz/ready", ready()) {
            (false, _) => 404,
            (true, true) => 200,
            (true, false) => 503,
        };
        http::Response::builder().status(status).body(body::empty())
    })
    .await
}

async fn serve<F>(listen: SocketAddr, what: &'static str, answer: F)
where
    F: Fn(&str) -> http::Result<http::Response<body::Body>> + Send + Sync + 'static,
{
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%listen, error = %e, "{what} listener not started");
            return;
        }
    };
    let answer = Arc::new(answer);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    ready(answer(request.uri().path()))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn ready<T>(value: T) -> impl Future<Output = T> {
    std::future::ready(value)
}
