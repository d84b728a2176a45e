//! Why a request did not reach a backend's answer, and the status each reason becomes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::model::ServiceName;

/// A failure inside the request path. The route layer turns it into a response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// 504: `timeouts.request` expired; it spans every retry.
    #[error("no response within {0:?} (the rule's timeouts.request)")]
    RequestTimeout(Duration),
    /// 504: one try outlived `timeouts.backendRequest`; retryable.
    #[error("backend did not answer within {0:?} (the rule's timeouts.backendRequest)")]
    BackendTimeout(Duration),
    /// 503: the service has no endpoint for the port the backendRef names.
    #[error("{service} has no endpoints for port {port}")]
    NoEndpoints { service: ServiceName, port: u16 },
    /// 503: the service's connection pool is full and its pending queue too (circuit breaker).
    #[error("{service} is at its connectionPool limits (maxConnections/maxPendingRequests)")]
    Overflow { service: ServiceName },
    /// 503: the connector could not reach the endpoint; retryable, counts against the endpoint.
    #[error("connecting to {endpoint} of {service}")]
    Connect {
        service: ServiceName,
        endpoint: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The destination Service's faultInjection aborted the request with this status (and,
    /// for a gRPC request, this gRPC status when the policy names one).
    #[error("aborted by the Service's faultInjection")]
    FaultAbort {
        status: StatusCode,
        grpc_status: Option<u16>,
    },
    /// 502: the connection to the endpoint broke before a response arrived.
    #[error("request to {endpoint} of {service} failed")]
    Backend {
        service: ServiceName,
        endpoint: SocketAddr,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::RequestTimeout(_) | ProxyError::BackendTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::NoEndpoints { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Backend { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::FaultAbort { status, .. } => *status,
        }
    }

    /// Whether another try (possibly on another backend) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::BackendTimeout(_) | ProxyError::Connect { .. }
        ) || matches!(self, ProxyError::Backend { source, .. } if source.is_connect())
    }
}
