//! The outbound listener (15001): accepts redirected connections, finds each one's original
//! destination and origin in the kernel's records, and relays it there.
//!
//! A connection without a kernel record is refused with a reset: 15001 is not an open relay.
//! The origin is the netns cookie the kernel recorded at connect time, never the source IP.
//!
//! Where each connection goes is decided by `plan` (pure); `tunnel.rs` carries mesh hops over
//! HBONE and `direct.rs` everything else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ambit_common::{OrigDst, SockKey};
use ambit_mesh::model::Model;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod balance;
mod direct;
pub mod plan;
mod tunnel;

pub use balance::OpenConnections;
use plan::{HboneHop, OutboundPlan};
pub use tunnel::Tunnel;

use crate::enroll::EnrolledNames;
use crate::kernel_maps::KernelMaps;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of the outbound proxy, exported on the metrics port.
#[derive(Debug, Default)]
pub struct OutboundStats {
    pub accepted: AtomicU64,
    pub relayed: AtomicU64,
    pub refused_no_record: AtomicU64,
    /// A service VIP with no endpoints or no such port.
    pub refused_no_route: AtomicU64,
    /// Relayed through the HBONE tunnel (a subset of `relayed`).
    pub tunnelled: AtomicU64,
    pub upstream_failed: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    pub active: AtomicU64,
}

pub struct Outbound {
    pub node: String,
    pub maps: Arc<KernelMaps>,
    /// Names of enrolled netns, published by the enroller.
    pub names: Arc<EnrolledNames>,
    pub model: watch::Receiver<Arc<Model>>,
    pub fastpath: bool,
    pub stats: Arc<OutboundStats>,
    /// The agent's address as pods see it; upstream connections leave from it.
    pub source: Option<std::net::IpAddr>,
    /// Open connections per endpoint, for load balancing.
    pub balancer: Arc<OpenConnections>,
    /// The mTLS tunnel; without a CA configured, mesh hops are relayed in plaintext.
    pub tunnel: Option<Tunnel>,
    /// Pods of this node that a same-node mesh hop reaches from the client's own address
    /// (`--client-address preserve`).
    pub transparent: Option<Arc<crate::return_path::Steered>>,
}

/// Where one connection goes.
enum Hop {
    Direct(SocketAddr),
    Tunnel(Box<HboneHop>),
}

#[derive(Debug, thiserror::Error)]
enum OutboundError {
    #[error("accepted connection from {peer} has no local address")]
    Accept {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no kernel record for {peer} -> {local}: not a redirected connection, refused")]
    NoRecord { peer: SocketAddr, local: SocketAddr },
    #[error("no route for {origin} to {dialled}: {source}")]
    NoRoute {
        dialled: SocketAddr,
        origin: String,
        #[source]
        source: plan::PlanError,
    },
    #[error(
        "no certificate for {identity} yet (is the CA reachable?); refused {origin}'s connection"
    )]
    NoCertificate { identity: String, origin: String },
    #[error("tunnel to {dst} via {via} for {origin} failed")]
    Tunnel {
        dst: SocketAddr,
        via: SocketAddr,
        origin: String,
        #[source]
        source: ambit_mesh::hbone::TunnelError,
    },
    #[error("{origin}'s connection to {dialled} must go through waypoint {waypoint}, which is reached only over the mTLS tunnel; this agent runs without a CA (--ca-addr): refused")]
    WaypointWithoutTunnel {
        dialled: SocketAddr,
        origin: String,
        waypoint: String,
    },
    #[error("connect to original destination {dst} for {origin} failed")]
    Upstream {
        dst: SocketAddr,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "connect to original destination {dst} for {origin} timed out after {CONNECT_TIMEOUT:?}"
    )]
    UpstreamTimeout { dst: SocketAddr, origin: String },
}

