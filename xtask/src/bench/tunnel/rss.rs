//! Resident memory of the node agents: their pids from the node's agent cgroup, `VmRSS` from
//! `/proc/<pid>/status`, sampled idle once and under load by a thread every [`INTERVAL`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How often the load sampler reads `VmRSS`.
const INTERVAL: Duration = Duration::from_millis(100);
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
        let status = format!("/proc/{}/status", self.pid);
        let text = std::fs::read_to_string(&status)
            .with_context(|| format!("reading {status} (the agent on {})", self.node))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no VmRSS line in {status}"))
    }
}

/// Samples the agents' `VmRSS` on a thread until stopped; keeps each agent's peak.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Vec<u64>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(agents: &[Agent]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(vec![0; agents.len()]));
        let thread = {
            let (stop, peaks, agents) = (stop.clone(), peaks.clone(), agents.to_vec());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (i, agent) in agents.iter().enumerate() {
                        if let (Ok(kb), Ok(mut peaks)) = (agent.rss_kb(), peaks.lock()) {
                            peaks[i] = peaks[i].max(kb);
                        }
                    }
                    std::thread::sleep(INTERVAL);
                }
            })
        };
        Sampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    /// Each agent's peak `VmRSS` in kB, in the order given to [`Sampler::start`] (0 when
    /// never read).
    pub fn stop(mut self) -> Vec<u64> {
        self.halt();
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}
