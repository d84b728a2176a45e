//! The node agent's SVIDs, by identity: what TLS handshakes present for local workloads.
//!
//! Read on every handshake, so a read is a short read-lock and an `Arc` clone. Replacing an
//! SVID only changes what *new* handshakes present: live connections keep the session they
//! negotiated, and a peer never re-checks a certificate after the handshake, so renewal
//! cannot break them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::svid::Svid;
use super::SpiffeId;

/// The SVIDs the agent holds, shared between the rotator (writer) and TLS (readers).
#[derive(Debug, Default)]
pub struct CertStore {
    svids: RwLock<HashMap<SpiffeId, Arc<Svid>>>,
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The current SVID for `id`, if one has been issued.
    pub fn get(&self, id: &SpiffeId) -> Option<Arc<Svid>> {
        self.read().get(id).cloned()
    }

    /// The identities held.
    pub fn identities(&self) -> Vec<SpiffeId> {
        self.read().keys().cloned().collect()
    }

    /// Installs `svid`, replacing any previous one for its identity.
    pub fn insert(&self, svid: Svid) {
        let svid = Arc::new(svid);
        self.write().insert(svid.id.clone(), svid);
    }

    pub fn remove(&self, id: &SpiffeId) -> Option<Arc<Svid>> {
        self.write().remove(id)
    }

    // A writer panicking mid-insert leaves the map consistent (one insert or remove), so a
    // poisoned lock is safe to keep using.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SpiffeId, Arc<Svid>>> {
        self.svids.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SpiffeId, Arc<Svid>>> {
        self.svids.write().unwrap_or_else(|e| e.into_inner())
    }
}
