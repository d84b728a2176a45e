//! The `waypoint` benchmark's verdicts: median runs, ratios to direct, RPS per proxy core,
//! the waypoint against Envoy, targets and route checks.
//!
//! No I/O here: `waypoint.rs` measures and hands over [`Measured`], `table.rs` renders the
//! [`Summary`], and `--json` serializes it as is. Without Envoy its figures are absent
//! (`null`), never zero, and the targets against it are not evaluated.

use serde::Serialize;

use super::super::common::{failures, median_by, ratio};
use super::super::summary::Attempt;

/// The waypoint's p99 at the offered load may be at most this multiple of Envoy's.
pub const P99_VS_ENVOY_LIMIT: f64 = 1.0;
/// The waypoint's requests/s per CPU-second must be at least this multiple of Envoy's.
pub const RPS_PER_CORE_VS_ENVOY_FLOOR: f64 = 1.5;
/// A 1-minute load average from this up, before the bench started anything, means other work
/// shared the CPUs.
pub const BUSY_LOAD_AVERAGE: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 over keep-alive connections.
    Http1,
    /// HTTP/2 with prior knowledge (h2c), streams on one connection.
    Http2,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

    pub fn tag(self) -> &'static str {
        match self {
            Protocol::Http1 => "h1",
            Protocol::Http2 => "h2",
        }
    }
}

/// The three ways the client reaches a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyPath {
    /// Straight to the v1 backend.
    Direct,
    /// Through `ambit-waypoint local`.
    Waypoint,
    /// Through Envoy with the same route.
    Envoy,
}

impl ProxyPath {
    pub const ALL: [ProxyPath; 3] = [ProxyPath::Direct, ProxyPath::Waypoint, ProxyPath::Envoy];

    pub fn label(self) -> &'static str {
        match self {
            ProxyPath::Direct => "(a) direct",
            ProxyPath::Waypoint => "(b) ambit-waypoint",
            ProxyPath::Envoy => "(c) Envoy",
        }
    }

    /// `(a)`, `(b)` or `(c)`.
    pub fn tag(self) -> &'static str {
        &self.label()[..3]
    }
}

/// A run at the fixed offered load (open loop).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Load {
    pub requests: u64,
    /// Answers per second over the run; below the offered rate when the path fell behind.
    pub answered_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A run as fast as answers come back (closed loop).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Max {
    pub requests: u64,
    pub rps: f64,
    /// The proxy's CPU-seconds per wall-second during the run; `None` on the direct path.
    pub proxy_cores: Option<f64>,
}

impl Max {
    /// Requests per second per core the proxy kept busy.
    pub fn rps_per_core(&self) -> Option<f64> {
        self.proxy_cores
            .filter(|cores| *cores > 0.0)
            .map(|cores| self.rps / cores)
    }
}

/// Every run of one protocol on one path.
#[derive(Clone, Debug, Default)]
pub struct PathRuns {
    pub load: Vec<Attempt<Load>>,
    pub max: Vec<Attempt<Max>>,
}

/// Which backend answered, read before the measured runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouteEvidence {
    /// `x-served-by` for a request with the matched header (`None`: no answer).
    pub tester_served_by: Option<String>,
    /// `x-served-by` for a request without it.
    pub default_served_by: Option<String>,
    /// How often v1 saw one `GET /status/503`: 1 + the retries.
    pub tries_for_503: Option<u64>,
}

/// One proxy's `VmRSS` in MB (10^6 bytes).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProxyRss {
    /// Started and configured, before any traffic.
    pub idle_mb: f64,
    /// Peak while the measured runs went on.
    pub load_peak_mb: f64,
}

/// The Envoy binary used, or why there is none.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvoyStatus {
    Used { version: String },
    Absent { reason: String },
}

/// How the figures were taken; echoed into the output so a number never travels without it.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub runs: usize,
    pub reported: &'static str,
    pub route: String,
    pub offered_rps: u32,
    pub load_requests: u64,
    pub max_requests: u64,
    /// HTTP/1.1 connections, or HTTP/2 streams on one connection, of every client run.
    pub concurrency: u32,
    pub pinning: String,
    pub rps_per_core: &'static str,
    pub rss: &'static str,
    /// `/proc/loadavg`'s 1-minute figure before the bench started anything.
    pub load_average_before: Option<f64>,
}

