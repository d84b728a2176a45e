//! Ambit's network-namespace sandbox, shared by the end-to-end tests, `cargo xtask demo` and `cargo xtask bench`.
//!
//! - [`sandbox`]: nodes and pods built from network namespaces, veths and cgroup v2;
//! - [`testapp`]: commands and result types of the `ambit-testapp` binary the pods run;
//! - [`binary`]: finding built binaries (`ambit-testapp`, `ambit-node`);
//! - [`deploy`]: the Helm chart and the plain manifests derived from it;
//! - [`require_privileged`]: the root check (and opt-out) every privileged test starts with.

pub mod binaries;
pub mod capture;
pub mod cluster;
pub mod deploy;
pub mod privileged;
pub mod sandbox;
pub mod testapp;

pub use binaries::binary;
pub use privileged::{require_privileged, SKIP_PRIVILEGED_ENV};
pub use sandbox::{install_interrupt_cleanup, sandbox_down, Node, Pod, Process, Report, Sandbox};
