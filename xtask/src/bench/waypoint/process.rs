//! The processes a `bench waypoint` run starts on 127.0.0.1, and what it reads of them from
//! `/proc`: `VmRSS` (sampled for its peak by a thread) and CPU time (utime + stime, all
//! threads).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::shell::describe;

/// How often the sampler reads `VmRSS`.
const RSS_INTERVAL: Duration = Duration::from_millis(100);

/// A started process, killed and reaped on drop.
pub struct Running {
    pub label: String,
    child: Child,
}

impl Running {
    /// Starts `cmd` with stdin closed; stdout piped when `piped`, else discarded.
    pub fn start(label: &str, mut cmd: Command, piped: bool) -> Result<Running> {
        cmd.stdin(Stdio::null())
            .stdout(if piped { Stdio::piped() } else { Stdio::null() });
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {}", describe(&cmd)))?;
        Ok(Running {
            label: label.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line of stdout, within `timeout`.
    pub fn first_line(&mut self, timeout: Duration) -> Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .with_context(|| format!("{}'s stdout is not piped", self.label))?;
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = send.send(line);
            // Keep reading so that the process never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        match receive.recv_timeout(timeout) {
            Ok(line) if !line.is_empty() => Ok(line),
            _ => bail!("{} printed nothing within {timeout:?}", self.label),
        }
    }

    /// Fails when the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited ({status})", self.label),
            None => Ok(()),
        }
    }

    /// `VmRSS` in kB.
    pub fn rss_kb(&self) -> Result<u64> {
        rss_kb(self.pid()).with_context(|| format!("reading the RSS of {}", self.label))
    }

    /// User plus system CPU time of all its threads so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid());
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path} ({})", self.label))?;
        let ticks = cpu_ticks(&text).with_context(|| format!("no utime/stime in {path}"))?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(ticks as f64 / per_second.max(1) as f64)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&status).with_context(|| format!("reading {status}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no VmRSS line in {status}"))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name in field 2 may hold spaces and parentheses, so fields count from its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Samples processes' `VmRSS` on a thread until stopped; keeps each one's peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Vec<u64>>>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(vec![0; pids.len()]));
        let thread = {
            let (stop, peaks) = (stop.clone(), peaks.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (i, pid) in pids.iter().enumerate() {
                        if let (Ok(kb), Ok(mut peaks)) = (rss_kb(*pid), peaks.lock()) {
                            peaks[i] = peaks[i].max(kb);
                        }
                    }
                    std::thread::sleep(RSS_INTERVAL);
                }
            })
        };
        RssSampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    /// Each process's peak `VmRSS` in kB, in the order given to [`RssSampler::start`].
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

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_fields_from_the_end_of_the_command_name() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1130 0 0 0 \
                    250 75 0 0 20 0 3 0 100 1000 200";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_kb(std::process::id()).unwrap() > 0);
    }
}
