//! The HBONE connector: reaches an endpoint through its node agent, as the waypoint.
//!
//! `CONNECT <pod-ip>:<port>` on a pooled mTLS connection to `<node address>:15008`, presenting
//! the waypoint's SVID and requiring the endpoint workload's (the agent picks it by SNI). The
//! stream names the original caller: `forwarded: for=<client>` and the caller's `baggage`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ambit_mesh::hbone::{Pool, PoolKey, HBONE_PORT};
use ambit_mesh::model::Model;
use tokio::sync::watch;

use super::identity::WaypointIdentity;
use super::resolve;
use crate::connector::{BoxIo, ConnectFuture, Connector};
use crate::model::Caller;

pub struct HboneConnector {
    pool: Pool,
    identity: Arc<WaypointIdentity>,
    model: watch::Receiver<Arc<Model>>,
    hbone_port: u16,
}

impl HboneConnector {
    /// Tunnels through `pool` (whose certificates come from `identity`) to node agents on
    /// [`HBONE_PORT`].
    pub fn new(
        pool: Pool,
        identity: Arc<WaypointIdentity>,
        model: watch::Receiver<Arc<Model>>,
    ) -> Self {
        HboneConnector {
            pool,
            identity,
            model,
            hbone_port: HBONE_PORT,
        }
    }

    /// Node agents listen on `port` instead (tests on loopback).
    pub fn with_hbone_port(mut self, port: u16) -> Self {
        self.hbone_port = port;
        self
    }
}

impl Connector for HboneConnector {
    fn connect(&self, endpoint: SocketAddr) -> ConnectFuture {
        self.connect_for(endpoint, None)
    }

    fn connect_for(&self, endpoint: SocketAddr, caller: Option<&Caller>) -> ConnectFuture {
        let hop = resolve::hop(&self.model.borrow(), endpoint, self.hbone_port);
        let pool = self.pool.clone();
        let source = self.identity.id().clone();
        // Without a caller (none today: every request carries one) the stream names no client.
        let client = caller.map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| {
            c.client_addr()
        });
        let baggage = caller.and_then(|c| c.baggage.clone()).unwrap_or_default();
        Box::pin(async move {
            let hop = hop.map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
            let key = PoolKey {
                source,
                dst_node: hop.hbone_target,
                dst_identity: hop.identity,
            };
            let stream = pool
                .connect(key, endpoint, client, baggage)
                .await
                .map_err(io::Error::other)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }

    fn per_caller(&self) -> bool {
        true
    }
}
