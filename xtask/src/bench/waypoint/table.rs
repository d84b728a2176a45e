//! The `waypoint` benchmark's summary as a table for people.

use std::fmt::{self, Write as _};

use super::super::common::{cell, runs, write_verdicts, RouteRow, TargetRow};
use super::summary::{EnvoyStatus, PathFigures, ProxyPath, ProxyRss, Summary};

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, s);
    out
}

fn write_summary(out: &mut String, s: &Summary) -> fmt::Result {
    let m = &s.method;
    let envoy = match &s.envoy {
        EnvoyStatus::Used { version } => format!("Envoy {version}"),
        EnvoyStatus::Absent { .. } => "no Envoy (see the warning)".into(),
    };
    writeln!(
        out,
        "Waypoint L7: direct vs ambit-waypoint vs {envoy}, on 127.0.0.1"
    )?;
    writeln!(out, "  route:      {}", m.route)?;
    writeln!(
        out,
        "  latency:    {} requests offered at {} req/s (open loop), from when each was due",
        m.load_requests, m.offered_rps
    )?;
    writeln!(
        out,
        "  req/s:      {} requests as fast as answered (closed loop); {} connections (h1) or \
         streams on one connection (h2)",
        m.max_requests, m.concurrency
    )?;
    writeln!(out, "  per core:   {}", m.rps_per_core)?;
    writeln!(out, "  pinning:    {}", m.pinning)?;
    if let Some(load) = m.load_average_before {
        writeln!(out, "  load average before the bench: {load:.2}")?;
    }
    writeln!(
        out,
        "  after a discarded settling round, each path measured {} times (runs interleaved \
         a, b, c, a, b, c, …);",
        m.runs
    )?;
    writeln!(out, "  the median run is shown; ratios are to (a)")?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8} {:>11}   {:>7} {:>6} {:>6}",
        "path", "req/s", "p50 ms", "p99 ms", "req/s/core", "req/s ×", "p50 ×", "p99 ×"
    )?;
    for p in &s.protocols {
        for path in ProxyPath::ALL {
            if let Some(f) = p.path(path) {
                write_path(out, p.protocol.tag(), f)?;
            }
        }
    }
    writeln!(out)?;
    if s.protocols.iter().any(|p| p.waypoint_vs_envoy.is_some()) {
        writeln!(out, "waypoint ÷ Envoy:   p99 ×   req/s per core ×")?;
        for p in &s.protocols {
            if let Some(vs) = p.waypoint_vs_envoy {
                writeln!(
                    out,
                    "  {}               {:>6}   {:>16}",
                    p.protocol.tag(),
                    cell(vs.p99_ratio, 2),
                    cell(vs.rps_per_core_ratio, 2)
                )?;
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "proxy RSS (VmRSS, MB):   idle   load peak")?;
    write_rss(out, "ambit-waypoint", &s.waypoint_rss)?;
    if let Some(rss) = &s.envoy_rss {
        write_rss(out, "Envoy", rss)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "all runs (p50/p99 ms at the offered load, then req/s@proxy cores):"
    )?;
    for p in &s.protocols {
        for path in ProxyPath::ALL {
            let Some(f) = p.path(path) else { continue };
            let load = runs(&f.load_runs, |l| format!("{:.3}/{:.3}", l.p50_ms, l.p99_ms));
            let max = runs(&f.max_runs, |m| match m.proxy_cores {
                Some(cores) => format!("{:.0}@{cores:.2}", m.rps),
                None => format!("{:.0}", m.rps),
            });
            writeln!(
                out,
                "  {} {}  {load:<44} {max}",
                p.protocol.tag(),
                path.tag()
            )?;
        }
    }
    writeln!(out)?;
    let targets: Vec<TargetRow> = s
        .targets
        .iter()
        .map(|t| TargetRow {
            pass: t.pass,
            description: &t.description,
            measured: match t.value {
                Some(v) => format!("{v:.2}×"),
                None => "no figure".into(),
            },
        })
        .collect();
    let routes = s.routes.iter().map(|r| RouteRow {
        tag: r.path.tag(),
        ok: r.ok,
        findings: &r.findings,
    });
    write_verdicts(out, &targets, routes, &s.warnings)
}

fn write_path(out: &mut String, protocol: &str, f: &PathFigures) -> fmt::Result {
    writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8} {:>11}   {:>7} {:>6} {:>6}",
        format!("{protocol} {}", f.label),
        cell(f.rps, 0),
        cell(f.p50_ms, 3),
        cell(f.p99_ms, 3),
        f.rps_per_core
            .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
        f.rps_ratio
            .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
        f.p50_ratio
            .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
        f.p99_ratio
            .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
    )
}

fn write_rss(out: &mut String, proxy: &str, rss: &ProxyRss) -> fmt::Result {
    writeln!(
        out,
        "  {proxy:<20} {:>7.1}   {:>9.1}",
        rss.idle_mb, rss.load_peak_mb
    )
}
