//! The node agents whose memory and CPU time the bench reads: their pids from the node's
//! agent cgroup; `VmRSS` is read idle once and sampled under load by
//! [`crate::bench::memory::RssSampler`], CPU time around each bulk run.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::bench::cpu_time::cpu_seconds;
use crate::bench::memory::rss_kb;

/// The agent's executable name, as `/proc/<pid>/comm` shows it.
const AGENT_COMM: &str = "ambit-node";

/// One node's agent process.
#[derive(Clone, Debug)]
pub struct Agent {
    /// Short node name, e.g. `node1`.
    pub node: String,
    pub pid: u32,
}

impl Agent {
    /// The agent among the processes of `<agent_cgroup>/cgroup.procs` (clients run in the
    /// node's namespace may share the cgroup, so the executable name picks it out).
    pub fn find(node: &str, agent_cgroup: &Path) -> Result<Agent> {
        let procs = agent_cgroup.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs)
            .with_context(|| format!("reading {}", procs.display()))?;
        let agents: Vec<u32> = text
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == AGENT_COMM)
            })
            .collect();
        match agents.as_slice() {
            [pid] => Ok(Agent {
                node: node.to_string(),
                pid: *pid,
            }),
            [] => bail!("no {AGENT_COMM} process in {}", procs.display()),
            many => bail!(
                "{} {AGENT_COMM} processes in {}: {many:?}",
                many.len(),
                procs.display()
            ),
        }
    }

    /// `VmRSS` in kB.
    pub fn rss_kb(&self) -> Result<u64> {
        rss_kb(self.pid).with_context(|| format!("the agent on {}", self.node))
    }

    /// User plus system CPU time of all its threads so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid).with_context(|| format!("the agent on {}", self.node))
    }
}
