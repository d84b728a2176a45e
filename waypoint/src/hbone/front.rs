//! The HBONE front end: each accepted `CONNECT <vip>:<port>` stream becomes a connection
//! served by the engine, addressed to the Service port it names.
//!
//! The stream reaches [`Waypoint::serve`] through an in-memory pipe: `ambit_mesh::hbone`'s
//! server relays the upgraded stream to whatever [`Inbound::connect`] returns.

use std::sync::Arc;

use ambit_mesh::hbone::{ConnectRequest, HboneServer, Inbound, Refusal, ServerSettings};
use ambit_mesh::model::Model;
use ambit_mesh::tls::TlsError;
use tokio::io::DuplexStream;
use tokio::sync::watch;

use super::identity::WaypointIdentity;
use super::resolve;
use crate::model::Caller;
use crate::Waypoint;

/// Bytes buffered each way between the HBONE stream and the engine.
const PIPE_BUFFER: usize = 64 * 1024;

/// The waypoint's [`Inbound`]: resolve, then serve.
pub struct Front {
    pub waypoint: Arc<Waypoint>,
    pub model: watch::Receiver<Arc<Model>>,
    /// The namespace whose Services this waypoint serves.
    pub namespace: String,
}

impl Inbound for Front {
    type Upstream = DuplexStream;

    async fn connect(&self, request: ConnectRequest) -> Result<DuplexStream, Refusal> {
        let model = self.model.borrow().clone();
        let destination = resolve::destination(&model, &self.namespace, request.target)
            .map_err(|e| Refusal::BadTarget(e.to_string()))?;
        let caller = Caller {
            peer: request.peer,
            identity: Some(request.caller.to_string()),
            client: request.forwarded_for,
            baggage: request.baggage,
        };
        let (engine_side, tunnel_side) = tokio::io::duplex(PIPE_BUFFER);
        let waypoint = self.waypoint.clone();
        tokio::spawn(async move {
            if let Err(e) = waypoint.serve(engine_side, destination, caller).await {
                tracing::debug!(error = %e, "HBONE connection ended");
            }
        });
        Ok(tunnel_side)
    }
}

/// The HBONE server of the waypoint: mesh mTLS with `identity`, CONNECTs decided by `front`.
pub fn server(
    identity: &WaypointIdentity,
    front: Front,
    settings: ServerSettings,
) -> Result<HboneServer<Front>, TlsError> {
    Ok(HboneServer::new(identity.server_config()?, front, settings))
}
