//! Network namespaces: `ip` invocations, running code inside a namespace, per-namespace sysctls.
//!
//! Every namespace is created with `ip netns add`, so it has a file under `/run/netns/`
//! (the node agent enrolls pods from that path). Code that must run inside a namespace
//! (sysctls, reachability probes) runs on a short-lived thread that `setns`es; the thread
//! checks it really is in the target namespace before touching anything, so a failure can
//! never fall back to the host's namespace.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::process;

/// Where `ip netns add` puts namespace files.
pub const NETNS_DIR: &str = "/run/netns";
const IP_TIMEOUT: Duration = Duration::from_secs(15);

/// `/run/netns/<name>`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `ip <args>` (split on whitespace: sandbox names never contain any); the error
/// carries the command line and ip's stderr.
pub fn ip(args: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(args.split_whitespace());
    let line = process::describe(&cmd);
    let output = process::run_host(cmd, IP_TIMEOUT)
        .with_context(|| format!("running `{line}` (is iproute2 installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Creates a named network namespace and brings its loopback up.
pub fn add(name: &str) -> Result<()> {
    ip(&format!("netns add {name}"))?;
    ip(&format!("-n {name} link set lo up"))
}

/// Deletes a named network namespace; `Ok(false)` if it did not exist (or another cleanup
/// removed it meanwhile).
pub fn delete(name: &str) -> Result<bool> {
    if !path(name).exists() {
        return Ok(false);
    }
    match ip(&format!("netns del {name}")) {
        Ok(()) => Ok(true),
        Err(_) if !path(name).exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Names of all named network namespaces.
pub fn list() -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {NETNS_DIR}")),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Runs `f` on a thread inside the network namespace at `netns_path` and returns its result.
pub fn run_inside<T: Send>(netns_path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(netns_path)
        .with_context(|| format!("opening netns {}", netns_path.display()))?;
    let target =
        fs::metadata(netns_path).with_context(|| format!("stat netns {}", netns_path.display()))?;
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a descriptor we own; it only changes this thread's netns,
                // and this thread ends when the closure returns.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("setns into {}", netns_path.display()));
                }
                let now = fs::metadata("/proc/thread-self/ns/net")
                    .context("stat /proc/thread-self/ns/net")?;
                if (now.dev(), now.ino()) != (target.dev(), target.ino()) {
                    bail!("setns into {} did not take effect", netns_path.display());
                }
                f()
            })
            .join()
            .map_err(|_| anyhow!("thread inside {} panicked", netns_path.display()))?
    })
}

/// Writes `net.*` sysctls inside a namespace: keys are paths under `/proc/sys/net/`,
/// e.g. `ipv4/ip_forward`. The host's sysctls are never touched (see [`run_inside`]).
pub fn set_sysctls(netns_path: &Path, settings: &[(&str, &str)]) -> Result<()> {
    run_inside(netns_path, || {
        for (key, value) in settings {
            let file = Path::new("/proc/sys/net").join(key);
            tracing::debug!(netns = %netns_path.display(), key, value, "sysctl");
            fs::write(&file, value)
                .with_context(|| format!("writing {value} to {}", file.display()))?;
        }
        Ok(())
    })
}

/// Reads a `net.*` sysctl inside a namespace (key as in [`set_sysctls`]).
pub fn read_sysctl(netns_path: &Path, key: &str) -> Result<String> {
    run_inside(netns_path, || {
        let file = Path::new("/proc/sys/net").join(key);
        let mut value = String::new();
        File::open(&file)
            .and_then(|mut f| f.read_to_string(&mut value))
            .with_context(|| format!("reading {}", file.display()))?;
        Ok(value.trim().to_string())
    })
}

/// Waits until a TCP connect from inside `netns_path` to `addr` succeeds, or `timeout`.
pub fn wait_for_listener(netns_path: &Path, addr: SocketAddr, timeout: Duration) -> Result<()> {
    run_inside(netns_path, || {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = left
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(10));
            match TcpStream::connect_timeout(&addr, attempt) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| {
                        format!(
                            "nothing accepted connections on {addr} from {} within {timeout:?}",
                            netns_path.display()
                        )
                    })
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    })
}
