//! Builds Ambit's kernel programs with Debian's Rust toolchain. Shared by
//! `cargo xtask build-ebpf` and `node-agent/build.rs` (included with `#[path]`), so both
//! build exactly the same way.
//!
//! The host toolchain (rustup) has no `core` for the BPF target; Debian's `rustc-web` ships a
//! prebuilt one (see ../shared/EBPF-TOOLCHAIN.md). The inner cargo gets a clean environment:
//! variables that the outer cargo sets for build scripts (RUSTC, RUSTC_WORKSPACE_WRAPPER,
//! CARGO_ENCODED_RUSTFLAGS, …) would otherwise leak into it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's compiler and cargo with the prebuilt BPF `core` (`rustc-web`, `cargo-web`).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// Where the object lands, relative to the workspace root.
pub fn object_path(workspace: &Path) -> PathBuf {
    workspace.join("target/ebpf/bpfel-unknown-none/release/ambit")
}

/// `~/.cargo/bin`, where `cargo install` puts bpf-linker.
pub fn cargo_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home).join("bin"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cargo/bin"),
    }
}

/// What is missing for an eBPF build, as `cargo xtask setup` would install it.
pub fn missing_toolchain() -> Vec<String> {
    let mut missing = Vec::new();
    for (path, what) in [
        (DEBIAN_RUSTC, "Debian rustc-web (/usr/bin/rustc)"),
        (DEBIAN_CARGO, "Debian cargo-web (/usr/bin/cargo)"),
        (
            "/usr/lib/rustlib/bpfel-unknown-none",
            "Debian libstd-rust-web-dev-bpf (core for bpfel-unknown-none)",
        ),
    ] {
        if !Path::new(path).exists() {
            missing.push(what.to_string());
        }
    }
    if !cargo_bin_dir().join("bpf-linker").exists() {
        missing.push("bpf-linker (cargo install bpf-linker@0.13.0, LLVM 22)".to_string());
    }
    missing
}

/// The command that builds the eBPF crate; the caller runs it (xtask prints it first).
pub fn build_command(workspace: &Path) -> Command {
    let ebpf = workspace.join("ebpf");
    let mut path = cargo_bin_dir().into_os_string();
    if let Some(outer) = std::env::var_os("PATH") {
        path.push(":");
        path.push(outer);
    }
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.env_clear()
        .current_dir(&ebpf)
        .args(["build", "--release", "--target-dir"])
        .arg(workspace.join("target/ebpf"))
        .env("PATH", path)
        .env("RUSTC", DEBIAN_RUSTC)
        // aya-ebpf uses feature(asm_experimental_arch).
        .env("RUSTC_BOOTSTRAP", "1");
    for keep in ["HOME", "CARGO_HOME", "TERM", "CARGO_NET_OFFLINE"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd
}

/// Builds the kernel programs and returns the object's path. Fails, never produces an agent
/// without programs, when the toolchain is missing.
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let missing = missing_toolchain();
    if !missing.is_empty() {
        return Err(format!(
            "the eBPF toolchain is missing: {}. Run `cargo xtask setup` (installs it, idempotent).",
            missing.join(", ")
        ));
    }
    let mut cmd = build_command(workspace);
    let status = cmd
        .status()
        .map_err(|e| format!("running {DEBIAN_CARGO} for ebpf/: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building ebpf/ failed ({status}); see the errors above"
        ));
    }
    let object = object_path(workspace);
    if !object.exists() {
        return Err(format!(
            "the eBPF build finished but {} is missing",
            object.display()
        ));
    }
    Ok(object)
}
