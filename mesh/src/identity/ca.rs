//! The mesh CA's signing logic: a root, an intermediate that signs, and the leaves it issues.
//!
//! Kept apart from gRPC so that what gets signed, and what gets refused, is unit-testable.
//! Node authorization (who may ask for what) is [`super::authz`]; this module only checks that
//! a CSR asks for the identity it claims.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::node::NodeId;
use super::SpiffeId;

/// Leaf lifetime when the request names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest leaf lifetime the CA grants, whatever is asked.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Node certificates (sandbox) live a year: they stand in for a Kubernetes token.
pub const NODE_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The DNS name in the CA's serving certificate, which node agents check.
pub const CA_SERVER_NAME: &str = "ambit-ca";

const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const INTERMEDIATE_TTL: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Leaves start a little in the past so that peers with a slow clock accept them.
const MAX_BACKDATE: Duration = Duration::from_secs(300);

/// The files of a CA directory; keys are written 0600.
pub const ROOT_CERT: &str = "root.pem";
pub const ROOT_KEY: &str = "root-key.pem";
pub const INTERMEDIATE_CERT: &str = "intermediate.pem";
pub const INTERMEDIATE_KEY: &str = "intermediate-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a CA")]
    Exists { path: PathBuf },
    #[error("{path} holds no usable {what}: {reason}")]
    BadFile {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("the CSR is not a valid, self-signed PKCS#10 request: {0}")]
    InvalidCsr(rcgen::Error),
    #[error("the CSR's key is not ECDSA P-256")]
    CsrKeyAlgorithm,
    #[error("the CSR must name exactly the identity asked for ({requested}) as its only SAN, it names {found:?}")]
    CsrIdentity {
        requested: String,
        found: Vec<String>,
    },
    #[error("{requested} is outside this CA's trust domain {ours}")]
    TrustDomain { requested: String, ours: String },
    #[error("could not sign: {0}")]
    Sign(#[from] rcgen::Error),
}

impl CaError {
    /// Whether the caller asked for something wrong (as opposed to the CA failing).
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            CaError::InvalidCsr(_)
                | CaError::CsrKeyAlgorithm
                | CaError::CsrIdentity { .. }
                | CaError::TrustDomain { .. }
        )
    }
}

