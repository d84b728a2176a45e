//! Where the model comes from: each source fills a `ClusterState` and builds a `Model`.
//!
//! Only the YAML file source exists so far ([`load`], [`parse`], and [`FileSource`] to follow
//! edits); a Kubernetes source will end in the same `Model::new`.

mod document;
mod error;
mod file;
mod watch;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, FieldProblem, Origin};
pub use file::{load, parse};
pub use watch::{FileSource, DEFAULT_POLL_INTERVAL};
