//! Opaque TCP: a Service port whose `appProtocol` is not HTTP is relayed byte for byte.
//!
//! Each connection goes to a backend chosen by the TCPRoute attached to the port (weighted,
//! per connection) or, without one, to the Service's own endpoints. A connect failure counts
//! against the endpoint for outlier detection; bytes are not inspected.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::connector::Connector;
use crate::metrics::Metrics;
use crate::model::{Caller, Destination};
use crate::split;
use crate::stack::Snapshot;

/// Why an opaque connection was not relayed.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("{service} has no endpoints for port {port}")]
    NoEndpoints { service: String, port: u16 },
    #[error("connecting to {endpoint}")]
    Connect {
        endpoint: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("relaying bytes")]
    Relay(#[source] io::Error),
}

pub async fn serve<I>(
    mut io: I,
    destination: &Destination,
    caller: &Caller,
    snapshot: Arc<Snapshot>,
    connector: &dyn Connector,
    metrics: &Metrics,
) -> Result<(), TcpError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let rule = snapshot.table.tcp(destination);
    let (service, port) = match rule.as_ref().and_then(|r| split::pick(&r.backends)) {
        Some(b) => (b.service.clone(), b.port),
        None => (destination.service.clone(), destination.port),
    };
    metrics.tcp_connection(rule.as_ref().map_or("passthrough", |r| &r.label));
    let no_endpoints = || TcpError::NoEndpoints {
        service: service.to_string(),
        port,
    };
    let set = snapshot
        .backends
        .get(&service)
        .and_then(|b| b.endpoints(port))
        .ok_or_else(no_endpoints)?
        .clone();
    let (index, _in_flight) = set.pick().ok_or_else(no_endpoints)?;
    let endpoint = set.addr(index);
    let mut upstream = match connector.connect_for(endpoint, Some(caller)).await {
        Ok(upstream) => {
            set.report(index, false);
            upstream
        }
        Err(source) => {
            set.report(index, true);
            return Err(TcpError::Connect { endpoint, source });
        }
    };
    tokio::io::copy_bidirectional(&mut io, &mut upstream)
        .await
        .map(|_| ())
        .map_err(TcpError::Relay)
}
