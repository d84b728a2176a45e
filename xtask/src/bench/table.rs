//! The `redirect` benchmark's summary as a table for people.

use std::fmt::{self, Write as _};

use super::summary::{Attempt, DataPath, Summary};

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, s);
    out
}

fn write_summary(out: &mut String, s: &Summary) -> fmt::Result {
    let m = &s.method;
    writeln!(out, "Same-node pod-to-pod TCP: direct vs through the agent")?;
    writeln!(
        out,
        "  latency:    {} B request/response on {} connection, {:.1} s after a {:.1} s warmup",
        m.rr_message_bytes, m.connections, m.rr_seconds, m.rr_warmup_seconds
    )?;
    writeln!(
        out,
        "  throughput: bulk send on {} connection, {:.1} s",
        m.connections, m.bulk_seconds
    )?;
    writeln!(
        out,
        "  after a discarded {:.0} s settling round, each path measured {} times",
        m.settle_seconds, m.runs
    )?;
    writeln!(
        out,
        "  (runs interleaved a, b, c); the median run is shown;"
    )?;
    writeln!(out, "  ratios are to (a) measured in this same run")?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8}   {:>7} {:>7} {:>9}",
        "path", "p50 µs", "p99 µs", "Gbit/s", "p50 ×", "p99 ×", "Gbit/s ×"
    )?;
    for path in DataPath::ALL {
        let f = s.paths.get(path);
        writeln!(
            out,
            "{:<24} {:>8} {:>8} {:>8}   {:>7} {:>7} {:>9}",
            f.label,
            cell(f.p50_us, 1),
            cell(f.p99_us, 1),
            cell(f.gbit_per_s, 2),
            cell(f.p50_ratio, 2),
            cell(f.p99_ratio, 2),
            cell(f.throughput_ratio, 2),
        )?;
    }
    writeln!(out)?;
    writeln!(out, "all runs (p50 µs / p99 µs, then Gbit/s):")?;
    for path in DataPath::ALL {
        let f = s.paths.get(path);
        let latency = runs(&f.latency_runs, |l| {
            format!("{:.1}/{:.1}", l.p50_us, l.p99_us)
        });
        let throughput = runs(&f.throughput_runs, |t| format!("{:.2}", t.gbit_per_s));
        writeln!(out, "  {}  {latency:<36} {throughput}", path.tag())?;
    }
    writeln!(out)?;
    writeln!(out, "targets:")?;
    for t in &s.targets {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        let measured = match t.ratio {
            Some(r) => format!("{r:.2}×"),
            None => "no figure, every run failed".into(),
        };
        writeln!(out, "  {verdict}  {}: {measured}", t.description)?;
    }
    writeln!(out)?;
    writeln!(out, "route checks:")?;
    for path in DataPath::ALL {
        let f = s.paths.get(path);
        let verdict = if f.route_ok { "ok  " } else { "WARN" };
        writeln!(
            out,
            "  {verdict}  {}  {}",
            path.tag(),
            f.route_findings.join("; ")
        )?;
    }
    writeln!(out)?;
    let missed = s.targets.iter().filter(|t| !t.pass).count();
    if missed == 0 {
        writeln!(out, "result: all {} targets met", s.targets.len())?;
    } else {
        writeln!(
            out,
            "result: {missed} of {} targets MISSED (a measurement: the exit status stays 0)",
            s.targets.len()
        )?;
    }
    for w in &s.warnings {
        writeln!(out, "WARNING: {w}")?;
    }
    Ok(())
}

/// A figure with `decimals`, or `failed` when every run of its kind failed.
fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:.decimals$}"),
        None => "failed".into(),
    }
}

fn runs<T>(attempts: &[Attempt<T>], show: impl Fn(&T) -> String) -> String {
    attempts
        .iter()
        .map(|a| match a {
            Attempt::Measured(figures) => show(figures),
            Attempt::Failed { .. } => "failed".into(),
        })
        .collect::<Vec<_>>()
        .join("  ")
}
