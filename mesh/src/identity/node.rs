//! Node identities: what a node agent proves to the CA, `spiffe://<td>/ambit/node/<node>`.
//!
//! In the sandbox the CA issues node certificates (`ambit-controller issue-node-cert`); in
//! Kubernetes the agent will instead present a projected service-account token, which the CA
//! checks with a TokenReview to learn the node name. Either way the node name comes from a
//! credential, never from a field of the signing request.

use std::fmt;

use rustls::pki_types::CertificateDer;

use super::svid::{single_uri_san, SvidError};

#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("{0:?} is not a node identity (expected spiffe://<trust-domain>/ambit/node/<node>)")]
    Shape(String),
    #[error("the client certificate is unusable: {0}")]
    Certificate(#[from] SvidError),
}

/// A node agent's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    trust_domain: String,
    name: String,
}

impl NodeId {
    pub fn new(trust_domain: &str, name: &str) -> Result<Self, NodeIdError> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !ok(trust_domain) || !ok(name) {
            return Err(NodeIdError::Shape(format!(
                "spiffe://{trust_domain}/ambit/node/{name}"
            )));
        }
        Ok(NodeId {
            trust_domain: trust_domain.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `spiffe://<td>/ambit/node/<node>`.
    pub fn parse(uri: &str) -> Result<Self, NodeIdError> {
        let shape = || NodeIdError::Shape(uri.to_string());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(shape)?;
        let (td, name) = rest.split_once("/ambit/node/").ok_or_else(shape)?;
        NodeId::new(td, name).map_err(|_| shape())
    }

    /// The node identity of a client certificate (its single URI SAN).
    pub fn from_cert(cert: &CertificateDer<'_>) -> Result<Self, NodeIdError> {
        NodeId::parse(&single_uri_san(cert)?)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/ambit/node/{}", self.trust_domain, self.name)
    }
}
