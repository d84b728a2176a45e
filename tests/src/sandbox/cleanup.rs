//! Tearing sandboxes down: one sandbox from its record, or every leftover (`sandbox_down`).
//!
//! Order matters: processes first (a namespace or cgroup in use cannot go), then network
//! namespaces, then cgroup directories deepest first, then bpffs pin directories, the
//! scratch directory and finally the record. Nothing without the `ambit-sb-` prefix (or
//! outside `<cgroup2>/ambit-sandbox/`) is ever removed.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::addressing::PREFIX;
use super::claim::{self, SandboxRecord};
use super::{cgroup, netns, preflight};

/// Where node agents pin their maps and links: `/sys/fs/bpf/ambit/<node-name>`.
pub const BPF_PIN_ROOT: &str = "/sys/fs/bpf/ambit";
const KILL_DEADLINE: Duration = Duration::from_secs(5);
const RMDIR_DEADLINE: Duration = Duration::from_secs(3);
/// A claim file this young that does not parse may belong to a sandbox being created.
const UNREADABLE_CLAIM_GRACE_SECS: u64 = 60;

/// What a teardown did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects removed (and processes killed), one line each.
    pub removed: Vec<String>,
    /// Objects left alone, with the reason.
    pub skipped: Vec<String>,
    /// Objects that could not be removed, with the error.
    pub failures: Vec<String>,
}

impl Report {
    /// Nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    fn merge(&mut self, other: Report) {
        self.removed.extend(other.removed);
        self.skipped.extend(other.skipped);
        self.failures.extend(other.failures);
    }

    fn outcome<T>(&mut self, what: impl fmt::Display, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.failures.push(format!("{what}: {e:#}"));
                None
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.removed.is_empty() && self.skipped.is_empty() && self.failures.is_empty() {
            return writeln!(f, "nothing to remove");
        }
        for line in &self.removed {
            writeln!(f, "removed {line}")?;
        }
        for line in &self.skipped {
            writeln!(f, "skipped {line}")?;
        }
        for line in &self.failures {
            writeln!(f, "FAILED  {line}")?;
        }
        Ok(())
    }
}

/// Removes everything in `record`. Keeps the scratch directory when `keep_scratch` (logs of
/// a failed test).
pub(crate) fn teardown(record: &SandboxRecord, keep_scratch: bool) -> Report {
    let mut report = Report::default();
    if !owned_path(&record.cgroup_dir) {
        report.failures.push(format!(
            "record {} names cgroup {} without the {PREFIX} prefix; refusing to touch it",
            record.name,
            record.cgroup_dir.display()
        ));
        return report;
    }
    report.merge(remove_cgroup_processes(&record.cgroup_dir));
    for name in record.netns.iter().rev() {
        report.merge(remove_netns(name));
    }
    report.merge(remove_cgroups(&record.cgroup_dir));
    for dir in &record.pin_dirs {
        report.merge(remove_owned_dir("bpffs pin dir", dir));
    }
    if keep_scratch && record.scratch_dir.exists() {
        report.skipped.push(format!(
            "scratch dir {} (kept for its logs)",
            record.scratch_dir.display()
        ));
    } else {
        report.merge(remove_owned_dir("scratch dir", &record.scratch_dir));
    }
    let claim = record.path();
    if let Some(true) = report.outcome(claim.display(), remove_file_if_present(&claim)) {
        report.removed.push(format!("record {}", claim.display()));
    }
    report
}

/// Removes the leftovers of sandboxes whose owner is gone (killed runs, `keep()`): their
/// processes, network namespaces `ambit-sb-*`, everything under `<cgroup2>/ambit-sandbox/`,
/// pin dirs `/sys/fs/bpf/ambit/ambit-sb-*`, scratch dirs and records. Sandboxes owned by a
/// running process are skipped. Check [`Report::is_clean`] for partial failures.
pub fn sandbox_down() -> Result<Report> {
    preflight::require_root("removing sandbox leftovers")?;
    // List objects before reading records: a sandbox records an object before creating it,
    // so anything listed here that belongs to a live sandbox is in the records read next.
    let candidates = Candidates::list()?;
    let mut report = Report::default();
    let mut live = Vec::new();
    let mut unsure = false;
    for claim in claim::load_all()? {
        match claim.record {
            Ok(record) if record.is_live() => {
                let pid = record.owner.map_or(0, |o| o.pid);
                report
                    .skipped
                    .push(format!("sandbox {} (in use by pid {pid})", record.name));
                live.push(record);
            }
            Ok(record) => report.merge(teardown(&record, false)),
            Err(e) if claim.age_secs < UNREADABLE_CLAIM_GRACE_SECS => {
                unsure = true;
                report
                    .skipped
                    .push(format!("{} (being written? {e:#})", claim.path.display()));
            }
            Err(_) => {
                if let Some(true) =
                    report.outcome(claim.path.display(), remove_file_if_present(&claim.path))
                {
                    report
                        .removed
                        .push(format!("unreadable record {}", claim.path.display()));
                }
            }
        }
    }
    if unsure {
        report.skipped.push(
            "objects without a record (a sandbox may be starting; run again in a minute)".into(),
        );
        return Ok(report);
    }
    report.merge(candidates.remove_unowned(&live));
    Ok(report)
}

