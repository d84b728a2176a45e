//! Relaying a connection through the HBONE tunnel: one CONNECT stream on a pooled mTLS
//! HTTP/2 connection to the destination node's agent, presenting the source's SVID.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use ambit_mesh::hbone::{Pool, PoolKey};
use tokio::net::TcpStream;

use super::plan::HboneHop;
use super::{reset, Outbound, OutboundError};
use crate::identity::Identities;

/// How long a connection from a just-enrolled workload waits for its first SVID.
const SVID_WAIT: Duration = Duration::from_secs(5);

/// The agent's side of the tunnel.
pub struct Tunnel {
    pub pool: Pool,
    pub identities: Arc<Identities>,
}

impl Outbound {
    pub(super) async fn relay_tunnel(
        &self,
        tunnel: &Tunnel,
        client: TcpStream,
        peer: SocketAddr,
        hop: HboneHop,
        origin: String,
    ) -> Result<(), OutboundError> {
        if !tunnel.identities.ready(&hop.source, SVID_WAIT).await {
            self.stats.upstream_failed.fetch_add(1, Relaxed);
            reset(client);
            return Err(OutboundError::NoCertificate {
                identity: hop.source.to_string(),
                origin,
            });
        }
        let key = PoolKey {
            source: hop.source.clone(),
            dst_node: hop.hbone_target,
            dst_identity: hop.destination_identity.clone(),
        };
        let dst = hop.actual_destination;
        let stream = match tunnel
            .pool
            .connect(key, dst, peer, baggage(&origin, &hop))
            .await
        {
            Ok(stream) => stream,
            Err(source) => {
                self.stats.upstream_failed.fetch_add(1, Relaxed);
                reset(client);
                return Err(OutboundError::Tunnel {
                    dst,
                    via: hop.hbone_target,
                    origin,
                    source,
                });
            }
        };
        let _ = client.set_nodelay(true);
        self.stats.relayed.fetch_add(1, Relaxed);
        self.stats.tunnelled.fetch_add(1, Relaxed);
        let relayed = stream.relay(client).await;
        self.count_closed(&origin, dst, relayed);
        Ok(())
    }
}

/// W3C baggage describing the source workload, as Istio's HBONE peers expect.
fn baggage(origin: &str, hop: &HboneHop) -> String {
    let (namespace, pod) = origin.split_once('/').unwrap_or(("", origin));
    let mut value = format!("k8s.namespace.name={namespace},k8s.pod.name={pod}");
    if let Some(service) = &hop.intended_service {
        value.push_str(&format!(",service.name={service}"));
    }
    value
}