impl Outbound {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept on the outbound listener failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Relaxed);
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                this.stats.active.fetch_add(1, Relaxed);
                if let Err(e) = this.handle(stream, peer).await {
                    match e {
                        OutboundError::NoRecord { .. }
                        | OutboundError::NoRoute { .. }
                        | OutboundError::WaypointWithoutTunnel { .. } => {
                            tracing::warn!("{e}")
                        }
                        _ => tracing::info!("{e}"),
                    }
                }
                this.stats.active.fetch_sub(1, Relaxed);
            });
        }
    }

    async fn handle(&self, client: TcpStream, peer: SocketAddr) -> Result<(), OutboundError> {
        let local = client
            .local_addr()
            .map_err(|source| OutboundError::Accept { peer, source })?;
        let Some(orig) = self.lookup(local, peer) else {
            self.stats.refused_no_record.fetch_add(1, Relaxed);
            reset(client);
            return Err(OutboundError::NoRecord { peer, local });
        };
        let dialled = orig.socket_addr();
        let origin = self
            .names
            .name_of(orig.netns_cookie)
            .unwrap_or_else(|| format!("netns:{}", orig.netns_cookie));
        let hop = match self.next_hop(&origin, dialled) {
            Ok(hop) => hop,
            Err(source) => {
                self.stats.refused_no_route.fetch_add(1, Relaxed);
                reset(client);
                return Err(OutboundError::NoRoute {
                    dialled,
                    origin,
                    source,
                });
            }
        };
        tracing::debug!(%origin, %dialled, client = %peer, "relaying");
        // What the balancer counts open connections on: the endpoint, or the waypoint pod.
        let (endpoint, balanced) = match &hop {
            Hop::Direct(dst) => (*dst, *dst),
            Hop::Tunnel(hop) if hop.waypoint.is_some() => {
                (hop.actual_destination, hop.hbone_target)
            }
            Hop::Tunnel(hop) => (hop.actual_destination, hop.actual_destination),
        };
        let _open = self.balancer.opened(balanced);
        // A mesh hop to a pod of this node keeps the client's address where it can; a
        // passthrough never does (its replies do not come back through this node).
        let caller = match &hop {
            Hop::Tunnel(h) if h.waypoint.is_none() && h.destination_node == self.node => self
                .transparent
                .as_ref()
                .filter(|s| s.keeps(peer.ip(), endpoint.ip()))
                .map(|_| peer.ip()),
            _ => None,
        };
        match (hop, &self.tunnel) {
            // A waypoint is a proxy of its own that speaks only HBONE, wherever it runs.
            (Hop::Tunnel(hop), Some(tunnel)) if hop.waypoint.is_some() => {
                self.relay_tunnel(tunnel, client, peer, *hop, origin).await
            }
            (Hop::Tunnel(hop), None) if hop.waypoint.is_some() => {
                self.stats.refused_no_route.fetch_add(1, Relaxed);
                reset(client);
                Err(OutboundError::WaypointWithoutTunnel {
                    dialled,
                    origin,
                    waypoint: hop.waypoint.unwrap_or_default(),
                })
            }
            // A destination on this node is delivered in-process: the bytes never leave the node and
            // the source identity is attested by the kernel, so a TLS hop to ourselves would add
            // cost and no assurance.
            (Hop::Tunnel(hop), Some(tunnel)) if hop.destination_node != self.node => {
                self.relay_tunnel(tunnel, client, peer, *hop, origin).await
            }
            (_, _) => self.relay_direct(client, endpoint, origin, caller).await,
        }
    }

    /// Records one finished relay.
    fn count_closed(&self, origin: &str, dst: SocketAddr, relayed: std::io::Result<(u64, u64)>) {
        match relayed {
            Ok((sent, received)) => {
                self.stats.sent_bytes.fetch_add(sent, Relaxed);
                self.stats.received_bytes.fetch_add(received, Relaxed);
                tracing::debug!(%origin, %dst, sent, received, "connection closed");
            }
            Err(e) => tracing::debug!(%origin, %dst, error = %e, "connection ended with an error"),
        }
    }

    /// Where a connection `origin` (`namespace/name`) made to `dialled` goes.
    fn next_hop(&self, origin: &str, dialled: SocketAddr) -> Result<Hop, plan::PlanError> {
        let Some(source) = origin.split_once('/') else {
            // Enrolled netns whose workload name is unknown: go where the application asked.
            return Ok(Hop::Direct(dialled));
        };
        let model = self.model.borrow().clone();
        match plan::plan(&model, source, dialled, &*self.balancer) {
            Ok(OutboundPlan::Hbone(hop)) => Ok(Hop::Tunnel(hop)),
            Ok(OutboundPlan::Passthrough { destination, .. }) => Ok(Hop::Direct(destination)),
            // Un-enrolled between connect and accept, or deleted: go where it asked.
            Err(plan::PlanError::UnknownSource { .. }) => Ok(Hop::Direct(dialled)),
            Err(e) => Err(e),
        }
    }

    fn lookup(&self, local: SocketAddr, peer: SocketAddr) -> Option<OrigDst> {
        let records = self.maps.orig_dst.read().ok()?;
        records.get(&SockKey::new(local, peer), 0).ok()
    }
}

/// Closes with RST (SO_LINGER 0), so the application sees a refused connection, not an EOF.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
