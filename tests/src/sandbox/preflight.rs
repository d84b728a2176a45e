//! Checks that this process and kernel can build a sandbox, naming exactly what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{cgroup, process};

/// Fails unless running as root (the sandbox creates namespaces, cgroups and bpffs entries).
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "{what} needs root (effective uid is {euid}): run as root, e.g. `sudo -E cargo xtask test`"
        );
    }
    Ok(())
}

/// Checks root, network namespaces, cgroup v2 and iproute2; returns the
/// cgroup2 mount. veth and bridge support show up when the fabric is built, with a hint.
pub fn check() -> Result<PathBuf> {
    require_root("building a sandbox")?;
    if !Path::new("/proc/self/ns/net").exists() {
        bail!("the kernel lacks network namespaces (/proc/self/ns/net is missing; CONFIG_NET_NS)");
    }
    let mount = cgroup::cgroup2_mount()?;
    if !mount.join("cgroup.procs").exists() {
        bail!(
            "{} is listed as cgroup2 but has no cgroup.procs; is it mounted?",
            mount.display()
        );
    }
    let mut ip = Command::new("ip");
    ip.arg("-V");
    let output = process::run_host(ip, Duration::from_secs(5))
        .context("iproute2's `ip` is not runnable; install iproute2")?;
    if !output.status.success() {
        bail!("`ip -V` failed ({}); install iproute2", output.status);
    }
    Ok(mount)
}
