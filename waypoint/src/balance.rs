//! Endpoint choice for the chosen backend, and outcomes fed back to outlier detection.

use std::net::SocketAddr;
use std::sync::Arc;

use tower::Layer;

use crate::body;
use crate::error::ProxyError;
use crate::model::{PortProtocol, ServiceName};
use crate::routes::BackendRef;
use crate::stack::{call, step, HttpService, Snapshot};

/// The endpoint a try goes to, for the endpoint step.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: ServiceName,
    pub endpoint: SocketAddr,
    pub protocol: PortProtocol,
}

pub fn layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|mut request, next| {
        let backend = request.extensions().get::<BackendRef>().cloned();
        let snapshot = request.extensions().get::<Arc<Snapshot>>().cloned();
        Box::pin(async move {
            let (Some(backend), Some(snapshot)) = (backend, snapshot) else {
                return Ok(internal_error());
            };
            let no_endpoints = || ProxyError::NoEndpoints {
                service: backend.service.clone(),
                port: backend.port,
            };
            let set = snapshot
                .backends
                .get(&backend.service)
                .and_then(|b| b.endpoints(backend.port))
                .ok_or_else(no_endpoints)?
                .clone();
            let (index, in_flight) = set.pick().ok_or_else(no_endpoints)?;
            request.extensions_mut().insert(Target {
                service: backend.service.clone(),
                endpoint: set.addr(index),
                protocol: set.protocol,
            });
            let outcome = call(next, request).await;
            let failed = match &outcome {
                Ok(response) => response.status().is_server_error(),
                Err(ProxyError::Connect { .. } | ProxyError::Backend { .. }) => true,
                Err(_) => false,
            };
            set.report(index, failed);
            outcome.map(|response| response.map(|b| body::with_guard(b, in_flight)))
        })
    })
}

/// A step above forgot its extension: a bug, answered with 500 rather than a panic.
pub fn internal_error() -> http::Response<body::Body> {
    let mut response = http::Response::new(body::empty());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
