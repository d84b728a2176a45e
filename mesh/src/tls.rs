//! rustls configurations for mesh mTLS: TLS 1.3 only, ALPN `h2`, SPIFFE identities checked.
//!
//! Both sides present an X.509 SVID (leaf with one URI SAN, then its intermediate) and both
//! chains must validate to the mesh root. The client also checks that the server is the
//! destination it meant to reach; the server checks the caller's trust domain and hands the
//! caller's [`SpiffeId`] to whoever serves the connection (see [`peer_identity`]).
//!
//! Server names carry no meaning here: the client sends [`sni_for`] the destination identity,
//! an opaque DNS name the server maps back to the local certificate it should present
//! ([`ServerCerts`]).

mod sni;
#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;
mod verify;

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, CommonState, RootCertStore, ServerConfig, SignatureScheme};

use crate::identity::SpiffeId;

pub use sni::{sni_for, ServerCerts};
pub use verify::{
    describe_handshake_error, mesh_rejection, rustls_error, spiffe_id_of, IdentityMismatch,
    SanError, TrustDomainMismatch,
};

/// ALPN protocol of HBONE: HTTP/2 only.
pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("mesh root certificate {index} is not a usable trust anchor")]
    BadTrustAnchor {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("no mesh root certificate given: every peer would be refused")]
    NoTrustAnchor,
    #[error("building the mTLS configuration")]
    Config(#[source] rustls::Error),
    #[error("the peer presented no certificate (is it speaking mTLS to the mesh port?)")]
    NoPeerCertificate,
    #[error("peer certificate {0}")]
    PeerCertificate(#[source] SanError),
}

/// The crypto provider every mesh connection uses: ring, TLS 1.3 suites only, AES-128-GCM
/// preferred.
///
/// The client's order decides. AES-128-GCM runs 10 AES rounds to AES-256's 14, so bulk
/// tunnels spend less CPU per byte on either end; AES-256-GCM and ChaCha20-Poly1305 stay
/// accepted from peers that prefer them.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| suite.tls13().is_some());
    let preferred = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != preferred);
    Arc::new(provider)
}

/// The mesh root certificates (DER) as a trust anchor store.
pub fn roots_from_der(roots: &[CertificateDer<'_>]) -> Result<Arc<RootCertStore>, TlsError> {
    if roots.is_empty() {
        return Err(TlsError::NoTrustAnchor);
    }
    let mut store = RootCertStore::empty();
    for (index, root) in roots.iter().enumerate() {
        store
            .add(root.clone().into_owned())
            .map_err(|source| TlsError::BadTrustAnchor { index, source })?;
    }
    Ok(Arc::new(store))
}

/// Client side of one mesh connection: presents `own` (the source workload's SVID), accepts
/// only a server chained to `roots` whose URI SAN is `expected_server`.
///
/// Connect with server name [`sni_for`]`(&expected_server)`.
pub fn client_config(
    own: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    expected_server: SpiffeId,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = verify::ServerIdentityVerifier::new(roots, expected_server, provider.clone());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(OwnCert(own)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // Session resumption would skip the identity check on later connections.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Server side of the mesh port: requires a client SVID chained to `roots` in `trust_domain`,
/// presents the local identity the client named by SNI (looked up in `certs`: a
/// [`ServerCerts`], or the agent's own resolver over its certificate store).
pub fn server_config(
    certs: Arc<dyn rustls::server::ResolvesServerCert>,
    roots: Arc<RootCertStore>,
    trust_domain: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        verify::ClientIdentityVerifier::new(roots, trust_domain.to_string(), provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No tickets or session cache: each connection proves its identity afresh.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The SPIFFE ID the peer of an established connection proved (its leaf's URI SAN).
///
/// Works on either side: pass a `ServerConnection` or `ClientConnection` (`tokio_rustls`
/// streams expose theirs as `get_ref().1`).
pub fn peer_identity(conn: &CommonState) -> Result<SpiffeId, TlsError> {
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    spiffe_id_of(leaf).map_err(TlsError::PeerCertificate)
}

/// The client always presents the one SVID it was built with.
#[derive(Debug)]
struct OwnCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
