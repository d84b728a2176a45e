//! Processes inside the sandbox: spawning into a cgroup and a netns, and bounded waits on them.
//!
//! A child is placed in `pre_exec`: it first writes itself into the target cgroup's
//! `cgroup.procs`, then `setns`es into the target network namespace. Both files are opened
//! before the fork, so the child only runs `write(2)` and `setns(2)`, which are
//! async-signal-safe. The mount namespace stays the host's, so `/sys/fs/bpf` and the cgroup
//! mount remain visible (unlike `ip netns exec`, which remounts `/sys`).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{
    Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio,
};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tracing::debug;

/// Where a spawned process goes: a network namespace and a cgroup.
#[derive(Clone, Debug)]
pub struct Placement {
    pub netns_path: PathBuf,
    pub cgroup_dir: PathBuf,
}

/// A child shared between its [`Process`] handle and the sandbox that reaps it on teardown.
pub(crate) type SharedChild = Arc<Mutex<Child>>;

/// A process the sandbox spawned. Dropping the handle leaves the process running; the
/// sandbox kills and reaps it on teardown.
#[derive(Debug)]
pub struct Process {
    label: String,
    pid: u32,
    child: SharedChild,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Spawns `cmd` into `placement`; `label` names the process in errors and logs.
pub(crate) fn spawn(
    mut cmd: Command,
    placement: &Placement,
    label: &str,
) -> Result<(Process, SharedChild)> {
    let cgroup_procs = placement.cgroup_dir.join("cgroup.procs");
    let cgroup_file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&cgroup_procs)
        .with_context(|| format!("opening {}", cgroup_procs.display()))?;
    let netns_file = File::open(&placement.netns_path)
        .with_context(|| format!("opening netns {}", placement.netns_path.display()))?;
    let (cgroup_fd, netns_fd) = (cgroup_file.as_raw_fd(), netns_file.as_raw_fd());
    debug!(
        label,
        command = %describe(&cmd),
        netns = %placement.netns_path.display(),
        cgroup = %placement.cgroup_dir.display(),
        "spawn"
    );
    // SAFETY: the closure runs between fork and exec and only calls write(2) and setns(2) on
    // descriptors opened above (kept alive by `cgroup_file`/`netns_file` until spawn returns);
    // both calls are async-signal-safe, and reading errno allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // "0" moves the writing process itself.
            if libc::write(cgroup_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "spawning {label} into cgroup {} and netns {}",
            placement.cgroup_dir.display(),
            placement.netns_path.display()
        )
    })?;
    drop((cgroup_file, netns_file));
    let process = Process::new(label, child);
    let shared = Arc::clone(&process.child);
    Ok((process, shared))
}

