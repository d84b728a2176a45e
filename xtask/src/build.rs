//! `cargo xtask build-ebpf` and `cargo xtask build`.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::ebpf_build;
use crate::shell::{cargo, describe, run, workspace};

pub fn ebpf() -> Result<PathBuf> {
    let ws = workspace();
    eprintln!("$ {}", describe(&ebpf_build::build_command(&ws)));
    let object = ebpf_build::build(&ws).map_err(|e| anyhow!(e))?;
    eprintln!("xtask: kernel programs at {}", object.display());
    Ok(object)
}

/// The agent and its CNI plugin, the waypoint, the controller (mesh CA) and the sandbox's test
/// app, in release mode (the tests, the demo and the benchmarks all use these).
pub fn release_binaries() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "ambit-node",
        "-p",
        "ambit-cni",
        "-p",
        "ambit-waypoint",
        "-p",
        "ambit-controller",
        "-p",
        "ambit-e2e",
        "--bins",
    ]))
}

/// The waypoint and the test app in release mode: all `bench waypoint` runs.
pub fn waypoint_binaries() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "ambit-waypoint",
        "-p",
        "ambit-e2e",
        "--bins",
    ]))
}

pub fn bin_dir() -> PathBuf {
    workspace().join("target/release")
}
