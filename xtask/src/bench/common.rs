//! Pieces every sandbox benchmark needs, whatever its paths: keeping a failed client run as a
//! finding, picking the median run, ratios that survive a missing figure, noticing other
//! sandboxes competing for the CPUs, and the cells and closing sections of the tables.
//!
//! Both `bench redirect` and `bench tunnel` use these.

use std::fmt::{self, Write as _};
use std::path::Path;

use ambit_e2e::sandbox::addressing::fabric_netns;
use ambit_e2e::sandbox::PREFIX;

use super::summary::{Attempt, Latency, Throughput};

/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A client that failed is a finding about the path: kept, with its error chain on one line.
pub fn attempt<T>(result: anyhow::Result<T>) -> Attempt<T> {
    match result {
        Ok(figures) => Attempt::Measured(figures),
        Err(e) => Attempt::Failed {
            error: format!("{e:#}"),
        },
    }
}

/// The errors of the failed runs, in run order.
pub fn errors<T>(attempts: &[Attempt<T>]) -> Vec<&str> {
    attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Measured(_) => None,
            Attempt::Failed { error } => Some(error.as_str()),
        })
        .collect()
}

/// Of the successful runs, the one in the middle when sorted by `key` (the upper middle for
/// an even count); `None` when every run failed.
pub fn median_by<T: Copy>(attempts: &[Attempt<T>], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut measured: Vec<T> = attempts
        .iter()
        .filter_map(|a| match a {
            Attempt::Measured(figures) => Some(*figures),
            Attempt::Failed { .. } => None,
        })
        .collect();
    measured.sort_by(|a, b| key(a).total_cmp(&key(b)));
    measured.get(measured.len() / 2).copied()
}

/// `value / base`, or `None` when either is missing.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    Some(value? / base?)
}

/// A warning naming how many runs of a kind failed and the first error.
pub fn failures<T>(tag: &str, kind: &str, attempts: &[Attempt<T>]) -> Option<String> {
    let errors = errors(attempts);
    let first = errors.first()?;
    let (failed, total) = (errors.len(), attempts.len());
    let consequence = if failed == total {
        "no figure".to_string()
    } else {
        format!("the median is of the other {}", total - failed)
    };
    Some(format!(
        "{tag} {kind} failed in {failed} of {total} runs ({consequence}): {first}"
    ))
}

/// Sandboxes other than `mine` (tests running meanwhile), which compete for the CPUs.
pub fn other_sandboxes(mine: &str) -> Vec<String> {
    let mine = fabric_netns(mine);
    let Ok(entries) = std::fs::read_dir(Path::new(NETNS_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(PREFIX) && *name != mine)
        .filter_map(|name| name.strip_suffix("-fabric").map(String::from))
        .collect()
}

/// The warning a benchmark prints when other sandboxes were live while it measured.
pub fn other_sandboxes_warning(others: &[String]) -> Option<String> {
    (!others.is_empty()).then(|| {
        format!(
            "other sandboxes were live during the measurements ({}): tests running meanwhile \
             share the CPUs, so these figures are noisier than usual",
            others.join(", ")
        )
    })
}

/// A figure with `decimals`, or `failed` when every run of its kind failed.
pub fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "failed".into(),
    }
}

/// Every run of a kind on one line: `show` for a measured run, `failed` otherwise.
pub fn runs<T>(attempts: &[Attempt<T>], show: impl Fn(&T) -> String) -> String {
    attempts
        .iter()
        .map(|a| match a {
            Attempt::Measured(figures) => show(figures),
            Attempt::Failed { .. } => "failed".into(),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Every rr run on one line, as `p50/p99` in µs.
pub fn latency_runs(attempts: &[Attempt<Latency>]) -> String {
    runs(attempts, |l| format!("{:.1}/{:.1}", l.p50_us, l.p99_us))
}

/// Every bulk run on one line, in Gbit/s.
pub fn throughput_runs(attempts: &[Attempt<Throughput>]) -> String {
    runs(attempts, |t| format!("{:.2}", t.gbit_per_s))
}

/// One line of a table's `targets:` section.
pub struct TargetRow<'a> {
    pub pass: bool,
    pub description: &'a str,
    /// The measured figure as shown, or why there is none.
    pub measured: String,
}

/// One line of a table's `route checks:` section.
pub struct RouteRow<'a> {
    /// `(a)`, `(b)`, …
    pub tag: &'a str,
    pub ok: bool,
    pub findings: &'a [String],
}

/// The end of every benchmark's table: the targets with their verdicts, the route checks, the
/// result line and the warnings.
pub fn write_verdicts<'a>(
    out: &mut String,
    targets: &[TargetRow],
    routes: impl IntoIterator<Item = RouteRow<'a>>,
    warnings: &[String],
) -> fmt::Result {
    writeln!(out, "targets:")?;
    for t in targets {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        writeln!(out, "  {verdict}  {}: {}", t.description, t.measured)?;
    }
    writeln!(out)?;
    writeln!(out, "route checks:")?;
    for r in routes {
        let verdict = if r.ok { "ok  " } else { "WARN" };
        writeln!(out, "  {verdict}  {}  {}", r.tag, r.findings.join("; "))?;
    }
    writeln!(out)?;
    let missed = targets.iter().filter(|t| !t.pass).count();
    if missed == 0 {
        writeln!(out, "result: all {} targets met", targets.len())?;
    } else {
        writeln!(
            out,
            "result: {missed} of {} targets MISSED (a measurement: the exit status stays 0)",
            targets.len()
        )?;
    }
    for w in warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    Ok(())
}
