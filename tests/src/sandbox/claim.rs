//! The on-disk record of each sandbox: its subnet claim, its owner, and every object it created.
//!
//! Records live in `/run/ambit-sandbox/subnet-<s>.json` (tmpfs: gone after a reboot, like
//! the namespaces). Creating the file with `O_EXCL` is what claims subnet `s`, so two
//! processes building sandboxes at once never share addresses. An object is written into the
//! record *before* it is created, so a teardown from the record (on drop, on Ctrl-C, or by
//! `sandbox_down` after a killed run) finds everything; missing objects are skipped.
//!
//! # Invariants
//! - a record with a live owner belongs to a running sandbox and `sandbox_down` spares it;
//! - `owner` is cleared when a kept sandbox is dropped: from then on it is a leftover.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::addressing::{self, MAX_SUBNET};
use super::netns;

/// Where sandbox records are kept.
pub const STATE_DIR: &str = "/run/ambit-sandbox";

/// Everything one sandbox created, enough to tear it down from another process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub name: String,
    pub subnet: u8,
    /// The process that owns the sandbox; `None` once a kept sandbox was dropped.
    pub owner: Option<Owner>,
    /// Network namespaces, in creation order.
    pub netns: Vec<String>,
    /// `<cgroup2>/ambit-sandbox/<name>`.
    pub cgroup_dir: PathBuf,
    /// bpffs pin directories of the nodes' agents (`/sys/fs/bpf/ambit/<node-name>`).
    pub pin_dirs: Vec<PathBuf>,
    /// Config files and logs.
    pub scratch_dir: PathBuf,
}

/// A process, identified robustly against pid reuse by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl Owner {
    pub fn current() -> Result<Owner> {
        let pid = std::process::id();
        let start_time = start_time(pid).context("reading this process's start time")?;
        Ok(Owner { pid, start_time })
    }

    pub fn is_alive(&self) -> bool {
        start_time(self.pid).is_some_and(|t| t == self.start_time)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl SandboxRecord {
    /// Whether a running process still owns this sandbox.
    pub fn is_live(&self) -> bool {
        self.owner.is_some_and(|o| o.is_alive())
    }

    pub fn path(&self) -> PathBuf {
        claim_path(self.subnet)
    }

    /// Writes the record atomically (write a temporary file, then rename over the claim).
    pub fn save(&self) -> Result<()> {
        let path = self.path();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).context("encoding sandbox record")?;
        fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
    }
}

/// `/run/ambit-sandbox/subnet-<s>.json`.
pub fn claim_path(subnet: u8) -> PathBuf {
    Path::new(STATE_DIR).join(format!("subnet-{subnet}.json"))
}

/// Claims a free subnet and writes the first record of a sandbox labelled `label`.
pub fn claim(label: &str, cgroup_root: &Path) -> Result<SandboxRecord> {
    static ATTEMPTS: AtomicU32 = AtomicU32::new(0);
    fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
    let existing = netns::list()?;
    let owner = Owner::current()?;
    // Start at a pid-dependent place so parallel processes rarely race for one subnet.
    let spread = owner.pid.wrapping_mul(31) + ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    for step in 0..u32::from(MAX_SUBNET) {
        let subnet = ((spread + step) % u32::from(MAX_SUBNET) + 1) as u8;
        let name = addressing::sandbox_name(label, subnet);
        if existing.iter().any(|n| n.starts_with(&format!("{name}-"))) {
            continue; // a leftover of a killed run with this very name
        }
        let path = claim_path(subnet);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        let record = SandboxRecord {
            scratch_dir: std::env::temp_dir().join(&name),
            cgroup_dir: cgroup_root.join(&name),
            name,
            subnet,
            owner: Some(owner),
            netns: Vec::new(),
            pin_dirs: Vec::new(),
        };
        let text = serde_json::to_vec_pretty(&record).context("encoding sandbox record")?;
        file.write_all(&text)
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(record);
    }
    bail!(
        "all {MAX_SUBNET} sandbox subnets are claimed in {STATE_DIR}; \
         remove leftovers of killed runs with `cargo xtask sandbox down`"
    )
}

/// A claim file and what it says (an error if it cannot be read or parsed).
pub struct ClaimFile {
    pub path: PathBuf,
    pub record: Result<SandboxRecord>,
    /// Seconds since the file was last written.
    pub age_secs: u64,
}

/// Every claim file in the state directory.
pub fn load_all() -> Result<Vec<ClaimFile>> {
    let entries = match fs::read_dir(STATE_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {STATE_DIR}")),
    };
    let mut claims = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("subnet-") || !name.ends_with(".json") {
            continue;
        }
        let age_secs = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        let record = fs::read(&path)
            .with_context(|| format!("reading {}", path.display()))
            .and_then(|bytes| {
                serde_json::from_slice::<SandboxRecord>(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))
            });
        claims.push(ClaimFile {
            path,
            record,
            age_secs,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let impostor = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }
}
