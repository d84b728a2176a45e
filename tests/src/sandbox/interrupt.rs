//! Ctrl-C cleanup: live sandboxes register here, and SIGINT/SIGTERM tears them down.
//!
//! The signal handler only writes the signal number into a pipe (async-signal-safe); a
//! watcher thread reads it, tears down every registered sandbox from its record, and exits
//! with `128 + signal` (130 for Ctrl-C).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;

use anyhow::{anyhow, Result};

use super::claim::SandboxRecord;
use super::cleanup;

struct Registered {
    record: SandboxRecord,
    /// `keep()` was called: on a signal, release it instead of tearing it down.
    kept: bool,
}

static LIVE: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static SIGNAL_PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

fn live() -> MutexGuard<'static, Vec<Registered>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a sandbox, or replaces its record after it grew.
pub(crate) fn register(record: &SandboxRecord) {
    let mut live = live();
    match live.iter_mut().find(|r| r.record.name == record.name) {
        Some(entry) => entry.record = record.clone(),
        None => live.push(Registered {
            record: record.clone(),
            kept: false,
        }),
    }
}

pub(crate) fn mark_kept(name: &str) {
    if let Some(entry) = live().iter_mut().find(|r| r.record.name == name) {
        entry.kept = true;
    }
}

pub(crate) fn unregister(name: &str) {
    live().retain(|r| r.record.name != name);
}

/// Installs SIGINT and SIGTERM handlers that tear down this process's live sandboxes
/// (kept ones are released instead) and exit with `128 + signal`. Idempotent.
pub fn install_interrupt_cleanup() -> Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("installing the Ctrl-C cleanup: {e}"))
}

fn install() -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let [read_fd, write_fd] = fds;
    SIGNAL_PIPE_WRITE.store(write_fd, Ordering::SeqCst);
    thread::Builder::new()
        .name("ambit-sandbox-signals".into())
        .spawn(move || watch(read_fd))?;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we then set a
        // handler that only performs async-signal-safe work (one write(2)).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
    }
    Ok(())
}

extern "C" fn on_signal(signal: libc::c_int) {
    let byte = signal as u8;
    let fd = SIGNAL_PIPE_WRITE.load(Ordering::SeqCst);
    // SAFETY: write(2) is async-signal-safe; `byte` outlives the call.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

fn watch(read_fd: libc::c_int) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local we own from the pipe created in `install`.
        let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n == 0 {
            return;
        }
    }
    let signal = i32::from(byte);
    let entries: Vec<(SandboxRecord, bool)> =
        live().iter().map(|r| (r.record.clone(), r.kept)).collect();
    eprintln!(
        "ambit sandbox: signal {signal}, tearing down {} sandbox(es)",
        entries.len()
    );
    for (mut record, kept) in entries {
        if kept {
            record.owner = None;
            if let Err(e) = record.save() {
                eprintln!("ambit sandbox: releasing {}: {e:#}", record.name);
            }
            eprintln!(
                "ambit sandbox: kept {}; remove it with `cargo xtask sandbox down`",
                record.name
            );
            continue;
        }
        eprint!("{}", cleanup::teardown(&record, false));
    }
    std::process::exit(128 + signal);
}
