//! The sandbox: a small cluster of nodes and pods built from network namespaces and cgroups.
//!
//! # Usage
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ambit_e2e::sandbox::Sandbox;
//! let mut sb = Sandbox::new("redirect-echo")?;
//! let node = sb.add_node("node1")?;
//! let client = sb.add_pod("node1", "shop", "client")?;
//! let out = sb.run_in_pod(&client, std::process::Command::new("true"), std::time::Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//! The [`Sandbox`] is a guard: dropping it (also while a test panics) kills its processes and
//! removes its namespaces, cgroups, bpffs pin dirs and scratch dir. See `addressing.rs` for
//! the names and addresses, and `tests/README.md` for the whole layout.

pub mod addressing;
mod cgroup;
mod claim;
mod cleanup;
mod interrupt;
mod netns;
mod preflight;
mod process;
mod topology;

use std::fs::{self, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

pub use addressing::{Ipv4Cidr, PREFIX};
pub use cgroup::cgroup2_mount;
pub use cleanup::{sandbox_down, Report, BPF_PIN_ROOT};
pub use interrupt::install_interrupt_cleanup;
pub use netns::{read_sysctl, run_inside, wait_for_listener};
pub use process::{OutputLines, Placement, Process};
pub use topology::{Node, Pod};

use claim::SandboxRecord;
use process::SharedChild;

/// A sandbox and everything it created; torn down on drop unless [`Sandbox::keep`] was called.
pub struct Sandbox {
    record: SandboxRecord,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    children: Mutex<Vec<(String, SharedChild)>>,
    kept: bool,
    torn_down: bool,
}

impl Sandbox {
    /// Claims a subnet and builds the fabric for a sandbox named after `label` (usually the
    /// test name). Fails, naming what is missing, without root, netns, cgroup v2 or iproute2.
    pub fn new(label: &str) -> Result<Sandbox> {
        let cgroup_mount = preflight::check()?;
        let record = claim::claim(label, &cgroup_mount.join(cgroup::SANDBOX_ROOT))?;
        interrupt::register(&record);
        let mut sandbox = Sandbox {
            record,
            nodes: Vec::new(),
            pods: Vec::new(),
            children: Mutex::new(Vec::new()),
            kept: false,
            torn_down: false,
        };
        tracing::info!(sandbox = %sandbox.name(), subnet = sandbox.record.subnet, "creating sandbox");
        let dir = &sandbox.record.scratch_dir;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        cgroup::create(&sandbox.record.cgroup_dir)?;
        sandbox.build_fabric()?;
        Ok(sandbox)
    }

    /// `ambit-sb-<label>-<subnet>`.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The subnet index `s` in every address of this sandbox.
    pub fn subnet(&self) -> u8 {
        self.record.subnet
    }

    /// A scratch directory for config files and logs; removed on teardown (kept after a
    /// panic, for its logs).
    pub fn dir(&self) -> &Path {
        &self.record.scratch_dir
    }

    /// The sandbox's cgroup directory, `<cgroup2>/ambit-sandbox/<name>`.
    pub fn cgroup_dir(&self) -> &Path {
        &self.record.cgroup_dir
    }

    /// The fabric namespace's name.
    pub fn fabric_netns(&self) -> String {
        addressing::fabric_netns(&self.record.name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The node with this short name.
    pub fn node(&self, short_name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.short_name == short_name)
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// The range service VIPs come from (`10.<s>.0.0/24`); nothing routes it.
    pub fn service_cidr(&self) -> Ipv4Cidr {
        addressing::service_cidr(self.record.subnet)
    }

    /// The `n`-th service VIP, `10.<s>.0.<n>`.
    pub fn service_ip(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.record.subnet, 0, n)
    }

    /// Spawns `cmd` inside a pod (its netns and cgroup). Killed on teardown.
    pub fn spawn_in_pod(&self, pod: &Pod, cmd: Command) -> Result<Process> {
        let placement = Placement {
            netns_path: pod.netns_path.clone(),
            cgroup_dir: pod.cgroup_dir.clone(),
        };
        self.spawn_at(&placement, cmd, &format!("pod {}", pod.id()))
    }

    /// Spawns `cmd` in a node's netns and its `agent` cgroup. Killed on teardown.
    pub fn spawn_in_node_agent(&self, node: &Node, cmd: Command) -> Result<Process> {
        let placement = Placement {
            netns_path: node.netns_path.clone(),
            cgroup_dir: node.agent_cgroup.clone(),
        };
        self.spawn_at(&placement, cmd, &format!("node {} agent", node.name))
    }

    /// Spawns `cmd` at an explicit placement; `label` names it in errors.
    pub fn spawn_at(&self, placement: &Placement, cmd: Command, label: &str) -> Result<Process> {
        let label = format!("{label}: {}", process::describe(&cmd));
        let (process, shared) = process::spawn(cmd, placement, &label)?;
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        // Forget children that already exited, so thousands of short commands stay cheap.
        children.retain(|(_, child)| !process::has_exited(child));
        children.push((label, shared));
        Ok(process)
    }

    /// Runs `cmd` in a pod to completion within `timeout`, capturing stdout and stderr
    /// (stdin is empty). A nonzero exit is returned, not an error; a timeout is an error.
    pub fn run_in_pod(&self, pod: &Pod, mut cmd: Command, timeout: Duration) -> Result<Output> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.spawn_in_pod(pod, cmd)?.wait_with_output(timeout)
    }

    /// Like [`Sandbox::run_in_pod`], in a node's namespace (and agent cgroup).
    pub fn run_in_node(&self, node: &Node, mut cmd: Command, timeout: Duration) -> Result<Output> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.spawn_in_node_agent(node, cmd)?
            .wait_with_output(timeout)
    }

    /// Sends `cmd`'s stdout and stderr to `<dir>/<label>.log` and returns that path.
    pub fn capture_to_log(&self, cmd: &mut Command, label: &str) -> Result<PathBuf> {
        let path = self.dir().join(format!("{label}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let copy = file
            .try_clone()
            .with_context(|| format!("duplicating {}", path.display()))?;
        cmd.stdout(file).stderr(copy);
        Ok(path)
    }

    /// Leaves everything (namespaces, cgroups, running processes) in place on drop and prints
    /// how to remove it later: `cargo xtask sandbox down`.
    pub fn keep(&mut self) {
        self.kept = true;
        interrupt::mark_kept(&self.record.name);
    }

    /// Tears the sandbox down now and reports what was removed.
    pub fn teardown(mut self) -> Report {
        self.teardown_now()
    }

    /// Writes a grown record to disk and to the Ctrl-C registry, before the object exists.
    fn record_netns(&mut self, name: &str) -> Result<()> {
        self.record.netns.push(name.to_string());
        self.record.save()?;
        interrupt::register(&self.record);
        Ok(())
    }

    fn teardown_now(&mut self) -> Report {
        self.torn_down = true;
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failures = Vec::new();
        for (label, child) in children {
            if let Err(e) = process::kill_and_reap(&child) {
                failures.push(format!("{label}: {e:#}"));
            }
        }
        let keep_scratch = std::thread::panicking();
        let mut report = cleanup::teardown(&self.record, keep_scratch);
        report.failures.extend(failures);
        interrupt::unregister(&self.record.name);
        if keep_scratch {
            eprintln!(
                "sandbox {}: torn down after a panic; logs kept in {}",
                self.name(),
                self.dir().display()
            );
        }
        report
    }

    fn release(&mut self) {
        self.torn_down = true;
        self.record.owner = None;
        if let Err(e) = self.record.save() {
            eprintln!("sandbox {}: releasing its record: {e:#}", self.name());
        }
        interrupt::unregister(&self.record.name);
        eprintln!(
            "sandbox {} kept (netns {}-*, scratch dir {}); remove it with `cargo xtask sandbox down`",
            self.name(),
            self.name(),
            self.dir().display()
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if self.kept {
            self.release();
            return;
        }
        let report = self.teardown_now();
        if !report.is_clean() {
            eprintln!("sandbox {}: teardown incomplete:\n{report}", self.name());
        }
    }
}