/// Everything one benchmark run measured; `envoy` fields are `None` without Envoy.
pub struct Measured {
    pub method: Method,
    pub envoy: EnvoyStatus,
    /// `[h1, h2]`, each `[direct, waypoint, envoy]`.
    pub runs: [[Option<PathRuns>; 3]; 2],
    pub routes: [Option<RouteEvidence>; 3],
    pub waypoint_rss: ProxyRss,
    pub envoy_rss: Option<ProxyRss>,
}

/// A path's reported figures (from its median runs) and ratios to direct.
#[derive(Clone, Debug, Serialize)]
pub struct PathFigures {
    pub label: &'static str,
    pub rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests/s per CPU-second of the proxy (median of the max runs); `None` on direct.
    pub rps_per_core: Option<f64>,
    pub rps_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub load_runs: Vec<Attempt<Load>>,
    pub max_runs: Vec<Attempt<Max>>,
}

/// The waypoint over Envoy, for one protocol.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct VsEnvoy {
    pub p99_ratio: Option<f64>,
    pub rps_per_core_ratio: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtocolFigures {
    pub protocol: Protocol,
    pub direct: PathFigures,
    pub waypoint: PathFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy: Option<PathFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint_vs_envoy: Option<VsEnvoy>,
}

impl ProtocolFigures {
    pub fn path(&self, path: ProxyPath) -> Option<&PathFigures> {
        match path {
            ProxyPath::Direct => Some(&self.direct),
            ProxyPath::Waypoint => Some(&self.waypoint),
            ProxyPath::Envoy => self.envoy.as_ref(),
        }
    }
}

/// A path's route evidence and what it shows.
#[derive(Clone, Debug, Serialize)]
pub struct RouteCheck {
    pub path: ProxyPath,
    pub evidence: RouteEvidence,
    pub findings: Vec<String>,
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub description: String,
    /// The measured ratio; `None` when a figure is missing (the target then fails).
    pub value: Option<f64>,
    pub limit: f64,
    pub pass: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub benchmark: &'static str,
    pub method: Method,
    pub envoy: EnvoyStatus,
    /// `[h1, h2]`.
    pub protocols: Vec<ProtocolFigures>,
    pub waypoint_rss: ProxyRss,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envoy_rss: Option<ProxyRss>,
    pub routes: Vec<RouteCheck>,
    pub targets: Vec<Target>,
    pub all_targets_met: bool,
    pub warnings: Vec<String>,
}

pub fn summarize(measured: Measured) -> Summary {
    let Measured {
        method,
        envoy,
        runs,
        routes,
        waypoint_rss,
        envoy_rss,
    } = measured;
    let mut warnings = Vec::new();
    if let Some(load) = method
        .load_average_before
        .filter(|l| *l >= BUSY_LOAD_AVERAGE)
    {
        warnings.push(format!(
            "the load average was {load:.1} before the bench started: other processes shared \
             the CPUs, so the proxies got only part of theirs and req/s and p99 are noisier \
             than usual (req/s per core, from CPU time, suffers least)"
        ));
    }
    if let EnvoyStatus::Absent { reason } = &envoy {
        warnings.push(format!(
            "Envoy could not be run, so there is no comparison with it: {reason}"
        ));
    }
    let protocols: Vec<ProtocolFigures> = Protocol::ALL
        .into_iter()
        .zip(runs)
        .map(|(protocol, [direct, waypoint, envoy])| {
            let direct = direct.unwrap_or_default();
            let base = figures(protocol, ProxyPath::Direct, &direct, None, &mut warnings);
            let waypoint = waypoint.unwrap_or_default();
            let waypoint = figures(
                protocol,
                ProxyPath::Waypoint,
                &waypoint,
                Some(&base),
                &mut warnings,
            );
            let envoy = envoy.map(|runs| {
                figures(
                    protocol,
                    ProxyPath::Envoy,
                    &runs,
                    Some(&base),
                    &mut warnings,
                )
            });
            let waypoint_vs_envoy = envoy.as_ref().map(|envoy| VsEnvoy {
                p99_ratio: ratio(waypoint.p99_ms, envoy.p99_ms),
                rps_per_core_ratio: ratio(waypoint.rps_per_core, envoy.rps_per_core),
            });
            ProtocolFigures {
                protocol,
                direct: base,
                waypoint,
                envoy,
                waypoint_vs_envoy,
            }
        })
        .collect();
    let routes: Vec<RouteCheck> = ProxyPath::ALL
        .into_iter()
        .zip(routes)
        .filter_map(|(path, evidence)| {
            let evidence = evidence?;
            let (findings, ok) = check_route(path, &evidence);
            if !ok {
                warnings.extend(findings.iter().map(|f| format!("{}: {f}", path.tag())));
            }
            Some(RouteCheck {
                path,
                evidence,
                findings,
                ok,
            })
        })
        .collect();
    let targets = targets(&protocols);
    Summary {
        benchmark: "waypoint",
        method,
        envoy,
        protocols,
        waypoint_rss,
        envoy_rss,
        routes,
        all_targets_met: targets.iter().all(|t| t.pass),
        targets,
        warnings,
    }
}

