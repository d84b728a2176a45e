//! The gate every privileged test passes first: root, or an explicit opt-out.

use std::io::Write;
use std::sync::Once;

use crate::sandbox::install_interrupt_cleanup;

/// Set to `1` to skip tests that need root (they print a SKIPPED line and pass).
pub const SKIP_PRIVILEGED_ENV: &str = "AMBIT_E2E_SKIP_PRIVILEGED";

/// Returns `true` if a privileged test may run: the process is root. Returns `false` (after
/// printing `SKIPPED`) when `AMBIT_E2E_SKIP_PRIVILEGED=1`. Panics otherwise: a test that
/// needs root never passes silently. Also sets up logging (`RUST_LOG`) and the Ctrl-C
/// cleanup of sandboxes.
///
/// ```no_run
/// if !ambit_e2e::require_privileged() {
///     return;
/// }
/// ```
pub fn require_privileged() -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var(SKIP_PRIVILEGED_ENV).is_ok_and(|v| v == "1") {
        // Straight to stderr, past the test harness's capture, so the skip is visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ({SKIP_PRIVILEGED_ENV} set): {test} needs root"
        );
        return false;
    }
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{test} needs root (effective uid {euid}): run `sudo -E cargo xtask test`, \
         or set {SKIP_PRIVILEGED_ENV}=1 to skip privileged tests"
    );
    init_logging();
    if let Err(e) = install_interrupt_cleanup() {
        panic!("{e:#}");
    }
    true
}

/// Logs to the test's captured output; `RUST_LOG=debug` shows every `ip` command.
fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed by the test binary; keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
