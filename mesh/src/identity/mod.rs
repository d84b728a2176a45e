//! Workload identities: SPIFFE IDs, X.509 SVIDs, and the CA protocol that issues them.
//!
//! The CA ([`Ca`], served by [`serve`]) signs CSRs from node agents, each authenticated by
//! its node certificate or, on a cluster, its service-account token ([`KubeAuth`]), and
//! allowed only the identities of its own pods ([`authorize`]); other workloads (waypoints)
//! may obtain their own identity by token ([`authorize_own`]). The
//! agent generates keys locally ([`CaClient`]) and keeps SVIDs fresh in a [`CertStore`]
//! with a [`CertRotator`].

mod authz;
mod ca;
mod client;
mod node;
mod rotator;
mod server;
mod spiffe;
mod store;
mod svid;
mod token;

#[cfg(test)]
mod tests;

/// The generated `ambit.ca.v1` gRPC code (proto/ca.proto).
pub mod proto {
    #![allow(clippy::all, reason = "generated code")]
    #![allow(
        clippy::allow_attributes_without_reason,
        reason = "generated code carries its own allows"
    )]
    tonic::include_proto!("ambit.ca.v1");
}

pub use authz::{authorize, authorize_own, authorize_scheduled, Refusal, Scheduled};
pub use ca::{
    Ca, CaError, SignedChain, CA_SERVER_NAME, DEFAULT_TTL, INTERMEDIATE_CERT, INTERMEDIATE_KEY,
    MAX_TTL, NODE_CERT_TTL, ROOT_CERT, ROOT_KEY,
};
pub use client::{
    client_config, load_roots, load_trust_bundle, token_client_config, CaClient, CaClientError,
    NODE_CERT, NODE_KEY, TRUST_BUNDLE,
};
pub use node::{NodeId, NodeIdError};
pub use rotator::{Backoff, CertRotator, CertificateSource};
pub use server::{
    serve, server_config, CaMetrics, CaPeer, CaService, ClientAuth, NodeConn, ServeError, CA_PORT,
};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use store::CertStore;
pub(crate) use svid::uri_sans;
pub use svid::{LeafInfo, PendingSvid, Svid, SvidError};
pub use token::{KubeAuth, TokenError, TokenOwner, TOKEN_AUDIENCE};
