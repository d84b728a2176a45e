//! Relaying a connection straight to its destination: passthrough to addresses outside the
//! mesh (plaintext, as Istio ambient does), and mesh hops when no CA is configured.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;

use ambit_common::SockKey;
use tokio::net::TcpStream;

use super::{reset, Outbound, OutboundError, CONNECT_TIMEOUT};
use crate::relay;

/// Copy buffer per direction for fast-path connections (2 × 32 KiB per connection).
const RELAY_BUFFER: usize = 32 * 1024;

impl Outbound {
    /// `caller`: the client's address, to connect from (a same-node pod whose replies are
    /// steered back; see `return_path`).
    pub(super) async fn relay_direct(
        &self,
        client: TcpStream,
        dst: SocketAddr,
        origin: String,
        caller: Option<IpAddr>,
    ) -> Result<(), OutboundError> {
        let connecting = crate::dial::connect(caller, self.source, dst);
        let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
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
        if self.fastpath && self.is_local_pod(dst) {
            self.join_fastpath(&upstream);
        }
        self.stats.relayed.fetch_add(1, Relaxed);
        let relayed = if self.fastpath {
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
        self.count_closed(&origin, dst, relayed);
        Ok(())
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
        if let Ok(mut map) = self.maps.fastpath.lock() {
            if let Err(e) = map.insert(SockKey::new(local, remote), upstream.as_raw_fd(), 0) {
                tracing::debug!(error = %e, "upstream socket could not join the fast path");
            }
        }
    }
}
