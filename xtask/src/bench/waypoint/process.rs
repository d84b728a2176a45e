//! The processes a `bench waypoint` run starts on 127.0.0.1, and what it reads of them from
//! `/proc`: `VmRSS` (sampled for its peak by [`crate::bench::memory::RssSampler`]) and CPU
//! time (utime + stime, all threads).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

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

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name in field 2 may hold spaces and parentheses, so fields count from its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
}
