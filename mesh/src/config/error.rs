//! Why a config source refused its input, worded for the operator who has to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::model::labels::{DataplaneMode, DATAPLANE_MODE};
use crate::model::{CidrError, ModelError};

/// Where a document came from, named at the start of every message about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// Text handed to [`parse`](super::parse) directly.
    Text,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Text => f.write_str("config"),
        }
    }
}

/// A refused config. The message names the file and the field path
/// (`/etc/ambit/mesh.yaml: workloads[2].ips[0]: invalid IP address "10.0.0.300"`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not YAML, or not the schema: a wrong type, a missing or unknown field.
    #[error("{origin}: {field}: {message}")]
    Schema {
        origin: Origin,
        field: String,
        /// The parser's words, with the line and column.
        message: String,
    },
    /// Well-formed, but a value is wrong or contradicts another.
    #[error("{origin}: {field}: {problem}")]
    Invalid {
        origin: Origin,
        field: String,
        problem: FieldProblem,
    },
}

impl ConfigError {
    /// The path of the offending field, such as `workloads[2].ips[0]`.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Read { .. } => None,
            Self::Schema { field, .. } | Self::Invalid { field, .. } => Some(field),
        }
    }
}

/// What is wrong with one field of a well-formed document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error(
        "the file is empty; an empty file is refused rather than taken as an empty mesh \
         (write the file whole: to a temporary file, then rename it)"
    )]
    EmptyDocument,
    #[error("invalid IP address {value:?}")]
    InvalidIp { value: String },
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("port 0 is not a port; use 1-65535")]
    ZeroPort,
    #[error("must not be empty")]
    Empty,
    #[error(
        "invalid name {value:?}; use lowercase letters, digits, '-' and '.', \
         beginning and ending with a letter or digit, as Kubernetes does"
    )]
    InvalidName { value: String },
    #[error("invalid trust domain {value:?}; use lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain { value: String },
    #[error("node {node:?} is not listed under nodes ({})", known_nodes(.known))]
    UnknownNode { node: String, known: Vec<String> },
    #[error(
        "unknown value {value:?} for label {DATAPLANE_MODE}; allowed: {}",
        DataplaneMode::VALUES.join(", ")
    )]
    DataplaneMode { value: String },
    #[error("kind {got:?} does not belong in this list; expected {expected:?}")]
    WrongKind { expected: String, got: String },
    #[error("apiVersion {got:?} is not supported; use {expected:?}")]
    WrongApiVersion { expected: String, got: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn known_nodes(known: &[String]) -> String {
    if known.is_empty() {
        "no node is listed".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    }
}
