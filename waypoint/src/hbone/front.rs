//! The HBONE front end: each accepted `CONNECT <vip>:<port>` stream becomes a connection
//! served by the engine, addressed to the Service port it names.
//!
//! `connect` only resolves the destination; once the caller has its 200, `ambit_mesh::hbone`'s
//! server hands the upgraded stream itself to [`Served`], which runs [`Waypoint::serve`] on it
//! in the stream's own task: no pipe, no copy, no second task.

use std::io;
use std::sync::Arc;

use ambit_mesh::hbone::{
    ConnectRequest, CountedCaller, HboneServer, Inbound, Refusal, ServerSettings, TunnelStream,
    Upstream,
};
use ambit_mesh::model::Model;
use ambit_mesh::tls::TlsError;
use tokio::sync::watch;

use super::identity::WaypointIdentity;
use super::resolve;
use crate::model::{Caller, Destination};
use crate::Waypoint;

/// The waypoint's [`Inbound`]: resolve, then serve.
pub struct Front {
    pub waypoint: Arc<Waypoint>,
    pub model: watch::Receiver<Arc<Model>>,
    /// The namespace whose Services this waypoint serves.
    pub namespace: String,
}

impl Inbound for Front {
    type Upstream = Served;

    async fn connect(&self, request: ConnectRequest) -> Result<Served, Refusal> {
        let model = self.model.borrow().clone();
        let destination = resolve::destination(&model, &self.namespace, request.target)
            .map_err(|e| Refusal::BadTarget(e.to_string()))?;
        let caller = Caller {
            peer: request.peer,
            identity: Some(request.caller.to_string()),
            client: request.forwarded_for,
            baggage: request.baggage,
        };
        Ok(Served {
            waypoint: self.waypoint.clone(),
            destination,
            caller,
        })
    }
}

/// An accepted stream's destination and caller, served by the engine once the 200 is sent.
pub struct Served {
    waypoint: Arc<Waypoint>,
    destination: Destination,
    caller: Caller,
}

impl Upstream for Served {
    async fn deliver(self, stream: CountedCaller<TunnelStream>) -> io::Result<()> {
        self.waypoint
            .serve(stream, self.destination, self.caller)
            .await
            .map_err(io::Error::other)
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
