//! The request path, outermost first, in the order a request meets it.
//!
//! ```text
//! route            match an HTTPRoute rule; redirect, rewrite, headers, mirror, metrics
//! fault            the destination Service's faultInjection (delay, abort)
//! request timeout  timeouts.request, spans every try
//! retry            retry policy and budget; replays a buffered body
//! split            weighted backendRef choice, again for each try
//! backend timeout  timeouts.backendRequest, one try
//! pool             the backend Service's connectionPool (circuit breaker)
//! balance          endpoint choice, skipping ejected endpoints; feeds outlier detection
//! endpoint         the Connector and HTTP/1.1 or HTTP/2 to the endpoint
//! ```
//! Each step reads what it needs from the request's extensions: the [`Snapshot`] the route
//! step took, then [`Routed`](crate::routes::Routed), then the chosen backend and endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::layer::{layer_fn, Layer};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use crate::backends::Backends;
use crate::body::Body;
use crate::endpoint::Endpoint;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::routes::{RouteTable, Rule};
use crate::{balance, fault, pool, retries, route, split, timeouts};

pub type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, ProxyError>;
pub type HttpFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ProxyError>> + Send>>;

/// One consistent view of the config, taken once per request by the route step.
pub struct Snapshot {
    pub table: RouteTable,
    pub backends: Backends,
    pub passthrough: Arc<Rule>,
}

/// The shared parts the stack is built from.
#[derive(Clone)]
pub struct Parts {
    pub snapshot: Arc<std::sync::RwLock<Arc<Snapshot>>>,
    pub metrics: Arc<Metrics>,
    pub mirrors: Mirrors,
    pub endpoint: Endpoint,
}

/// The whole request path (see the module doc).
pub fn stack(parts: Parts) -> HttpService {
    let backend = backend_stack(parts.endpoint.clone());
    ServiceBuilder::new()
        .layer(route::layer(
            parts.snapshot,
            parts.metrics.clone(),
            parts.mirrors,
            backend,
        ))
        .layer(fault::layer())
        .layer(timeouts::request_layer())
        .layer(retries::layer(parts.metrics))
        .layer(split::layer())
        .layer(timeouts::backend_request_layer())
        .service(backend_stack(parts.endpoint))
}

/// From a chosen backend to its endpoint; mirrors enter here.
pub fn backend_stack(endpoint: Endpoint) -> HttpService {
    ServiceBuilder::new()
        .layer(pool::layer())
        .layer(balance::layer())
        .service(BoxCloneSyncService::new(endpoint))
}

/// A layer from an async function of the request and the next service.
pub fn step<F>(f: F) -> impl Layer<HttpService, Service = HttpService> + Clone
where
    F: Fn(Request<Body>, HttpService) -> HttpFuture + Clone + Send + Sync + 'static,
{
    layer_fn(move |next| BoxCloneSyncService::new(Step { f: f.clone(), next }))
}

#[derive(Clone)]
struct Step<F> {
    f: F,
    next: HttpService,
}

impl<F> Service<Request<Body>> for Step<F>
where
    F: Fn(Request<Body>, HttpService) -> HttpFuture,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Readiness is checked on `next` by each step through `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> HttpFuture {
        (self.f)(request, self.next.clone())
    }
}

/// Sends `request` through `service`, boxed so callers' futures name no service types
/// (which keeps rustc's higher-ranked lifetime checks out of the async blocks).
pub fn call(service: HttpService, request: Request<Body>) -> HttpFuture {
    Box::pin(tower::ServiceExt::oneshot(service, request))
}

#[cfg(test)]
mod tests;
