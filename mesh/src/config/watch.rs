//! Follows the YAML file and publishes each new valid model; a bad edit keeps the last good one.
//!
//! Polling (every 500 ms by default) rather than inotify: it works the same on every
//! filesystem and through the ways files get replaced (editors, `kubectl cp`, a ConfigMap's
//! symlink swap, an atomic `rename`).
//!
//! # Usage
//! ```no_run
//! # async fn run() -> Result<(), ambit_mesh::config::ConfigError> {
//! let source = ambit_mesh::config::FileSource::start("/etc/ambit/mesh.yaml").await?;
//! let mut models = source.subscribe();
//! while models.changed().await.is_ok() {
//!     let model = models.borrow_and_update().clone();
//!     tracing::info!(workloads = model.workloads().len(), "new model");
//! }
//! # Ok(()) }
//! ```
//!
//! # Contracts
//! - The first load must succeed, or [`FileSource::start`] returns its error.
//! - Afterwards nothing the file does stops the source. A change is seen within one poll
//!   (size, mtime, inode, then a hash of the content). A model equal to the current one is
//!   not published again.
//! - A refused change (invalid, unreadable, or missing for longer than 4 polls) logs one
//!   `warn!` naming the file and the field, adds one to [`FileSource::rejected_total`], and
//!   its message stays in [`FileSource::last_error`] until a load succeeds.
//! - A file missing for less than 4 polls, as while an editor rewrites it, is not reported.
//! - [`FileSource::reload_now`] (for SIGHUP) re-reads and re-checks the file even if it looks
//!   unchanged.
//! - Dropping the `FileSource` stops the polling task; receivers then see the channel close.

use std::error::Error;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::file::parse_bytes;
use super::{ConfigError, Origin};
use crate::model::Model;

/// How often the file is checked when the caller does not say.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A file whose mtime is younger than this may still change within the same timestamp
/// tick, so it is re-read (and hashed) at each poll until it settles.
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// A YAML config file, watched; see the module docs for the contracts.
pub struct FileSource {
    path: PathBuf,
    models: watch::Receiver<Arc<Model>>,
    status: Arc<Status>,
    reload: Arc<Notify>,
    task: JoinHandle<()>,
}

/// What the polling task reports to readiness and admin pages.
#[derive(Default)]
struct Status {
    rejected_total: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl FileSource {
    /// Loads `path` and starts polling it every [`DEFAULT_POLL_INTERVAL`].
    pub async fn start(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        Self::start_with_interval(path, DEFAULT_POLL_INTERVAL).await
    }

    /// Loads `path` and starts polling it every `interval`.
    pub async fn start_with_interval(
        path: impl Into<PathBuf>,
        interval: Duration,
    ) -> Result<Self, ConfigError> {
        let path = path.into();
        let (stamp, bytes) = read(&path).await?;
        let model = parse_bytes(&bytes, Origin::File(path.clone()))?;
        let (sender, models) = watch::channel(Arc::new(model));
        let poller = Poller {
            path: path.clone(),
            interval,
            stamp,
            digest: Some(digest(&bytes)),
            missing_since: None,
            failing_read: false,
            status: Arc::default(),
            models: sender,
        };
        let status = poller.status.clone();
        let reload = Arc::new(Notify::new());
        let task = tokio::spawn(poller.run(reload.clone()));
        Ok(Self {
            path,
            models,
            status,
            reload,
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver of the model in force and of each new one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Model>> {
        self.models.clone()
    }

    /// The model in force now.
    pub fn current(&self) -> Arc<Model> {
        self.models.borrow().clone()
    }

    /// How many changes of the file were refused since the start.
    pub fn rejected_total(&self) -> u64 {
        self.status.rejected_total.load(Ordering::Relaxed)
    }

    /// Why the file's current content is not in force; `None` once a load succeeds.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.status.last_error).clone()
    }

    /// Re-reads and re-checks the file at once, even if it looks unchanged (for SIGHUP).
    pub fn reload_now(&self) {
        self.reload.notify_one();
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The polling task's state: what it saw last, so that it reads and checks only changes.
struct Poller {
    path: PathBuf,
    interval: Duration,
    /// Metadata of the last read, if it had settled; `None` forces a read.
    stamp: Option<Stamp>,
    /// Hash of the last content checked, valid or not.
    digest: Option<u64>,
    missing_since: Option<Instant>,
    /// A read failure was reported and no read has succeeded since.
    failing_read: bool,
    status: Arc<Status>,
    models: watch::Sender<Arc<Model>>,
}

/// What changes when a file is edited or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        }
    }

    /// Whether the mtime is old enough that a later write would change it.
    fn settled(&self) -> bool {
        self.modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > SETTLE_TIME)
    }
}

/// Reads the file, with the metadata seen before reading; the stamp is `None` unless settled.
async fn read(path: &Path) -> Result<(Option<Stamp>, Vec<u8>), ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(read_error)?;
    let bytes = tokio::fs::read(path).await.map_err(read_error)?;
    let stamp = Stamp::of(&meta);
    Ok((stamp.settled().then_some(stamp), bytes))
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl Poller {
    async fn run(mut self, reload: Arc<Notify>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let forced = tokio::select! {
                _ = ticks.tick() => false,
                () = reload.notified() => true,
            };
            self.poll(forced).await;
        }
    }

    async fn poll(&mut self, forced: bool) {
        if !forced && self.stamp.is_some() {
            match tokio::fs::metadata(&self.path).await {
                Ok(meta) if Some(Stamp::of(&meta)) == self.stamp => return,
                _ => {}
            }
        }
        let (stamp, bytes) = match read(&self.path).await {
            Ok(read) => read,
            Err(err) => return self.read_failed(err, forced),
        };
        self.stamp = stamp;
        self.missing_since = None;
        let digest = digest(&bytes);
        if !forced && !self.failing_read && self.digest == Some(digest) {
            return;
        }
        self.digest = Some(digest);
        self.failing_read = false;
        match parse_bytes(&bytes, Origin::File(self.path.clone())) {
            Ok(model) => self.accept(model),
            Err(err) => self.reject(&err),
        }
    }

    fn read_failed(&mut self, err: ConfigError, forced: bool) {
        self.stamp = None;
        let missing = match &err {
            ConfigError::Read { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        };
        if missing && !forced {
            let since = *self.missing_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.interval * 4 {
                return;
            }
        }
        if self.failing_read && !forced {
            return;
        }
        self.failing_read = true;
        self.reject(&err);
    }

    fn accept(&mut self, model: Model) {
        *lock(&self.status.last_error) = None;
        let changed = self.models.send_if_modified(|current| {
            if **current == model {
                return false;
            }
            *current = Arc::new(model);
            true
        });
        if changed {
            let model = self.models.borrow();
            tracing::info!(
                file = %self.path.display(),
                workloads = model.workloads().len(),
                services = model.services().len(),
                "loaded a new model"
            );
        }
    }

    fn reject(&self, err: &ConfigError) {
        let message = with_causes(err);
        self.status.rejected_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            file = %self.path.display(),
            field = err.field().unwrap_or("-"),
            "config refused, the last good model stays in force: {message}"
        );
        *lock(&self.status.last_error) = Some(message);
    }
}

/// `err` and its sources, joined by `: `.
fn with_causes(err: &dyn Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
