//! Ambit's waypoint engine: HTTPRoute routing and the L7 request path.
//!
//! A connection is any byte stream plus the [`Destination`] it was addressed to and its
//! [`Caller`]; backends are reached through a [`Connector`]. The HBONE front end (port 15008,
//! [`hbone`]) hands each CONNECT stream to [`Waypoint::serve`], and [`hbone::HboneConnector`]
//! tunnels to endpoints through their node agents.
//!
//! # Usage
//! ```no_run
//! # async fn run(io: tokio::net::TcpStream, config: ambit_waypoint::Config) {
//! use std::sync::Arc;
//! use ambit_waypoint::{Caller, Destination, ServiceName, TcpConnector, Waypoint};
//!
//! let waypoint = Waypoint::new(Arc::new(TcpConnector::default()), Default::default());
//! for verdict in waypoint.apply(&config) {
//!     if !verdict.accepted { eprintln!("{} {}: {}", verdict.kind, verdict.route, verdict.reason) }
//! }
//! let destination = Destination { service: ServiceName::new("shop", "reviews"), port: 80 };
//! let caller = Caller::plain(io.peer_addr().unwrap());
//! waypoint.serve(io, destination, caller).await.ok();
//! # }
//! ```

pub mod backends;
pub mod balance;
pub mod body;
pub mod connector;
pub mod endpoint;
pub mod error;
pub mod fault;
pub mod hbone;
pub mod metrics;
pub mod mirror;
pub mod model;
pub mod outlier;
pub mod policy;
pub mod pool;
pub mod retries;
pub mod route;
pub mod routes;
pub mod split;
pub mod stack;
pub mod status;
pub mod tcp;
pub mod timeouts;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::tcproutes::TcpRoute;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::connector::{Connector, TcpConnector};
pub use crate::model::{Caller, Destination, PortProtocol, Service, ServiceName, ServicePort};
pub use crate::policy::TrafficPolicySpec;
pub use crate::retries::RetryBudgetConfig;
pub use crate::routes::RouteVerdict;

use crate::backends::Backends;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::model::Services;
use crate::routes::{LastGood, Rule};
use crate::stack::{HttpService, Parts, Snapshot};

/// Everything the waypoint routes by; one document in the local runner's YAML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub http_routes: Vec<HttpRoute>,
    #[serde(default)]
    pub grpc_routes: Vec<GrpcRoute>,
    #[serde(default)]
    pub tcp_routes: Vec<TcpRoute>,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The budget each route rule's retries draw from.
    pub retry_budget: RetryBudgetConfig,
    /// Mirrored requests in flight at once; more are skipped.
    pub max_mirrors_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry_budget: RetryBudgetConfig::default(),
            max_mirrors_in_flight: 64,
        }
    }
}

/// Why a connection ended in error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving HTTP to {peer}")]
    Http {
        peer: std::net::SocketAddr,
        #[source]
        source: body::BoxError,
    },
    #[error("relaying opaque TCP from {peer}")]
    Tcp {
        peer: std::net::SocketAddr,
        #[source]
        source: tcp::TcpError,
    },
}

/// The waypoint engine: the current config and the request path built over it.
pub struct Waypoint {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    last_good: Mutex<LastGood>,
    settings: Settings,
    connector: Arc<dyn Connector>,
    metrics: Arc<Metrics>,
    stack: HttpService,
}

impl Waypoint {
    pub fn new(connector: Arc<dyn Connector>, settings: Settings) -> Self {
        let snapshot = Arc::new(RwLock::new(Arc::new(Snapshot {
            table: Default::default(),
            backends: Backends::default(),
            passthrough: Arc::new(Rule::passthrough(&settings.retry_budget)),
        })));
        let metrics = Arc::new(Metrics::default());
        let stack = stack::stack(Parts {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            mirrors: Mirrors::new(settings.max_mirrors_in_flight, metrics.clone()),
            endpoint: endpoint::Endpoint::new(connector.clone()),
        });
        Waypoint {
            snapshot,
            last_good: Mutex::new(LastGood::default()),
            settings,
            connector,
            metrics,
            stack,
        }
    }

    /// Swaps in `config`. Rejected routes are logged and counted, and returned; for a
    /// rejected route its previously accepted version, if any, keeps serving.
    pub fn apply(&self, config: &Config) -> Vec<RouteVerdict> {
        let services: Services = config.services.iter().cloned().collect();
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let (table, verdicts, good) = routes::build(
            &services,
            &config.http_routes,
            &config.grpc_routes,
            &config.tcp_routes,
            &last_good,
            &self.settings.retry_budget,
        );
        *last_good = good;
        let mut current = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let backends = Backends::build(&services, &current.backends);
        *current = Arc::new(Snapshot {
            table,
            backends,
            passthrough: current.passthrough.clone(),
        });
        for v in verdicts.iter().filter(|v| !v.accepted) {
            tracing::warn!(kind = v.kind, route = %v.route, reason = %v.reason, "route rejected");
            self.metrics.route_rejected(v.kind, v.route.to_string());
        }
        verdicts
    }

    /// The whole request path, for callers that already speak HTTP (and for tests).
    pub fn http_service(&self) -> HttpService {
        self.stack.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one connection addressed to `destination`: HTTP/1.1 and HTTP/2 (detected) with
    /// upgrades, or opaque TCP if the port's `appProtocol` is not HTTP.
    pub async fn serve<I>(
        &self,
        io: I,
        destination: Destination,
        caller: Caller,
    ) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let protocol = snapshot
            .backends
            .get(&destination.service)
            .and_then(|b| b.service.port(destination.port))
            .map_or(PortProtocol::Http, ServicePort::protocol);
        let peer = caller.peer;
        if protocol == PortProtocol::Tcp {
            return tcp::serve(
                io,
                &destination,
                &caller,
                snapshot,
                self.connector.as_ref(),
                &self.metrics,
            )
            .await
            .map_err(|source| ServeError::Tcp { peer, source });
        }
        drop(snapshot);
        let stack = self.stack.clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let mut request = request.map(body::boxed);
                request.extensions_mut().insert(destination.clone());
                request.extensions_mut().insert(caller.clone());
                let stack = stack.clone();
                async move {
                    let response = stack::call(stack, request).await.unwrap_or_else(|e| {
                        balance::internal_error().map(|_| body::full(e.to_string()))
                    });
                    Ok::<_, Infallible>(response)
                }
            });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The timers bound how long a caller may take to send request headers (HTTP/1.1,
        // 30 s by default) and drive HTTP/2 keepalive.
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .await
            .map_err(|source| ServeError::Http { peer, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_accepted() {
        let config: Config =
            serde_yaml::from_str(include_str!("../config.example.yaml")).expect("example parses");
        let waypoint = Waypoint::new(Arc::new(TcpConnector::default()), Settings::default());
        let verdicts = waypoint.apply(&config);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts.iter().all(|v| v.accepted), "{verdicts:?}");
    }
}
