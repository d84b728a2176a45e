//! The waypoint's own identity: its SVID (the SPIFFE ID of its service account) and the mesh
//! root, as the HBONE server presents and the connector proves them.
//!
//! The SVID is read from files in an identity directory ([`SVID_CERT`], [`SVID_KEY`], and the
//! mesh root in `root.pem`) and re-read when they change ([`watch_files`]); whoever renews it
//! writes each file whole (write a temporary file, then rename). A file that does not parse,
//! names another identity or has expired changes nothing: the previous SVID stays in use.
//! # Invariants
//! - only an SVID for [`WaypointIdentity::id`] is ever presented;
//! - a renewal changes what new handshakes present; established connections are untouched.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ambit_mesh::hbone::CertSource;
use ambit_mesh::identity::{LeafInfo, SpiffeId, Svid, SvidError};
use ambit_mesh::tls::{self, ServerCerts, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// The waypoint's certificate chain (leaf first, then the intermediate), PEM.
pub const SVID_CERT: &str = "svid.pem";
/// The private key of [`SVID_CERT`], PKCS#8 PEM.
pub const SVID_KEY: &str = "svid-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable {what}: {reason}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("the SVID in {path}")]
    Svid {
        path: PathBuf,
        #[source]
        source: SvidError,
    },
    #[error("the SVID is for {found}, but this waypoint is {expected}; check --namespace and --service-account")]
    WrongIdentity { expected: String, found: String },
    #[error("the SVID for {id} expired; is its renewal running?")]
    Expired { id: String },
    #[error(
        "the private key does not match the SVID's certificate (files replaced one at a time?)"
    )]
    KeyMismatch(#[source] rustls::Error),
}

/// The waypoint's SVID, shared by the HBONE server (presents it) and connector (proves it).
pub struct WaypointIdentity {
    id: SpiffeId,
    roots: Arc<RootCertStore>,
    server_certs: Arc<ServerCerts>,
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl WaypointIdentity {
    /// An identity without an SVID yet: `id` is the waypoint's, `roots` the mesh root.
    pub fn new(id: SpiffeId, roots: Arc<RootCertStore>) -> Arc<Self> {
        Arc::new(WaypointIdentity {
            id,
            roots,
            server_certs: Arc::new(ServerCerts::new()),
            current: RwLock::new(None),
        })
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    pub fn trust_domain(&self) -> &str {
        self.id.trust_domain()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Whether an SVID is installed (readiness).
    pub fn is_ready(&self) -> bool {
        self.certified_key().is_some()
    }

    /// The SVID new handshakes present.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs `svid` for new handshakes; refused if it is not for this waypoint, expired,
    /// or its key unusable (the previous SVID stays).
    pub fn install(&self, svid: &Svid) -> Result<(), IdentityError> {
        if svid.id != self.id {
            return Err(IdentityError::WrongIdentity {
                expected: self.id.to_string(),
                found: svid.id.to_string(),
            });
        }
        if svid.is_expired(SystemTime::now()) {
            return Err(IdentityError::Expired {
                id: svid.id.to_string(),
            });
        }
        let key = svid.certified_key().map_err(|source| IdentityError::Svid {
            path: PathBuf::new(),
            source,
        })?;
        key.keys_match().map_err(IdentityError::KeyMismatch)?;
        self.server_certs.insert(self.id.clone(), key.clone());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
        Ok(())
    }

    /// The HBONE server's TLS: requires a client SVID of the mesh's trust domain, presents
    /// this SVID to clients that ask for it by SNI ([`tls::sni_for`]), as node agents do.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        tls::server_config(
            self.server_certs.clone(),
            self.roots.clone(),
            self.trust_domain(),
        )
    }

    /// For `hbone::Pool`: this SVID, for this identity only.
    pub fn cert_source(self: &Arc<Self>) -> CertSource {
        let me = self.clone();
        Arc::new(move |id: &SpiffeId| {
            if *id == me.id {
                me.certified_key()
            } else {
                None
            }
        })
    }
}

impl std::fmt::Debug for WaypointIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaypointIdentity")
            .field("id", &self.id.to_string())
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Reads the SVID in `dir` ([`SVID_CERT`], [`SVID_KEY`]).
pub fn read_svid(dir: &Path) -> Result<Svid, IdentityError> {
    let cert_path = dir.join(SVID_CERT);
    let key_path = dir.join(SVID_KEY);
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (chain_pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            path: cert_path.clone(),
            what: "certificate chain",
            reason: e.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| IdentityError::Pem {
        path: cert_path.clone(),
        what: "certificate chain",
        reason: "no certificate".into(),
    })?;
    let info = LeafInfo::parse(leaf).map_err(|source| IdentityError::Svid {
        path: cert_path.clone(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::Pem {
        path: key_path,
        what: "private key",
        reason: e.to_string(),
    })?;
    Ok(Svid {
        id: info.id,
        chain,
        key,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

/// Installs the SVID in `dir` now if it is there, then whenever its files change (checked
/// every `interval`). A failed load is logged and retried at the next change; until one
/// succeeds the waypoint holds no SVID (not ready), afterwards the previous SVID stays.
pub fn watch_files(
    identity: Arc<WaypointIdentity>,
    dir: PathBuf,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let stamp = |dir: &Path| {
        [SVID_CERT, SVID_KEY].map(|name| {
            std::fs::metadata(dir.join(name))
                .and_then(|m| m.modified())
                .ok()
        })
    };
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = stamp(&dir);
            if last.as_ref() != Some(&now) {
                last = Some(now);
                match read_svid(&dir).and_then(|svid| identity.install(&svid)) {
                    Ok(()) => {
                        tracing::info!(id = %identity.id(), dir = %dir.display(), "waypoint SVID loaded")
                    }
                    Err(e) => tracing::warn!(
                        error = %error_chain(&e),
                        ready = identity.is_ready(),
                        "waypoint SVID not loaded; retried when its files change"
                    ),
                }
            }
            tokio::time::sleep(interval).await;
        }
    })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}
