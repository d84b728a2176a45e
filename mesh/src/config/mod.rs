//! Where the model comes from: each source fills a `ClusterState` and builds a `Model`.
//!
//! Two sources, one model: the YAML file ([`load`], [`parse`], and [`FileSource`] to follow
//! edits) and the Kubernetes API ([`KubeSource`]). Both publish on a
//! `watch::Receiver<Arc<Model>>`, so consumers do not care which one runs.

mod document;
mod error;
mod file;
pub mod kube;
mod source;
mod watch;

#[cfg(test)]
mod tests;

pub use self::kube::{KubeSettings, KubeSource};
pub use error::{ConfigError, FieldProblem, Origin};
pub use file::{load, parse};
pub use source::{ConfigSource, SourceKind};
pub use watch::{FileSource, DEFAULT_POLL_INTERVAL};