impl Process {
    fn new(label: &str, mut child: Child) -> Process {
        Process {
            label: label.to_string(),
            pid: child.id(),
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child: Arc::new(Mutex::new(child)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child's stdin, if it was configured as piped and not taken.
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Lines of the (piped) stdout, read by a background thread so reads can time out.
    pub fn stdout_lines(&mut self) -> Result<OutputLines> {
        let stdout = self
            .stdout
            .take()
            .with_context(|| format!("{}: stdout is not piped or already taken", self.label))?;
        Ok(OutputLines::spawn(&self.label, stdout))
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        lock(&self.child)
            .try_wait()
            .with_context(|| format!("waiting for {}", self.label))
    }

    /// Waits up to `timeout` for the process to exit; an error if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<ExitStatus> {
        wait_until(&self.child, Instant::now() + timeout)
            .with_context(|| format!("{} (pid {})", self.label, self.pid))?
            .ok_or_else(|| {
                anyhow!(
                    "{} (pid {}) still running after {timeout:?}",
                    self.label,
                    self.pid
                )
            })
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs. Returns how the process ended.
    pub fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        {
            let mut child = lock(&self.child);
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            // SAFETY: the child is not reaped yet (checked under the lock), so its pid cannot
            // have been reused; kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        }
        match wait_until(&self.child, Instant::now() + grace)? {
            Some(status) => Ok(status),
            None => self.kill(),
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&self) -> Result<ExitStatus> {
        kill_and_reap(&self.child).with_context(|| format!("killing {}", self.label))
    }

    /// Waits up to `timeout` for exit while collecting piped stdout and stderr. On timeout
    /// the process is killed and the error includes what it printed so far.
    pub fn wait_with_output(mut self, timeout: Duration) -> Result<Output> {
        let stdout = self.stdout.take().map(Capture::spawn);
        let stderr = self.stderr.take().map(Capture::spawn);
        drop(self.stdin.take());
        let status = wait_until(&self.child, Instant::now() + timeout)?;
        let finished = status.is_some();
        let status = match status {
            Some(status) => status,
            None => kill_and_reap(&self.child)?,
        };
        // A grandchild may still hold the pipes open: give the readers a bounded moment.
        let drain_deadline = Instant::now() + Duration::from_secs(2);
        let output = Output {
            status,
            stdout: stdout.map(|c| c.finish(drain_deadline)).unwrap_or_default(),
            stderr: stderr.map(|c| c.finish(drain_deadline)).unwrap_or_default(),
        };
        if !finished {
            bail!(
                "{} did not finish within {timeout:?}; killed. stdout: {} stderr: {}",
                self.label,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }
}

/// Lines from a child's output, with bounded waits.
pub struct OutputLines {
    label: String,
    lines: Receiver<io::Result<String>>,
}

impl OutputLines {
    fn spawn(label: &str, source: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(source).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        OutputLines {
            label: label.to_string(),
            lines: rx,
        }
    }

    /// The next line, `None` at end of output; an error after `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Result<Option<String>> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                Ok(Some(line.with_context(|| {
                    format!("reading output of {}", self.label)
                })?))
            }
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => {
                bail!("{} printed no line within {timeout:?}", self.label)
            }
        }
    }

    /// Skips lines until one contains `needle`, within `timeout` overall; returns that line.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left)? {
                Some(line) if line.contains(needle) => return Ok(line),
                Some(_) => {}
                None => bail!("{} ended its output before printing {needle:?}", self.label),
            }
        }
    }
}

/// Runs a host command (no placement) to completion within `timeout`, capturing its output.
pub(crate) fn run_host(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let label = describe(&cmd);
    debug!(command = %label, "run");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().with_context(|| format!("running `{label}`"))?;
    Process::new(&label, child).wait_with_output(timeout)
}

/// A command line for logs and errors: program and arguments, space-separated.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<OsString> = vec![cmd.get_program().to_os_string()];
    parts.extend(cmd.get_args().map(|a| a.to_os_string()));
    parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a child has exited (and is reaped); a child busy in another thread counts as running.
pub(crate) fn has_exited(child: &SharedChild) -> bool {
    child
        .try_lock()
        .is_ok_and(|mut guard| matches!(guard.try_wait(), Ok(Some(_))))
}

/// SIGKILLs a child unless it already exited, and reaps it (bounded).
pub(crate) fn kill_and_reap(child: &SharedChild) -> Result<ExitStatus> {
    {
        let mut guard = lock(child);
        if let Some(status) = guard.try_wait()? {
            return Ok(status);
        }
        guard.kill().context("SIGKILL")?;
    }
    wait_until(child, Instant::now() + Duration::from_secs(5))?
        .ok_or_else(|| anyhow!("still not reaped 5s after SIGKILL (uninterruptible sleep?)"))
}

fn wait_until(child: &SharedChild, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = lock(child).try_wait().context("waitpid")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Output collected by a background thread, readable even if the writer never closes.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
}

impl Capture {
    fn spawn(mut source: impl Read + Send + 'static) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            // A read error ends the capture; what was read so far is still reported.
            while let Ok(n @ 1..) = source.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        Capture { buf, done }
    }

    fn finish(self, deadline: Instant) -> Vec<u8> {
        let _ = self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Locks a child; a panic elsewhere while holding the lock does not stop teardown.
fn lock(child: &SharedChild) -> MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
