//! Certificate checks of both sides: webpki chain validation plus the SPIFFE URI SAN.
//!
//! Chains are validated by rustls' webpki functions; this module only adds what SPIFFE needs
//! on top (who the leaf names) and turns failures into messages that name both identities.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};

use super::TlsError;
use crate::identity::{SpiffeId, SpiffeIdError};

/// Why a certificate does not name one workload.
#[derive(Debug, thiserror::Error)]
pub enum SanError {
    #[error("is not valid X.509 DER")]
    Der,
    #[error("has no URI SAN (an SVID names its workload as spiffe://<td>/ns/<ns>/sa/<sa>)")]
    NoUri,
    #[error("has {0} URI SANs; an SVID has exactly one")]
    ManyUris(usize),
    #[error("has a URI SAN that is not a workload identity")]
    NotSpiffe(#[source] SpiffeIdError),
}

/// The server presented a valid certificate, but for another workload.
#[derive(Debug, thiserror::Error)]
#[error("server presented {presented}, expected {expected}")]
pub struct IdentityMismatch {
    pub expected: SpiffeId,
    pub presented: SpiffeId,
}

/// The client's certificate chains to the root but belongs to another trust domain.
#[derive(Debug, thiserror::Error)]
#[error("client presented {presented}, outside trust domain {expected}")]
pub struct TrustDomainMismatch {
    pub expected: String,
    pub presented: SpiffeId,
}

/// The workload identity an SVID names: its one URI SAN.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, SanError> {
    let uris = crate::identity::uri_sans(cert).map_err(|_| SanError::Der)?;
    match uris.as_slice() {
        [] => Err(SanError::NoUri),
        [uri] => uri.parse().map_err(SanError::NotSpiffe),
        many => Err(SanError::ManyUris(many.len())),
    }
}

fn bad_san(err: SanError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// Client side: the chain must reach the mesh root and the leaf must name `expected`.
///
/// The DNS name the client sent (an opaque [`super::sni_for`] value) is not checked: SVIDs
/// carry no DNS names, the URI SAN is what matters.
#[derive(Debug)]
pub(super) struct ServerIdentityVerifier {
    roots: Arc<RootCertStore>,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl ServerIdentityVerifier {
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        expected: SpiffeId,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        ServerIdentityVerifier {
            roots,
            expected,
            provider,
        }
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let presented = spiffe_id_of(end_entity).map_err(bad_san)?;
        if presented != self.expected {
            let mismatch = IdentityMismatch {
                expected: self.expected.clone(),
                presented,
            };
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server side: rustls' webpki client verifier (certificate required), then the trust domain.
#[derive(Debug)]
pub(super) struct ClientIdentityVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientIdentityVerifier {
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        trust_domain: String,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let webpki = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|err| TlsError::Config(Error::General(err.to_string())))?;
        Ok(ClientIdentityVerifier {
            webpki,
            trust_domain,
        })
    }
}

impl ClientCertVerifier for ClientIdentityVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let presented = spiffe_id_of(end_entity).map_err(bad_san)?;
        if presented.trust_domain() != self.trust_domain {
            let mismatch = TrustDomainMismatch {
                expected: self.trust_domain.clone(),
                presented,
            };
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The rustls error inside a failed `tokio_rustls` handshake, if that is what failed.
pub fn rustls_error(err: &std::io::Error) -> Option<&Error> {
    err.get_ref()?.downcast_ref::<Error>()
}

/// An identity check of ours that failed the handshake (e.g. [`IdentityMismatch`]).
pub fn mesh_rejection<E: std::error::Error + 'static>(err: &std::io::Error) -> Option<&E> {
    match rustls_error(err)? {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<E>()
        }
        _ => None,
    }
}

/// A failed handshake in words for an operator: our identity checks speak for themselves,
/// rustls errors are shown as rustls renders them.
pub fn describe_handshake_error(err: &std::io::Error) -> String {
    match rustls_error(err) {
        Some(Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) => {
            inner.to_string()
        }
        Some(Error::InvalidCertificate(reason)) => format!("bad certificate: {reason:?}"),
        Some(other) => other.to_string(),
        None => err.to_string(),
    }
}
