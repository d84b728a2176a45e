//! The waypoint behind HBONE: its mTLS front end on port 15008 and its connector to endpoints.
//!
//! Callers (source node agents) open `CONNECT <service-vip>:<port>` streams to the waypoint;
//! [`Front`] resolves each to the engine's [`crate::Destination`] through the mesh model and
//! hands the stream to [`crate::Waypoint::serve`]. Backends are reached by [`HboneConnector`]:
//! a `CONNECT <pod-ip>:<port>` stream to the endpoint's node agent, presenting the waypoint's
//! own SVID ([`WaypointIdentity`]) and naming the original caller in `forwarded`/`baggage`.
//!
//! Both directions reuse `ambit_mesh::hbone` (server, pool) and `ambit_mesh::tls` (configs,
//! SPIFFE checks), so the waypoint checks peers exactly as node agents do.

mod connector;
mod front;
mod identity;
pub mod metrics;
mod resolve;
#[cfg(test)]
mod tests;

pub use connector::HboneConnector;
pub use front::{server, Front};
pub use identity::{read_svid, watch_files, IdentityError, WaypointIdentity, SVID_CERT, SVID_KEY};
pub use resolve::{destination, engine_config, hop, services, Hop, Unresolved};
