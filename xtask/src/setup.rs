//! `cargo xtask setup`: installs, idempotently, what a fresh machine needs to build and test
//! Ambit (see ../shared/EBPF-TOOLCHAIN.md for why each piece is there), and the tools the
//! deploy tests use (deploy/README.md).

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

/// Python packages the deploy tests and `gen-manifests` use, pinned: Helm's engine as a
/// library (no helm binary is packaged where these machines reach) and the Kubernetes schemas.
pub const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ambit_e2e::deploy::HELM_SDK,
    ambit_e2e::deploy::KUBERNETES_VALIDATE,
];

/// Debian's kubectl (1.20), for `kubectl kustomize` in the deploy tests; installed only when
/// no kubectl is on PATH (a newer one from another package would clash with it).
pub const KUBECTL_PACKAGE: &str = "kubernetes-client";

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
    if !kubectl_ok() {
        missing.push(format!("kubectl (package {KUBECTL_PACKAGE})"));
    }
    for (name, version) in missing_python_packages() {
        missing.push(format!("Python package {name}=={version}"));
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

/// `setup --toolchain-only`: only what building the binaries needs (the Debian packages and
/// bpf-linker); no bpffs mount and no test tools, so it runs in a container build.
pub fn run_toolchain_only() -> Result<()> {
    if !is_root() {
        bail!("setup installs Debian packages: run it as root");
    }
    install_toolchain()?;
    eprintln!("xtask: toolchain setup complete");
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
    install_toolchain()?;
    install_deploy_tools()
}

/// The Debian packages and bpf-linker.
fn install_toolchain() -> Result<()> {
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

/// kubectl and the pinned Python packages the deploy tests need.
fn install_deploy_tools() -> Result<()> {
    if kubectl_ok() {
        eprintln!("xtask: kubectl already installed");
    } else {
        eprintln!("xtask: installing Debian's {KUBECTL_PACKAGE} (kubectl)");
        shell::run(
            Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        shell::run(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    KUBECTL_PACKAGE,
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let python = missing_python_packages();
    if python.is_empty() {
        eprintln!("xtask: Python packages already installed");
    } else {
        let pins: Vec<String> = python.iter().map(|(n, v)| format!("{n}=={v}")).collect();
        eprintln!("xtask: installing Python packages: {}", pins.join(" "));
        shell::run(pip_install().args(&pins))?;
    }
    Ok(())
}

/// `python3 -m pip install`, quiet, as root without pip's warning about it; the caller adds
/// the packages (and any `--target`).
pub fn pip_install() -> Command {
    let mut cmd = ambit_e2e::deploy::python();
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
    ]);
    cmd
}

fn kubectl_ok() -> bool {
    probe(Command::new("kubectl").args(["version", "--client"]))
}

/// Pinned Python packages that are absent or at another version.
fn missing_python_packages() -> Vec<(&'static str, &'static str)> {
    PYTHON_PACKAGES
        .iter()
        .copied()
        .filter(|(name, version)| {
            let out = ambit_e2e::deploy::python()
                .args(["-c", "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))", name])
                .output();
            !matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == *version)
        })
        .collect()
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
