//! Keeps the [`CertStore`] holding a fresh SVID for every identity the node needs.
//!
//! Missing identities are fetched at once, each SVID is renewed at half its lifetime, and a
//! failed request is retried with jittered exponential backoff while the current SVID stays in
//! place (an SVID is only ever replaced by a newer one). Identities no longer wanted are
//! dropped. Replacing an SVID only changes what new handshakes present; see [`CertStore`].

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::store::CertStore;
use super::svid::Svid;
use super::SpiffeId;

/// Where SVIDs come from: the CA over gRPC ([`super::CaClient`]), or an in-process CA in tests.
pub trait CertificateSource: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// A new SVID for `id`, with a key generated on this node.
    fn sign(&self, id: &SpiffeId) -> impl Future<Output = Result<Svid, Self::Error>> + Send;
}

/// Longest wait for one signing request before it counts as failed.
const SIGN_TIMEOUT: Duration = Duration::from_secs(15);

/// Retry delays after failed requests: `initial`, doubling up to `max`, each ±20 %.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        jitter(exp.min(self.max))
    }
}

/// `d` scaled by a random factor in [0.8, 1.2), so that nodes do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let permille = 800 + (random % 400) as u32;
    d * permille / 1000
}

/// The task that fills and renews a [`CertStore`].
pub struct CertRotator<S> {
    store: Arc<CertStore>,
    source: Arc<S>,
    wanted: watch::Receiver<BTreeSet<SpiffeId>>,
    backoff: Backoff,
}

/// When an identity is next due, and how many requests for it failed in a row.
struct Due {
    at: Instant,
    failures: u32,
}

impl<S: CertificateSource> CertRotator<S> {
    /// `wanted` holds the identities of the node's local workloads; the rotator stops when its
    /// sender is dropped.
    pub fn new(
        store: Arc<CertStore>,
        source: S,
        wanted: watch::Receiver<BTreeSet<SpiffeId>>,
    ) -> Self {
        CertRotator {
            store,
            source: Arc::new(source),
            wanted,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    pub async fn run(mut self) {
        let mut due: HashMap<SpiffeId, Due> = HashMap::new();
        loop {
            let wanted = self.wanted.borrow_and_update().clone();
            self.forget_unwanted(&wanted, &mut due);
            for id in &wanted {
                due.entry(id.clone()).or_insert(Due {
                    at: Instant::now(),
                    failures: 0,
                });
            }
            self.refresh_due(&mut due).await;
            let next = due.values().map(|d| d.at).min();
            tokio::select! {
                () = sleep_until(next) => {}
                changed = self.wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn forget_unwanted(&self, wanted: &BTreeSet<SpiffeId>, due: &mut HashMap<SpiffeId, Due>) {
        due.retain(|id, _| wanted.contains(id));
        for id in self.store.identities() {
            if !wanted.contains(&id) {
                self.store.remove(&id);
                tracing::info!(%id, "dropped the certificate of an identity no longer on this node");
            }
        }
    }

    /// Requests every identity that is due, concurrently, so that one slow request does not
    /// hold up the others, and settles each outcome.
    async fn refresh_due(&self, due: &mut HashMap<SpiffeId, Due>) {
        let now = Instant::now();
        let mut requests = JoinSet::new();
        let mut ids = HashMap::new();
        for (id, d) in due.iter() {
            if d.at <= now {
                let (source, owned) = (self.source.clone(), id.clone());
                let task = requests.spawn(async move {
                    tokio::time::timeout(SIGN_TIMEOUT, source.sign(&owned)).await
                });
                ids.insert(task.id(), id.clone());
            }
        }
        while let Some(joined) = requests.join_next_with_id().await {
            let (task, result) = match joined {
                Ok((task, result)) => (task, result.map_err(|_| None)),
                Err(e) => (e.id(), Err(Some(format!("the request task failed: {e}")))),
            };
            let Some(id) = ids.get(&task) else { continue };
            if let Some(d) = due.get_mut(id) {
                self.settle(id, d, result);
            }
        }
    }

    /// Installs a new SVID, or schedules a retry and keeps the current one. `Err(None)` is a
    /// timeout, `Err(Some(reason))` a failed task.
    fn settle(
        &self,
        id: &SpiffeId,
        due: &mut Due,
        result: Result<Result<Svid, S::Error>, Option<String>>,
    ) {
        let error = match result {
            Ok(Ok(svid)) => {
                let (renew_at, not_after) = (svid.renew_at(), svid.not_after);
                match self.store.insert(svid) {
                    Ok(()) => {
                        due.at = instant_of(renew_at);
                        due.failures = 0;
                        tracing::info!(%id, ?not_after, "installed a new certificate");
                        return;
                    }
                    Err(e) => e.to_string(),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(None) => format!("no answer within {SIGN_TIMEOUT:?}"),
            Err(Some(reason)) => reason,
        };
        due.failures += 1;
        let delay = self.backoff.delay(due.failures);
        due.at = Instant::now() + delay;
        let current = match self.store.get(id) {
            Some(svid) if svid.is_expired(SystemTime::now()) => "an expired certificate",
            Some(_) => "the current certificate",
            None => "no certificate",
        };
        tracing::warn!(%id, error, retry_in = ?delay, "certificate request failed; keeping {current}");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The monotonic instant of a wall-clock time (now if it is past).
fn instant_of(t: SystemTime) -> Instant {
    Instant::now() + t.duration_since(SystemTime::now()).unwrap_or_default()
}
