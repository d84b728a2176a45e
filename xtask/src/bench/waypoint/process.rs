//! The processes a `bench waypoint` run starts on 127.0.0.1, and what it reads of them from
//! `/proc`: `VmRSS` (sampled for its peak by [`crate::bench::memory::RssSampler`]) and CPU
//! time (utime + stime, all threads).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::cpu_time::cpu_seconds;
use crate::bench::memory::rss_kb;
use crate::shell::describe;

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
        cpu_seconds(self.pid()).with_context(|| format!("the CPU time of {}", self.label))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
