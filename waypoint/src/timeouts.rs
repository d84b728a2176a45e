//! `timeouts.request` (around every try) and `timeouts.backendRequest` (around one try).
//!
//! Both end when response headers arrive: a streaming response body (gRPC, downloads) is not
//! cut off. Expiry is a 504.

use tower::Layer;

use crate::error::ProxyError;
use crate::routes::Routed;
use crate::stack::{call, step, HttpService};

pub fn request_layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|request, next| {
        let limit = routed(&request).and_then(|r| r.rule.timeouts.request);
        Box::pin(async move {
            match limit {
                None => call(next, request).await,
                Some(limit) => tokio::time::timeout(limit, call(next, request))
                    .await
                    .unwrap_or(Err(ProxyError::RequestTimeout(limit))),
            }
        })
    })
}

pub fn backend_request_layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|request, next| {
        let limit = routed(&request).and_then(|r| r.rule.timeouts.backend_request);
        Box::pin(async move {
            match limit {
                None => call(next, request).await,
                Some(limit) => tokio::time::timeout(limit, call(next, request))
                    .await
                    .unwrap_or(Err(ProxyError::BackendTimeout(limit))),
            }
        })
    })
}

fn routed<B>(request: &http::Request<B>) -> Option<&Routed> {
    request.extensions().get::<Routed>()
}