/// Objects that look like sandbox leftovers, listed before the records are read.
struct Candidates {
    cgroups: Vec<PathBuf>,
    netns: Vec<String>,
    /// (kind, path) of bpffs pin dirs and scratch dirs.
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Candidates {
    fn list() -> Result<Candidates> {
        let subdirs = |root: &Path| -> Vec<PathBuf> {
            fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        };
        let mut dirs = Vec::new();
        for (kind, root) in [
            ("bpffs pin dir", PathBuf::from(BPF_PIN_ROOT)),
            ("scratch dir", std::env::temp_dir()),
        ] {
            dirs.extend(
                subdirs(&root)
                    .into_iter()
                    .filter(|d| owned_path(d))
                    .map(|d| (kind, d)),
            );
        }
        Ok(Candidates {
            cgroups: subdirs(&cgroup::sandbox_root()?),
            netns: netns::list()?
                .into_iter()
                .filter(|n| n.starts_with(PREFIX))
                .collect(),
            dirs,
        })
    }

    /// Removes every candidate that no live record lists.
    fn remove_unowned(self, live: &[SandboxRecord]) -> Report {
        let mut report = Report::default();
        for dir in self.cgroups {
            if !live.iter().any(|r| r.cgroup_dir == dir) {
                report.merge(remove_cgroup_processes(&dir));
                report.merge(remove_cgroups(&dir));
            }
        }
        for name in self.netns {
            if !live.iter().any(|r| r.netns.contains(&name)) {
                report.merge(remove_netns(&name));
            }
        }
        for (kind, dir) in self.dirs {
            let owned = |r: &SandboxRecord| r.scratch_dir == dir || r.pin_dirs.contains(&dir);
            if !live.iter().any(owned) {
                report.merge(remove_owned_dir(kind, &dir));
            }
        }
        report
    }
}

fn remove_cgroup_processes(dir: &Path) -> Report {
    let mut report = Report::default();
    let what = format!("processes in cgroup {}", dir.display());
    if let Some(pids) = report.outcome(&what, cgroup::kill_tree(dir, KILL_DEADLINE)) {
        if !pids.is_empty() {
            report.removed.push(format!("{what} (killed {pids:?})"));
        }
    }
    report
}

fn remove_cgroups(dir: &Path) -> Report {
    let mut report = Report::default();
    let what = format!("cgroup {}", dir.display());
    if let Some(removed) = report.outcome(&what, cgroup::remove_tree(dir, RMDIR_DEADLINE)) {
        if !removed.is_empty() {
            report
                .removed
                .push(format!("{what} ({} directories)", removed.len()));
        }
    }
    report
}

fn remove_netns(name: &str) -> Report {
    let mut report = Report::default();
    if !name.starts_with(PREFIX) {
        report.failures.push(format!(
            "netns {name}: no {PREFIX} prefix; refusing to delete"
        ));
        return report;
    }
    if let Some(true) = report.outcome(format!("netns {name}"), netns::delete(name)) {
        report.removed.push(format!("netns {name}"));
    }
    report
}

/// Removes a directory tree whose own name carries the sandbox prefix.
fn remove_owned_dir(kind: &str, dir: &Path) -> Report {
    let mut report = Report::default();
    if !owned_path(dir) {
        report.failures.push(format!(
            "{kind} {}: no {PREFIX} prefix; refusing to delete",
            dir.display()
        ));
        return report;
    }
    if !dir.exists() {
        return report;
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => report.removed.push(format!("{kind} {}", dir.display())),
        // Another cleanup (a concurrent `sandbox down`) got there first.
        Err(_) if !dir.exists() => {}
        Err(e) => report
            .failures
            .push(format!("{kind} {}: removing: {e}", dir.display())),
    }
    report
}

fn owned_path(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX))
}

fn remove_file_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
