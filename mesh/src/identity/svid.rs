//! X.509 SVIDs: a workload's certificate chain and private key, and the CSR that asks for one.
//!
//! The key pair is generated where the SVID is used (the node agent) and only the CSR travels,
//! so private keys never leave the node.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::{SpiffeId, SpiffeIdError};

#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    #[error("could not generate a key pair or CSR for {id}: {source}")]
    Generate { id: String, source: rcgen::Error },
    #[error("the certificate chain is empty")]
    EmptyChain,
    #[error("the certificate chain is not valid PEM: {0}")]
    Pem(rustls::pki_types::pem::Error),
    #[error("the leaf certificate is not valid X.509: {0}")]
    Parse(String),
    #[error("the leaf certificate must have exactly one URI SAN, found {found}")]
    UriSanCount { found: usize },
    #[error("the leaf certificate's URI SAN is not a workload identity: {0}")]
    Identity(#[from] SpiffeIdError),
    #[error("the certificate is for {found}, not the {expected} asked for")]
    WrongIdentity { expected: String, found: String },
    #[error("rustls refused the private key for {id}: {reason}")]
    Key { id: String, reason: String },
}

/// A workload's X.509 SVID: what a node agent presents in handshakes on the workload's behalf.
#[derive(Debug)]
pub struct Svid {
    pub id: SpiffeId,
    /// The leaf first, then the intermediate(s); never the root.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// A fresh P-256 key pair and a CSR whose only SAN is the URI of `id`, before the CA signs it.
pub struct PendingSvid {
    pub id: SpiffeId,
    pub csr_pem: String,
    key: KeyPair,
}

impl PendingSvid {
    pub fn generate(id: &SpiffeId) -> Result<Self, SvidError> {
        let fail = |source| SvidError::Generate {
            id: id.to_string(),
            source,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(fail)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = id.to_string().try_into().map_err(fail)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params.serialize_request(&key).map_err(fail)?;
        let csr_pem = csr.pem().map_err(fail)?;
        Ok(PendingSvid {
            id: id.clone(),
            csr_pem,
            key,
        })
    }

    /// Pairs the key with the chain the CA returned, checking that its leaf is for this identity.
    pub fn complete(self, chain_pem: &str) -> Result<Svid, SvidError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(SvidError::Pem)?;
        let leaf = chain.first().ok_or(SvidError::EmptyChain)?;
        let info = LeafInfo::parse(leaf)?;
        if info.id != self.id {
            return Err(SvidError::WrongIdentity {
                expected: self.id.to_string(),
                found: info.id.to_string(),
            });
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        Ok(Svid {
            id: self.id,
            chain,
            key,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }
}

impl Svid {
    /// When to ask for the next SVID: half-way through this one's lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime / 2
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    /// The chain and signing key as rustls wants them for `ResolvesServerCert` /
    /// `ResolvesClientCert` (ring provider).
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, SvidError> {
        let key =
            rustls::crypto::ring::sign::any_ecdsa_type(&self.key).map_err(|e| SvidError::Key {
                id: self.id.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }
}

/// What Ambit reads from a workload leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub id: SpiffeId,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl LeafInfo {
    /// Parses a leaf, requiring exactly one URI SAN, which must be a workload SPIFFE ID.
    pub fn parse(leaf: &CertificateDer<'_>) -> Result<Self, SvidError> {
        let uri = single_uri_san(leaf)?;
        let (not_before, not_after) = validity(leaf)?;
        Ok(LeafInfo {
            id: uri.parse()?,
            not_before,
            not_after,
        })
    }
}

/// The one URI SAN of a certificate (workload or node), as text.
pub fn single_uri_san(cert: &CertificateDer<'_>) -> Result<String, SvidError> {
    let uris = uri_sans(cert).map_err(SvidError::Parse)?;
    match <[String; 1]>::try_from(uris) {
        Ok([uri]) => Ok(uri),
        Err(uris) => Err(SvidError::UriSanCount { found: uris.len() }),
    }
}

/// Every URI SAN of a DER certificate, in order; the error is x509-parser's, as text. The one
/// place certificates' SANs are read: SVID checks here and TLS peer checks (`tls::verify`).
pub(crate) fn uri_sans(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| e.to_string())?;
    Ok(san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

/// A certificate's validity period.
pub fn validity(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), SvidError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| SvidError::Parse(e.to_string()))?;
    let validity = parsed.validity();
    Ok((
        unix_time(validity.not_before.timestamp()),
        unix_time(validity.not_after.timestamp()),
    ))
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}
