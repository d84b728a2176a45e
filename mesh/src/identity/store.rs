//! The node agent's SVIDs, by identity: what TLS handshakes present for local workloads.
//!
//! Read on every handshake, so a read is a short read-lock and an `Arc` clone. Replacing an
//! SVID only changes what *new* handshakes present: live connections keep the session they
//! negotiated, and a peer never re-checks a certificate after the handshake, so renewal
//! cannot break them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

use super::svid::{Svid, SvidError};
use super::SpiffeId;

/// The SVIDs the agent holds, shared between the rotator (writer) and TLS (readers).
#[derive(Debug, Default)]
pub struct CertStore {
    svids: RwLock<HashMap<SpiffeId, Entry>>,
}

/// An SVID and its rustls form, made once at insertion rather than at each handshake.
#[derive(Debug, Clone)]
struct Entry {
    svid: Arc<Svid>,
    key: Arc<CertifiedKey>,
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The current SVID for `id`, if one has been issued.
    pub fn get(&self, id: &SpiffeId) -> Option<Arc<Svid>> {
        self.read().get(id).map(|e| e.svid.clone())
    }

    /// The current chain and signing key for `id`, as TLS presents them, e.g. for
    /// `hbone::CertSource`: `Arc::new(move |id| store.certified_key(id))`.
    pub fn certified_key(&self, id: &SpiffeId) -> Option<Arc<CertifiedKey>> {
        self.read().get(id).map(|e| e.key.clone())
    }

    /// The identities held.
    pub fn identities(&self) -> Vec<SpiffeId> {
        self.read().keys().cloned().collect()
    }

    /// Installs `svid`, replacing any previous one for its identity; refused (and the previous
    /// one kept) if rustls cannot use its key.
    pub fn insert(&self, svid: Svid) -> Result<(), SvidError> {
        let key = svid.certified_key()?;
        let svid = Arc::new(svid);
        self.write().insert(svid.id.clone(), Entry { svid, key });
        Ok(())
    }

    pub fn remove(&self, id: &SpiffeId) -> Option<Arc<Svid>> {
        self.write().remove(id).map(|e| e.svid)
    }

    // A writer panicking mid-insert leaves the map consistent (one insert or remove), so a
    // poisoned lock is safe to keep using.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SpiffeId, Entry>> {
        self.svids.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SpiffeId, Entry>> {
        self.svids.write().unwrap_or_else(|e| e.into_inner())
    }
}