/// The mesh CA: a trust domain, its root (the trust bundle) and the intermediate that signs.
pub struct Ca {
    trust_domain: String,
    root: CertificateDer<'static>,
    root_pem: String,
    intermediate: CertificateDer<'static>,
    intermediate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Generates a long-lived root and an intermediate signed by it into `dir` (the sandbox's
    /// CA; in a cluster they come from a Secret). Refuses to overwrite an existing CA.
    pub fn init(dir: &Path) -> Result<(), CaError> {
        for name in [ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY] {
            let path = dir.join(name);
            if path.exists() {
                return Err(CaError::Exists { path });
            }
        }
        std::fs::create_dir_all(dir).map_err(|source| CaError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let (root_pem, root_key, root_issuer) = ca_cert("Ambit mesh root", ROOT_TTL, None)?;
        let (int_pem, int_key, _) = ca_cert(
            "Ambit mesh intermediate",
            INTERMEDIATE_TTL,
            Some(&root_issuer),
        )?;
        write(&dir.join(ROOT_CERT), &root_pem, 0o644)?;
        write(&dir.join(ROOT_KEY), &root_key, 0o600)?;
        write(&dir.join(INTERMEDIATE_CERT), &int_pem, 0o644)?;
        write(&dir.join(INTERMEDIATE_KEY), &int_key, 0o600)?;
        Ok(())
    }

    /// Loads the root and intermediate written by [`Ca::init`] (or provisioned alike).
    pub fn load(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let (root, root_pem) = read_cert(&dir.join(ROOT_CERT))?;
        let int_path = dir.join(INTERMEDIATE_CERT);
        let (intermediate, intermediate_pem) = read_cert(&int_path)?;
        let key_path = dir.join(INTERMEDIATE_KEY);
        let key_pem = read(&key_path)?;
        let bad = |path: &Path, what, reason: String| CaError::BadFile {
            path: path.to_path_buf(),
            what,
            reason,
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad(&key_path, "private key", e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&intermediate, key)
            .map_err(|e| bad(&int_path, "CA certificate", e.to_string()))?;
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            root,
            root_pem,
            intermediate,
            intermediate_pem,
            issuer,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust bundle: the root every mesh chain verifies to.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Signs a workload CSR for `requested`: the CSR's only SAN must be that URI, and its key
    /// P-256. The leaf gets a lifetime of `ttl` (default 24 h, at most 7 days), the URI SAN
    /// only, digitalSignature, and serverAuth + clientAuth. Returns `[leaf, intermediate]`.
    pub fn sign(
        &self,
        csr_pem: &str,
        requested: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<SignedChain, CaError> {
        if requested.trust_domain() != self.trust_domain {
            return Err(CaError::TrustDomain {
                requested: requested.to_string(),
                ours: self.trust_domain.clone(),
            });
        }
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::InvalidCsr)?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::CsrKeyAlgorithm);
        }
        let wanted = requested.to_string();
        let found: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(uri) => uri.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if found != [wanted.as_str()] {
            return Err(CaError::CsrIdentity {
                requested: wanted,
                found,
            });
        }
        let ttl = ttl.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
        // Only the CSR's key is used: every other field of the leaf is the CA's choice.
        let mut params = leaf_params(ttl)?;
        params.subject_alt_names = vec![SanType::URI(wanted.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(SignedChain {
            pem: self.chain_pem(&leaf),
            der: vec![leaf.der().clone(), self.intermediate.clone()],
        })
    }

    /// Issues a node agent's client certificate (URI SAN `spiffe://<td>/ambit/node/<node>`,
    /// clientAuth), key generated here: returns `(chain_pem, key_pem)`.
    pub fn issue_node_cert(&self, node: &NodeId) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(NODE_CERT_TTL)?;
        params.subject_alt_names = vec![SanType::URI(node.uri().try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((self.chain_pem(&cert), key.serialize_pem()))
    }

    /// Issues the CA's own serving certificate (DNS SAN [`CA_SERVER_NAME`], serverAuth):
    /// returns `(chain_pem, key_pem)`. Made fresh at each start; its key stays in memory.
    pub fn issue_server_cert(&self) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(DEFAULT_TTL * 30)?;
        params.subject_alt_names = vec![SanType::DnsName(CA_SERVER_NAME.try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((self.chain_pem(&cert), key.serialize_pem()))
    }

    /// `leaf` then the intermediate, PEM.
    fn chain_pem(&self, leaf: &rcgen::Certificate) -> String {
        let mut pem = leaf.pem();
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem + &self.intermediate_pem
    }
}

/// A signed chain, leaf first, as DER and as PEM text.
#[derive(Debug, Clone)]
pub struct SignedChain {
    pub der: Vec<CertificateDer<'static>>,
    pub pem: String,
}

/// A leaf's common parameters: no subject, a random serial, valid from shortly before now.
fn leaf_params(ttl: Duration) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let now = SystemTime::now();
    params.not_before = (now - (ttl / 10).min(MAX_BACKDATE)).into();
    params.not_after = (now + ttl).into();
    Ok(params)
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Sign(rcgen::Error::RingUnspecified))?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A CA certificate (root when `issuer` is `None`): `(cert_pem, key_pem, issuer)`.
fn ca_cert(
    name: &str,
    ttl: Duration,
    issuer: Option<&Issuer<'static, KeyPair>>,
) -> Result<(String, String, Issuer<'static, KeyPair>), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Ambit");
    params.distinguished_name.push(DnType::CommonName, name);
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(match issuer {
        None => BasicConstraints::Unconstrained,
        Some(_) => BasicConstraints::Constrained(0),
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = issuer.is_some();
    let now = SystemTime::now();
    params.not_before = (now - MAX_BACKDATE).into();
    params.not_after = (now + ttl).into();
    let cert = match issuer {
        None => params.self_signed(&key)?,
        Some(issuer) => params.signed_by(&key, issuer)?,
    };
    let key_pem = key.serialize_pem();
    let pem = cert.pem();
    Ok((pem, key_pem, Issuer::new(params, key)))
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The first certificate of a PEM file, and the file's text.
fn read_cert(path: &Path) -> Result<(CertificateDer<'static>, String), CaError> {
    let text = read(path)?;
    let der = CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| CaError::BadFile {
        path: path.to_path_buf(),
        what: "certificate",
        reason: e.to_string(),
    })?;
    Ok((der, text))
}

/// Writes `contents` to `path`, created with `mode` (keys 0600 before any byte is written).
pub fn write(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)
}
