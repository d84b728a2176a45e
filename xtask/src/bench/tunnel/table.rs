//! The `tunnel` benchmark's summary as a table for people.

use std::fmt::{self, Write as _};

use super::super::common::{
    cell, latency_runs, runs, throughput_runs, write_verdicts, RouteRow, TargetRow,
};
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
    writeln!(
        out,
        "agent CPU in bulk (node1 + node2, utime + stime): {} s/GB  (runs: {})",
        cell(s.paths.tunnel.agent_cpu_s_per_gb, 2),
        runs(&s.paths.tunnel.bulk_cpu_runs, |c| format!(
            "{:.2} = {:.2} + {:.2} s for {:.2} GB",
            c.seconds_per_gb, c.node1_seconds, c.node2_seconds, c.gigabytes
        ))
    )?;
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
        let latency = latency_runs(&f.latency_runs);
        let throughput = throughput_runs(&f.throughput_runs);
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
    let targets: Vec<TargetRow> = s
        .targets
        .iter()
        .map(|t| TargetRow {
            pass: t.pass,
            description: &t.description,
            measured: match t.value {
                Some(v) if t.unit == "×" => format!("{v:.2}×"),
                Some(v) => format!("{v:.1} {}", t.unit),
                None => "no figure".into(),
            },
        })
        .collect();
    let routes = CrossPath::ALL.map(|path| {
        let f = s.paths.get(path);
        RouteRow {
            tag: path.tag(),
            ok: f.route_ok,
            findings: &f.route_findings,
        }
    });
    write_verdicts(out, &targets, routes, &s.warnings)
}

fn write_rss(out: &mut String, node: &str, rss: &AgentRss) -> fmt::Result {
    writeln!(
        out,
        "  {node}'s agent              {:>6.1}   {:>9.1}   {:>5.1}",
        rss.idle_mb, rss.load_peak_mb, rss.after_mb
    )
}
