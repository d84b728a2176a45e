//! The `tunnel` benchmark's summary as a table for people.

use std::fmt::{self, Write as _};

use super::super::common::{cell, runs};
use super::summary::{AgentRss, CrossPath, Summary};

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, s);
    out
}

fn write_summary(out: &mut String, s: &Summary) -> fmt::Result {
    let m = &s.method;
    writeln!(
        out,
        "Cross-node pod-to-pod TCP: direct vs through the HBONE tunnel"
    )?;
    writeln!(
        out,
        "  latency:    {} B request/response on 1 connection, {:.1} s after a {:.1} s warmup",
        m.rr_message_bytes, m.rr_seconds, m.rr_warmup_seconds
    )?;
    writeln!(
        out,
        "  throughput: bulk send on 1 connection, {:.1} s",
        m.bulk_seconds
    )?;
    writeln!(out, "  conns/s:    {}", m.connect_rate)?;
    writeln!(
        out,
        "  after a discarded {:.0} s settling round, each path measured {} times (runs",
        m.settle_seconds, m.runs
    )?;
    writeln!(
        out,
        "  interleaved a, b, a, b, …); the median run is shown; ratios are to (a)"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>7} {:>8}   {:>6} {:>6} {:>8} {:>8}",
        "path", "p50 µs", "p99 µs", "Gbit/s", "conns/s", "p50 ×", "p99 ×", "Gbit/s ×", "conns ×"
    )?;
    for path in CrossPath::ALL {
        let f = s.paths.get(path);
        writeln!(
            out,
            "{:<24} {:>8} {:>8} {:>7} {:>8}   {:>6} {:>6} {:>8} {:>8}",
            f.label,
            cell(f.p50_us, 1),
            cell(f.p99_us, 1),
            cell(f.gbit_per_s, 2),
            cell(f.conns_per_s, 0),
            cell(f.p50_ratio, 2),
            cell(f.p99_ratio, 2),
            cell(f.throughput_ratio, 2),
            cell(f.conns_ratio, 2),
        )?;
    }
    writeln!(out)?;
    writeln!(out, "added p50 latency: {} µs", cell(s.added_p50_us, 1))?;
    writeln!(out, "agent RSS (VmRSS, MB):    idle   load peak   after")?;
    for (node, rss) in [("node1", &s.agent_rss.node1), ("node2", &s.agent_rss.node2)] {
        write_rss(out, node, rss)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "all runs (p50 µs / p99 µs, then Gbit/s, then conns/s):"
    )?;
    for path in CrossPath::ALL {
        let f = s.paths.get(path);
        let latency = runs(&f.latency_runs, |l| {
            format!("{:.1}/{:.1}", l.p50_us, l.p99_us)
        });
        let throughput = runs(&f.throughput_runs, |t| format!("{:.2}", t.gbit_per_s));
        let connect = runs(&f.connect_runs, |c| format!("{:.0}", c.conns_per_s));
        writeln!(
            out,
            "  {}  {latency:<40} {throughput:<20} {connect}",
            path.tag()
        )?;
    }
    let startup = |path: CrossPath| {
        let f = s.paths.get(path);
        runs(&f.connect_runs, |c| {
            format!("{:.0}", c.one_connection_seconds * 1000.0)
        })
    };
    writeln!(
        out,
        "  conns/s includes the client's start-up; a 1-connection run took (ms): (a) {}  (b) {}",
        startup(CrossPath::Direct),
        startup(CrossPath::Tunnel)
    )?;
    writeln!(out)?;
    writeln!(out, "targets:")?;
    for t in &s.targets {
        let verdict = if t.pass { "PASS" } else { "FAIL" };
        let measured = match t.value {
            Some(v) if t.unit == "×" => format!("{v:.2}×"),
            Some(v) => format!("{v:.1} {}", t.unit),
            None => "no figure".into(),
        };
        writeln!(out, "  {verdict}  {}: {measured}", t.description)?;
    }
    writeln!(out)?;
    writeln!(out, "route checks:")?;
    for path in CrossPath::ALL {
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

fn write_rss(out: &mut String, node: &str, rss: &AgentRss) -> fmt::Result {
    writeln!(
        out,
        "  {node}'s agent              {:>6.1}   {:>9.1}   {:>5.1}",
        rss.idle_mb, rss.load_peak_mb, rss.after_mb
    )
}
