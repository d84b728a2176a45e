//! The `redirect` benchmark's summary as a table for people.

use std::fmt::{self, Write as _};

use super::common::{cell, latency_runs, throughput_runs, write_verdicts, RouteRow, TargetRow};
use super::summary::{DataPath, Summary};

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
        let latency = latency_runs(&f.latency_runs);
        let throughput = throughput_runs(&f.throughput_runs);
        writeln!(out, "  {}  {latency:<36} {throughput}", path.tag())?;
    }
    writeln!(out)?;
    let targets: Vec<TargetRow> = s
        .targets
        .iter()
        .map(|t| TargetRow {
            pass: t.pass,
            description: &t.description,
            measured: match t.ratio {
                Some(r) => format!("{r:.2}×"),
                None => "no figure, every run failed".into(),
            },
        })
        .collect();
    let routes = DataPath::ALL.map(|path| {
        let f = s.paths.get(path);
        RouteRow {
            tag: path.tag(),
            ok: f.route_ok,
            findings: &f.route_findings,
        }
    });
    write_verdicts(out, &targets, routes, &s.warnings)
}
