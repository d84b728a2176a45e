//! Server names for identities: how a client tells the server which local workload it wants.
//!
//! A SPIFFE ID is no DNS name (too long, `/` and `:`), so the client sends a digest of it and
//! the server looks the digest up among the identities it holds certificates for.
//! # Invariants
//! - `sni_for` is a pure function of the SPIFFE ID string: both sides derive the same name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{DnsName, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SupportedCipherSuite;

use crate::identity::SpiffeId;

/// DNS suffix of identity server names.
pub const SNI_SUFFIX: &str = ".id.ambit";

/// The server name a client sends to reach `id`: the first 128 bits of SHA-256 of the SPIFFE
/// ID, in lowercase hex, then [`SNI_SUFFIX`]; e.g. `3f2a…9c.id.ambit` (41 characters).
pub fn sni_for(id: &SpiffeId) -> ServerName<'static> {
    let digest = sha256(id.to_string().as_bytes());
    let hex: String = digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    match DnsName::try_from(format!("{hex}{SNI_SUFFIX}")) {
        Ok(name) => ServerName::DnsName(name),
        // 32 hex digits and a fixed suffix always form a DNS name.
        Err(_) => unreachable!("hex digest with {SNI_SUFFIX} is a DNS name"),
    }
}

/// SHA-256 through rustls' ring provider (the TLS 1.3 suite hash), so no extra dependency.
fn sha256(data: &[u8]) -> Vec<u8> {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        SupportedCipherSuite::Tls13(suite) => {
            suite.common.hash_provider.hash(data).as_ref().to_vec()
        }
        #[allow(
            unreachable_patterns,
            reason = "TLS 1.2 suites exist only with rustls' tls12 feature"
        )]
        _ => unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite"),
    }
}

/// The certificates of this node's workloads, by the server name a client asks for.
///
/// The node agent inserts each local workload's SVID (again after each renewal; new handshakes
/// then use the new certificate, established connections are untouched) and removes it when the
/// workload leaves.
#[derive(Default)]
pub struct ServerCerts {
    by_sni: RwLock<HashMap<String, (SpiffeId, Arc<CertifiedKey>)>>,
}

impl ServerCerts {
    pub fn new() -> Self {
        ServerCerts::default()
    }

    /// Presents `key` to clients asking for `id` (replaces a previous certificate of `id`).
    pub fn insert(&self, id: SpiffeId, key: Arc<CertifiedKey>) {
        let sni = sni_for(&id).to_str().into_owned();
        self.write().insert(sni, (id, key));
    }

    pub fn remove(&self, id: &SpiffeId) {
        let sni = sni_for(id).to_str().into_owned();
        self.write().remove(&sni);
    }

    /// The identity and certificate a client asking for server name `sni` gets.
    pub fn by_sni(&self, sni: &str) -> Option<(SpiffeId, Arc<CertifiedKey>)> {
        let map = match self.by_sni.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(&sni.to_ascii_lowercase()).cloned()
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, (SpiffeId, Arc<CertifiedKey>)>> {
        match self.by_sni.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = match self.by_sni.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        f.debug_list()
            .entries(map.values().map(|(id, _)| id.to_string()))
            .finish()
    }
}

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = hello.server_name() else {
            tracing::debug!("mesh TLS client sent no server name; no certificate to present");
            return None;
        };
        let found = self.by_sni(sni);
        if found.is_none() {
            tracing::debug!(
                sni,
                "mesh TLS client asked for an identity this node does not hold"
            );
        }
        found.map(|(_, key)| key)
    }
}
