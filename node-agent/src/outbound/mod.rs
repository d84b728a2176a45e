//! The outbound listener (15001): accepts redirected connections, finds each one's original
//! destination and origin in the kernel's records, and relays it there.
//!
//! A connection without a kernel record is refused with a reset: 15001 is not an open relay.
//! The origin is the netns cookie the kernel recorded at connect time, never the source IP.
//!
//! Plain TCP for now; the mTLS tunnel between agents replaces `relay` for mesh destinations.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ambit_common::{OrigDst, SockKey};
use ambit_mesh::model::Model;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod balance;
pub mod plan;

pub use balance::OpenConnections;
use plan::OutboundPlan;

use crate::kernel_maps::KernelMaps;
use crate::relay;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffer per direction for fast-path connections (2 × 32 KiB per connection).
const RELAY_BUFFER: usize = 32 * 1024;

/// Counters of the outbound proxy, exported on the metrics port.
#[derive(Debug, Default)]
pub struct OutboundStats {
    pub accepted: AtomicU64,
    pub relayed: AtomicU64,
    pub refused_no_record: AtomicU64,
    /// A service VIP with no endpoints or no such port.
    pub refused_no_route: AtomicU64,
    pub upstream_failed: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    pub active: AtomicU64,
}

pub struct Outbound {
    pub node: String,
    pub maps: Arc<KernelMaps>,
    pub model: watch::Receiver<Arc<Model>>,
    pub fastpath: bool,
    pub stats: Arc<OutboundStats>,
    /// The agent's address as pods see it; upstream connections leave from it.
    pub source: Option<std::net::IpAddr>,
    /// Open connections per endpoint, for load balancing.
    pub balancer: Arc<OpenConnections>,
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
                        OutboundError::NoRecord { .. } | OutboundError::NoRoute { .. } => {
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
            .maps
            .workload_of(orig.netns_cookie)
            .unwrap_or_else(|| format!("netns:{}", orig.netns_cookie));
        let dst = match self.next_hop(&origin, dialled) {
            Ok(dst) => dst,
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
        let _open = self.balancer.opened(dst);
        let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(dst)).await {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(source)) => {
                self.stats.upstream_failed.fetch_add(1, Relaxed);
                reset(client);
                return Err(OutboundError::Upstream {
                    dst,
                    origin,
                    source,
                });
            }
            Err(_) => {
                self.stats.upstream_failed.fetch_add(1, Relaxed);
                reset(client);
                return Err(OutboundError::UpstreamTimeout { dst, origin });
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let on_fastpath = self.fastpath;
        if self.fastpath && self.is_local_pod(dst) {
            self.join_fastpath(&upstream);
        }
        tracing::debug!(%origin, %dst, client = %peer, "relaying");
        self.stats.relayed.fetch_add(1, Relaxed);
        let relayed = if on_fastpath {
            // Bytes of fast-path sockets wait in the sockmap's queue, which splice cannot read.
            let (mut client, mut upstream) = (client, upstream);
            tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                RELAY_BUFFER,
                RELAY_BUFFER,
            )
            .await
        } else {
            relay::splice_bidirectional(&client, &upstream).await
        };
        match relayed {
            Ok((sent, received)) => {
                self.stats.sent_bytes.fetch_add(sent, Relaxed);
                self.stats.received_bytes.fetch_add(received, Relaxed);
                tracing::debug!(%origin, %dst, sent, received, "connection closed");
            }
            Err(e) => tracing::debug!(%origin, %dst, error = %e, "connection ended with an error"),
        }
        Ok(())
    }

    /// Connects from the agent's own address when the families match. Without the bind, a
    /// connection to a pod on this node would leave from the pod gateway address, and the
    /// pod would see (and the kernel programs would not recognise) a different agent.
    async fn connect(&self, dst: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if dst.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(source) = self.source.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        socket.connect(dst).await
    }

    /// Where to connect for a connection `origin` (`namespace/name`) made to `dialled`.
    ///
    /// TODO(issue 3, mTLS tunnel): an HBONE hop is relayed in plaintext to its endpoint until
    /// the tunnel carries it; service VIPs already resolve to an endpoint here.
    fn next_hop(&self, origin: &str, dialled: SocketAddr) -> Result<SocketAddr, plan::PlanError> {
        let Some(source) = origin.split_once('/') else {
            // Enrolled netns whose workload name is unknown: go where the application asked.
            return Ok(dialled);
        };
        let model = self.model.borrow().clone();
        match plan::plan(&model, source, dialled, &*self.balancer) {
            Ok(OutboundPlan::Hbone(hop)) => Ok(hop.actual_destination),
            Ok(OutboundPlan::Passthrough { destination, .. }) => Ok(destination),
            // Un-enrolled between connect and accept, or deleted: go where it asked.
            Err(plan::PlanError::UnknownSource { .. }) => Ok(dialled),
            Err(e) => Err(e),
        }
    }

    fn lookup(&self, local: SocketAddr, peer: SocketAddr) -> Option<OrigDst> {
        let records = self.maps.orig_dst.read().ok()?;
        records.get(&SockKey::new(local, peer), 0).ok()
    }

    fn is_local_pod(&self, dst: SocketAddr) -> bool {
        let model = self.model.borrow();
        model
            .workload_by_ip(dst.ip())
            .is_some_and(|w| w.node == self.node)
    }

    /// Joins our end of a same-node upstream to the fast path. The kernel joins the pod's end
    /// when it accepts (its peer is the agent's address).
    fn join_fastpath(&self, upstream: &TcpStream) {
        let (Ok(local), Ok(remote)) = (upstream.local_addr(), upstream.peer_addr()) else {
            return;
        };
        let key = SockKey::new(local, remote);
        if let Ok(mut map) = self.maps.fastpath.lock() {
            if let Err(e) = map.insert(key, upstream.as_raw_fd(), 0) {
                tracing::debug!(error = %e, "upstream socket could not join the fast path");
            }
        }
    }
}

/// Closes with RST (SO_LINGER 0), so the application sees a refused connection, not an EOF.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
