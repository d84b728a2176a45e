//! cgroup v2 directories of the sandbox: finding the mount, creating, emptying and removing them.
//!
//! Layout: `<cgroup2>/ambit-sandbox/<sandbox>/<node>/{agent,pods/<namespace>_<pod>}`. The node
//! directory is the subtree the node agent attaches its eBPF programs to.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::debug;

/// The directory under the cgroup2 mount that holds every sandbox; shared, never removed.
pub const SANDBOX_ROOT: &str = "ambit-sandbox";

/// Where cgroup2 is mounted: `/sys/fs/cgroup/unified` in hybrid mode, `/sys/fs/cgroup` in
/// unified mode. Read from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    find_cgroup2_mount(&mountinfo).context(
        "cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mountinfo); \
         mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`",
    )
}

/// The mount point of the first `cgroup2` filesystem in a mountinfo text.
fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional…] - fstype source …
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// `<cgroup2>/ambit-sandbox`.
pub fn sandbox_root() -> Result<PathBuf> {
    Ok(cgroup2_mount()?.join(SANDBOX_ROOT))
}

/// Creates a cgroup directory and its parents.
pub fn create(dir: &Path) -> Result<()> {
    debug!(dir = %dir.display(), "mkdir cgroup");
    fs::create_dir_all(dir).with_context(|| format!("creating cgroup {}", dir.display()))
}

/// Every process id in `dir` and the cgroups below it.
pub fn procs_in_tree(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for cgroup in tree_deepest_first(dir) {
        if let Ok(text) = fs::read_to_string(cgroup.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    pids
}

/// Kills every process in the tree (`cgroup.kill`, then SIGKILL for stragglers) and waits,
/// up to `deadline`, for the tree to be empty. Returns the pids that were still there.
pub fn kill_tree(dir: &Path, deadline: Duration) -> Result<Vec<u32>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let found = procs_in_tree(dir);
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        if let Err(e) = fs::write(&kill_file, "1") {
            debug!(file = %kill_file.display(), error = %e, "cgroup.kill failed, signalling pids");
        }
    }
    let start = Instant::now();
    loop {
        let left = procs_in_tree(dir);
        if left.is_empty() {
            return Ok(found);
        }
        if start.elapsed() > deadline {
            bail!(
                "processes {left:?} are still in cgroup {} after SIGKILL",
                dir.display()
            );
        }
        for pid in left {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                continue;
            };
            // SAFETY: kill(2) has no memory-safety preconditions; the pid was read from a
            // cgroup this sandbox created, so it names a process the sandbox placed there.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The cgroup directories at and below `dir`, children before parents.
pub fn tree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_post_order(dir, &mut out);
    out
}

fn collect_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_post_order(&entry.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// Removes `dir` and every cgroup below it, deepest first, retrying while the kernel still
/// reports the cgroup busy (exiting processes). Returns the directories removed.
pub fn remove_tree(dir: &Path, deadline: Duration) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for cgroup in tree_deepest_first(dir) {
        let start = Instant::now();
        loop {
            match fs::remove_dir(&cgroup) {
                Ok(()) => {
                    debug!(dir = %cgroup.display(), "rmdir cgroup");
                    removed.push(cgroup.clone());
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if start.elapsed() < deadline => {
                    debug!(dir = %cgroup.display(), error = %e, "rmdir cgroup: retrying");
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("removing cgroup {}", cgroup.display()))
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hybrid_cgroup2_mount() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";
        assert_eq!(
            find_cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_the_unified_cgroup2_mount() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn reports_no_mount_without_cgroup2() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(find_cgroup2_mount(text), None);
    }
}
