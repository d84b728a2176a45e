//! `cargo xtask setup`: installs, idempotently, what a fresh machine needs to build and test
//! Ambit (see ../shared/EBPF-TOOLCHAIN.md for why each piece is there).

use std::process::Command;

use anyhow::{bail, Result};

use crate::ebpf_build;
use crate::shell::{self, probe};

/// Debian packages: Debian's Rust with a prebuilt `core` for BPF, LLVM 22 for bpf-linker,
/// and the tools the sandbox and the inspector use.
pub const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "gcc",
    "libc6-dev",
    "bpftool",
    "iproute2",
    "curl",
    "ca-certificates",
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// What is missing, without installing anything.
pub fn missing() -> Vec<String> {
    let mut missing: Vec<String> = missing_packages()
        .into_iter()
        .map(|p| format!("package {p}"))
        .collect();
    if !bpf_linker_ok() {
        missing.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }
    if !bpffs_mounted() {
        missing.push("bpffs at /sys/fs/bpf".into());
    }
    missing
}

/// Runs setup when something is missing; every other command calls this first.
pub fn ensure() -> Result<()> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: setting up first (missing: {})", missing.join(", "));
    run_setup()
}

pub fn run() -> Result<()> {
    run_setup()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn run_setup() -> Result<()> {
    if !is_root() {
        bail!("setup installs Debian packages and mounts bpffs: run it as root");
    }
    if !bpffs_mounted() {
        eprintln!("xtask: mounting bpffs");
        shell::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    } else {
        eprintln!("xtask: bpffs already mounted at /sys/fs/bpf");
    }
    let packages = missing_packages();
    if packages.is_empty() {
        eprintln!("xtask: Debian packages already installed");
    } else {
        eprintln!("xtask: installing Debian packages: {}", packages.join(" "));
        shell::run(
            Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        shell::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if bpf_linker_ok() {
        eprintln!("xtask: bpf-linker {BPF_LINKER_VERSION} already installed");
    } else {
        eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes, once)");
        // Its default feature is LLVM 23, which Debian does not ship here.
        shell::run(
            Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                ])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    Ok(())
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn bpf_linker_ok() -> bool {
    let linker = ebpf_build::cargo_bin_dir().join("bpf-linker");
    let Ok(out) = Command::new(&linker).arg("--version").output() else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
}

fn bpffs_mounted() -> bool {
    probe(Command::new("mountpoint").args(["-q", "/sys/fs/bpf"]))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
