//! Resident memory of benchmarked processes: `VmRSS` from `/proc/<pid>/status`, read once or
//! sampled for its peak by a thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// How often [`RssSampler`] reads `VmRSS`.
const RSS_INTERVAL: Duration = Duration::from_millis(100);

/// `VmRSS` of process `pid`, in kB.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let status = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&status).with_context(|| format!("reading {status}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no VmRSS line in {status}"))
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
    fn this_process_has_a_resident_set_and_a_sampled_peak() {
        assert!(rss_kb(std::process::id()).unwrap() > 0);
        let sampler = RssSampler::start(vec![std::process::id()]);
        std::thread::sleep(RSS_INTERVAL * 2);
        assert!(sampler.stop()[0] > 0);
    }
}
