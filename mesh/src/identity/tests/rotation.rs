//! The rotator against an in-process CA: first issue, renewal at half-life, CA outages.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::{id, test_ca};
use crate::identity::{
    Backoff, Ca, CertRotator, CertStore, CertificateSource, PendingSvid, SpiffeId, Svid,
};

#[derive(Debug, thiserror::Error)]
enum TestCaError {
    #[error("the CA is down")]
    Down,
    #[error(transparent)]
    Ca(#[from] crate::identity::CaError),
    #[error(transparent)]
    Svid(#[from] crate::identity::SvidError),
}

/// A CA called in-process, which can be taken down.
struct InProcessCa {
    ca: Arc<Ca>,
    ttl: Duration,
    down: AtomicBool,
    calls: AtomicU32,
}

impl CertificateSource for Arc<InProcessCa> {
    type Error = TestCaError;

    async fn sign(&self, id: &SpiffeId) -> Result<Svid, TestCaError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(TestCaError::Down);
        }
        let pending = PendingSvid::generate(id)?;
        let chain = self.ca.sign(&pending.csr_pem, id, Some(self.ttl))?;
        Ok(pending.complete(&chain.pem)?)
    }
}

fn source(name: &str, ttl: Duration) -> Arc<InProcessCa> {
    Arc::new(InProcessCa {
        ca: test_ca(name),
        ttl,
        down: AtomicBool::new(false),
        calls: AtomicU32::new(0),
    })
}

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(200),
};

/// Waits up to `limit` for `check` to hold.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test]
async fn rotator_renews_at_half_life_and_keeps_the_old_cert_while_the_ca_is_down() {
    let ca = source("rotate", Duration::from_secs(2));
    let store = CertStore::new();
    let client = id("shop", "client");
    let (_wanted_tx, wanted) = watch::channel(BTreeSet::from([client.clone()]));
    let rotator = CertRotator::new(store.clone(), ca.clone(), wanted)
        .with_backoff(FAST)
        .spawn();

    assert!(eventually(Duration::from_millis(500), || store.get(&client).is_some()).await);
    let first = store.get(&client).unwrap();
    assert!(store.certified_key(&client).is_some());
    let renew_at = first.renew_at();
    assert!(renew_at < first.not_after);

    // A new certificate arrives at half-life, well before the first expires.
    let renewed = eventually(Duration::from_millis(1800), || {
        store.get(&client).is_some_and(|s| s.chain != first.chain)
    })
    .await;
    assert!(renewed, "no renewal");
    let now = SystemTime::now();
    assert!(
        now >= renew_at && now < first.not_after,
        "renewed at {now:?}"
    );

    // With the CA down, retries fail and the current certificate stays.
    ca.down.store(true, Ordering::Relaxed);
    let current = store.get(&client).unwrap();
    let calls = ca.calls.load(Ordering::Relaxed);
    let wait = current
        .renew_at()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(400)).await;
    assert!(ca.calls.load(Ordering::Relaxed) > calls + 1, "no retries");
    assert!(Arc::ptr_eq(&store.get(&client).unwrap(), &current));
    rotator.abort();
}

#[tokio::test]
async fn rotator_fetches_new_identities_and_drops_those_no_longer_wanted() {
    let ca = source("wanted", Duration::from_secs(3600));
    let store = CertStore::new();
    let (client, echo) = (id("shop", "client"), id("shop", "echo"));
    let (wanted_tx, wanted) = watch::channel(BTreeSet::from([client.clone()]));
    let rotator = CertRotator::new(store.clone(), ca.clone(), wanted).spawn();
    assert!(eventually(Duration::from_millis(500), || store.get(&client).is_some()).await);

    wanted_tx.send_replace(BTreeSet::from([echo.clone()]));
    assert!(eventually(Duration::from_millis(500), || store.get(&echo).is_some()).await);
    assert!(store.get(&client).is_none());

    drop(wanted_tx);
    tokio::time::timeout(Duration::from_secs(1), rotator)
        .await
        .expect("the rotator stops with its input")
        .unwrap();
}

#[tokio::test]
async fn rotator_retries_a_first_request_until_the_ca_answers() {
    let ca = source("retry", Duration::from_secs(3600));
    ca.down.store(true, Ordering::Relaxed);
    let store = CertStore::new();
    let client = id("shop", "client");
    let (_wanted_tx, wanted) = watch::channel(BTreeSet::from([client.clone()]));
    let rotator = CertRotator::new(store.clone(), ca.clone(), wanted)
        .with_backoff(FAST)
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.get(&client).is_none());
    assert!(ca.calls.load(Ordering::Relaxed) >= 2);
    ca.down.store(false, Ordering::Relaxed);
    assert!(eventually(Duration::from_millis(800), || store.get(&client).is_some()).await);
    rotator.abort();
}
