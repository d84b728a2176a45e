//! The config source a proxy runs, file or Kubernetes, behind one face: models on a watch
//! channel, a rejection counter and a reason to show on the readiness page. The node agent
//! and the waypoint both start theirs here, so they wait, log and report alike.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::{FileSource, KubeSettings, KubeSource};
use crate::model::Model;

/// Which source to read (`--config-source file|kube`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A YAML file (`--config`), reloaded when it changes or on SIGHUP.
    File,
    /// The Kubernetes API (in-cluster service account, else kubeconfig).
    Kube,
}

impl FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(SourceKind::File),
            "kube" => Ok(SourceKind::Kube),
            other => Err(format!("unknown config source {other:?}: file or kube")),
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::File => "file",
            SourceKind::Kube => "kube",
        })
    }
}

/// How often start-up logs why the Kubernetes source is not ready yet.
const NOT_READY_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub enum ConfigSource {
    File(FileSource),
    Kube(KubeSource),
}

impl ConfigSource {
    /// Starts the source and returns once it has a complete model: the file's first valid
    /// load, or the first full list of every Kubernetes watch (retried with backoff, and
    /// the reason logged every 10 s meanwhile).
    pub async fn start(
        kind: SourceKind,
        config: Option<&PathBuf>,
        settings: KubeSettings,
    ) -> Result<Self> {
        match kind {
            SourceKind::File => {
                let path = config.context("--config-source file needs --config <file>")?;
                let source = FileSource::start(path)
                    .await
                    .with_context(|| format!("loading config {}", path.display()))?;
                Ok(Self::File(source))
            }
            SourceKind::Kube => {
                let source = KubeSource::connect(settings)
                    .await
                    .context("no Kubernetes client config (in-cluster or kubeconfig)")?;
                loop {
                    match tokio::time::timeout(NOT_READY_LOG_INTERVAL, source.ready()).await {
                        Ok(()) => break,
                        Err(_) => tracing::warn!(
                            "Kubernetes config not ready: {}",
                            source.not_ready().unwrap_or_default()
                        ),
                    }
                }
                Ok(Self::Kube(source))
            }
        }
    }

    /// The model in force now.
    pub fn current(&self) -> Arc<Model> {
        self.subscribe().borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Model>> {
        match self {
            Self::File(s) => s.subscribe(),
            Self::Kube(s) => s.subscribe(),
        }
    }

    /// Refused edits of the file, or problems with Kubernetes objects, since the start.
    pub fn rejected_total(&self) -> u64 {
        match self {
            Self::File(s) => s.rejected_total(),
            Self::Kube(s) => s.problems_total(),
        }
    }

    /// What the readiness page should say about the config, if anything is wrong.
    pub fn trouble(&self) -> Option<String> {
        match self {
            Self::File(s) => s
                .last_error()
                .map(|e| format!("config rejected, last good config in force: {e}")),
            Self::Kube(s) => {
                let problems = s.problems();
                match (s.not_ready(), problems.first()) {
                    (Some(why), _) => Some(why),
                    (None, Some(first)) => Some(format!(
                        "{} Kubernetes object(s) with problems, first: {first}",
                        problems.len()
                    )),
                    (None, None) => None,
                }
            }
        }
    }

    /// Re-reads the file (SIGHUP); the Kubernetes source is always current.
    pub fn reload_now(&self) {
        match self {
            Self::File(s) => s.reload_now(),
            Self::Kube(_) => tracing::info!("SIGHUP: the Kubernetes source needs no reload"),
        }
    }
}