fn figures(
    protocol: Protocol,
    path: ProxyPath,
    runs: &PathRuns,
    base: Option<&PathFigures>,
    warnings: &mut Vec<String>,
) -> PathFigures {
    let tag = format!("{} {}", protocol.tag(), path.tag());
    warnings.extend(failures(&tag, "fixed-load run", &runs.load));
    warnings.extend(failures(&tag, "max-rps run", &runs.max));
    let load = median_by(&runs.load, |l| l.p99_ms);
    let rps = median_by(&runs.max, |m| m.rps).map(|m| m.rps);
    let rps_per_core = median_by(&runs.max, |m| m.rps_per_core().unwrap_or(f64::NAN))
        .and_then(|m| m.rps_per_core());
    let (p50_ms, p99_ms) = (load.map(|l| l.p50_ms), load.map(|l| l.p99_ms));
    PathFigures {
        label: path.label(),
        rps,
        p50_ms,
        p99_ms,
        rps_per_core,
        rps_ratio: base.and_then(|b| ratio(rps, b.rps)),
        p50_ratio: base.and_then(|b| ratio(p50_ms, b.p50_ms)),
        p99_ratio: base.and_then(|b| ratio(p99_ms, b.p99_ms)),
        load_runs: runs.load.clone(),
        max_runs: runs.max.clone(),
    }
}

fn targets(protocols: &[ProtocolFigures]) -> Vec<Target> {
    let mut targets = Vec::new();
    for p in protocols {
        let Some(vs) = p.waypoint_vs_envoy else {
            continue;
        };
        let tag = p.protocol.tag();
        targets.push(Target {
            name: format!("{tag}_p99_vs_envoy"),
            description: format!(
                "{tag}: waypoint p99 ≤ {P99_VS_ENVOY_LIMIT}× Envoy's at the offered load"
            ),
            value: vs.p99_ratio,
            limit: P99_VS_ENVOY_LIMIT,
            pass: vs.p99_ratio.is_some_and(|r| r <= P99_VS_ENVOY_LIMIT),
        });
        targets.push(Target {
            name: format!("{tag}_rps_per_core_vs_envoy"),
            description: format!(
                "{tag}: waypoint RPS per core ≥ {RPS_PER_CORE_VS_ENVOY_FLOOR}× Envoy's"
            ),
            value: vs.rps_per_core_ratio,
            limit: RPS_PER_CORE_VS_ENVOY_FLOOR,
            pass: vs
                .rps_per_core_ratio
                .is_some_and(|r| r >= RPS_PER_CORE_VS_ENVOY_FLOOR),
        });
    }
    targets
}

/// What the evidence shows about a path, and whether it is the route the path should take.
fn check_route(path: ProxyPath, r: &RouteEvidence) -> (Vec<String>, bool) {
    let mut findings = Vec::new();
    let mut ok = true;
    let mut expect = |holds: bool, finding: String| {
        ok &= holds;
        findings.push(finding);
    };
    let (tester_wanted, tries_wanted) = match path {
        ProxyPath::Direct => ("v1", 1),
        ProxyPath::Waypoint | ProxyPath::Envoy => {
            ("v2", 1 + u64::from(super::route::RETRY_ATTEMPTS))
        }
    };
    let shown = |s: &Option<String>| s.clone().unwrap_or_else(|| "no answer".into());
    expect(
        r.tester_served_by.as_deref() == Some(tester_wanted),
        format!(
            "x-user: tester → {} (want {tester_wanted})",
            shown(&r.tester_served_by)
        ),
    );
    expect(
        r.default_served_by.as_deref() == Some("v1"),
        format!("no header → {} (want v1)", shown(&r.default_served_by)),
    );
    expect(
        r.tries_for_503 == Some(tries_wanted),
        match r.tries_for_503 {
            Some(n) => format!("a 503 reached v1 {n} times (want {tries_wanted})"),
            None => "v1's hit count could not be read".into(),
        },
    );
    (findings, ok)
}

#[cfg(test)]
mod tests;
