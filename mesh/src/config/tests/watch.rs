//! Following the file: good edits are published, bad ones counted and the last good model kept.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::SHOP;
use crate::config::{ConfigError, FileSource};
use crate::model::Model;

const POLL: Duration = Duration::from_millis(20);
const PATIENCE: Duration = Duration::from_secs(2);

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ambit-mesh-{test}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("mesh.yaml")
    }

    /// Replaces the config file atomically, as careful writers do.
    fn replace(&self, text: &str) {
        let next = self.0.join(".mesh.yaml.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, self.config()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn next_model(models: &mut watch::Receiver<Arc<Model>>) -> Arc<Model> {
    tokio::time::timeout(PATIENCE, models.changed())
        .await
        .expect("no new model in time")
        .unwrap();
    models.borrow_and_update().clone()
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn invalid_edit_keeps_the_last_good_model_until_a_valid_one() {
    let dir = Scratch::new("keeps-last-good");
    dir.replace(SHOP);
    let source = FileSource::start_with_interval(dir.config(), POLL)
        .await
        .unwrap();
    let mut models = source.subscribe();
    let first = models.borrow_and_update().clone();
    assert_eq!(first.workloads().len(), 5);

    tracing::info!("an edit with a bad IP is refused and counted");
    dir.replace(&SHOP.replace("10.10.2.3", "10.10.2.300"));
    until("the rejection", || source.rejected_total() == 1).await;
    assert_eq!(source.current(), first);
    let error = source.last_error().unwrap();
    assert!(
        error.contains("mesh.yaml: workloads[3].ips[0]: invalid IP address"),
        "{error}"
    );
    assert!(!models.has_changed().unwrap());

    tracing::info!("a later valid edit is published and clears the error");
    dir.replace(&SHOP.replace("10.10.2.3", "10.10.2.30"));
    let second = next_model(&mut models).await;
    assert!(second
        .workload_by_ip("10.10.2.30".parse().unwrap())
        .is_some());
    assert_eq!(source.last_error(), None);
    assert_eq!(source.rejected_total(), 1);
}

#[tokio::test]
async fn edit_in_place_is_picked_up() {
    let dir = Scratch::new("in-place");
    std::fs::write(dir.config(), SHOP).unwrap();
    let source = FileSource::start_with_interval(dir.config(), POLL)
        .await
        .unwrap();
    let mut models = source.subscribe();

    std::fs::write(dir.config(), SHOP.replace("10.96.0.10", "10.96.0.11")).unwrap();
    let model = next_model(&mut models).await;
    assert!(model
        .service_by_vip("10.96.0.11".parse().unwrap())
        .is_some());
}

#[tokio::test]
async fn invalid_file_at_start_is_an_error() {
    let dir = Scratch::new("bad-start");
    dir.replace("redirect: {excludePorts: [0]}");
    let err = FileSource::start_with_interval(dir.config(), POLL)
        .await
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("redirect.excludePorts[0]"));

    let missing = FileSource::start(dir.0.join("absent.yaml"))
        .await
        .err()
        .unwrap();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing:?}");
}

#[tokio::test]
async fn file_briefly_missing_is_not_reported() {
    let dir = Scratch::new("briefly-missing");
    dir.replace(SHOP);
    let poll = Duration::from_millis(50);
    let source = FileSource::start_with_interval(dir.config(), poll)
        .await
        .unwrap();
    let mut models = source.subscribe();

    tracing::info!("delete and rewrite within one poll, as some editors do");
    std::fs::remove_file(dir.config()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(dir.config(), SHOP.replace("10.10.1.2", "10.10.1.20")).unwrap();
    let model = next_model(&mut models).await;
    assert!(model
        .workload_by_ip("10.10.1.20".parse().unwrap())
        .is_some());
    assert_eq!(source.rejected_total(), 0);
}

#[tokio::test]
async fn file_missing_for_several_polls_is_reported_once() {
    let dir = Scratch::new("missing");
    dir.replace(SHOP);
    let source = FileSource::start_with_interval(dir.config(), POLL)
        .await
        .unwrap();
    let first = source.current();

    std::fs::remove_file(dir.config()).unwrap();
    until("the rejection", || source.rejected_total() == 1).await;
    tokio::time::sleep(POLL * 5).await;
    assert_eq!(
        source.rejected_total(),
        1,
        "reported once, not at every poll"
    );
    assert_eq!(source.current(), first);
    let error = source.last_error().unwrap();
    assert!(error.starts_with("cannot read config file "), "{error}");
    assert!(error.contains("mesh.yaml: No such file"), "{error}");

    tracing::info!("the same file back clears the error");
    dir.replace(SHOP);
    until("the error to clear", || source.last_error().is_none()).await;
    assert_eq!(source.current(), first);
}

#[tokio::test]
async fn reload_now_reads_the_file_without_waiting_for_a_poll() {
    let dir = Scratch::new("reload-now");
    dir.replace(SHOP);
    let hour = Duration::from_secs(3600);
    let source = FileSource::start_with_interval(dir.config(), hour)
        .await
        .unwrap();
    let mut models = source.subscribe();

    dir.replace(&SHOP.replace("10.10.1.3", "10.10.1.30"));
    source.reload_now();
    let model = next_model(&mut models).await;
    assert!(model
        .workload_by_ip("10.10.1.30".parse().unwrap())
        .is_some());

    tracing::info!("a forced reload of a bad file is refused like any other");
    dir.replace("nodes: [}");
    source.reload_now();
    until("the rejection", || source.rejected_total() == 1).await;
    assert_eq!(source.current(), model);
}
