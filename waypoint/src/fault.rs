//! Fault injection from the destination Service's `faultInjection`: delay, then abort.
//!
//! Sits outside the request timeout and the retries: an injected abort is what the caller
//! sees, never retried, and an injected delay does not eat into `timeouts.request`. An abort
//! is answered by the route step like the waypoint's other answers, so a gRPC caller gets a
//! trailers-only reply with a `grpc-status`.

use std::sync::Arc;

use http::StatusCode;
use tower::Layer;

use crate::error::ProxyError;
use crate::policy::FaultInjection;
use crate::routes::Routed;
use crate::stack::{call, step, HttpService, Snapshot};

pub fn layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|request, next| {
        let fault = fault_for(&request);
        Box::pin(async move {
            if let Some(fault) = fault {
                if let Some(delay) = fault.delay.as_ref().filter(|d| chance(d.percentage)) {
                    tokio::time::sleep(delay.fixed_delay).await;
                }
                if let Some(abort) = fault.abort.as_ref().filter(|a| chance(a.percentage)) {
                    return Err(ProxyError::FaultAbort {
                        status: StatusCode::from_u16(abort.http_status)
                            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        grpc_status: abort.grpc_status,
                    });
                }
            }
            call(next, request).await
        })
    })
}

fn fault_for<B>(request: &http::Request<B>) -> Option<FaultInjection> {
    let routed = request.extensions().get::<Routed>()?;
    let snapshot = request.extensions().get::<Arc<Snapshot>>()?;
    snapshot
        .backends
        .get(&routed.destination.service)?
        .service
        .traffic_policy
        .fault_injection
        .clone()
}

/// True for `percentage` percent of calls.
fn chance(percentage: f64) -> bool {
    percentage >= 100.0 || (percentage > 0.0 && fastrand::f64() * 100.0 < percentage)
}
