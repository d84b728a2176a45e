//! The `tunnel` benchmark's verdicts: median runs, ratios to direct, added latency, agent
//! memory, targets and route checks.
//!
//! No I/O here: `tunnel.rs` measures and hands over [`Measured`], `table.rs` renders the
//! [`Summary`], and `--json` serializes it as is.

use serde::Serialize;

use super::super::common::{failures, median_by, other_sandboxes_warning, ratio};
use super::super::summary::{Attempt, Latency, Throughput};

/// Tunnel p50 minus direct p50 may be at most this many µs.
pub const ADDED_P50_LIMIT_US: f64 = 80.0;
/// Tunnel bulk throughput must be at least this fraction of direct.
pub const THROUGHPUT_FLOOR: f64 = 0.5;
/// Each agent's idle `VmRSS` may be at most this many MB (10^6 bytes).
pub const IDLE_RSS_LIMIT_MB: f64 = 20.0;

/// The two ways a pod on node1 reaches the server pod on node2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossPath {
    /// Un-enrolled client: the kernel's TCP stack and the fabric only.
    Direct,
    /// Enrolled client: node1's agent → HBONE over mTLS → node2's agent → server.
    Tunnel,
}

impl CrossPath {
    pub const ALL: [CrossPath; 2] = [CrossPath::Direct, CrossPath::Tunnel];

    pub fn label(self) -> &'static str {
        match self {
            CrossPath::Direct => "(a) direct, no mesh",
            CrossPath::Tunnel => "(b) HBONE tunnel, mTLS",
        }
    }

    /// `(a)` or `(b)`.
    pub fn tag(self) -> &'static str {
        &self.label()[..3]
    }
}

/// One value per path; serializes as `{"direct": .., "tunnel": ..}`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ByPath<T> {
    pub direct: T,
    pub tunnel: T,
}

impl<T> ByPath<T> {
    pub fn from_fn(mut f: impl FnMut(CrossPath) -> T) -> ByPath<T> {
        ByPath {
            direct: f(CrossPath::Direct),
            tunnel: f(CrossPath::Tunnel),
        }
    }

    pub fn get(&self, path: CrossPath) -> &T {
        match path {
            CrossPath::Direct => &self.direct,
            CrossPath::Tunnel => &self.tunnel,
        }
    }

    pub fn get_mut(&mut self, path: CrossPath) -> &mut T {
        match path {
            CrossPath::Direct => &mut self.direct,
            CrossPath::Tunnel => &mut self.tunnel,
        }
    }
}

/// How the figures were taken; echoed into the output so a number never travels without it.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub runs: usize,
    pub reported: &'static str,
    pub settle_seconds: f64,
    pub rr_message_bytes: usize,
    pub rr_warmup_seconds: f64,
    pub rr_seconds: f64,
    pub bulk_seconds: f64,
    /// Connections one `concurrent` client opens at once, each echoing `connect_bytes`.
    pub connect_connections: u32,
    pub connect_bytes: u64,
    pub connect_rate: &'static str,
    pub rss: &'static str,
}

/// A `concurrent` run: `connections` opened at once, each echoing a few bytes, then closed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ConnectRate {
    pub connections: u64,
    /// Wall time of the whole client process, as the bench saw it.
    pub seconds: f64,
    pub conns_per_s: f64,
    /// Wall time of the same client opening one connection, run just before: the start-up
    /// cost that `seconds` includes.
    pub one_connection_seconds: f64,
}

/// Both agents' CPU time (utime + stime) over one bulk run, per GB the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BulkCpu {
    /// Bytes the client sent, in GB (10^9 bytes).
    pub gigabytes: f64,
    pub node1_seconds: f64,
    pub node2_seconds: f64,
    /// (node1 + node2) CPU seconds per GB.
    pub seconds_per_gb: f64,
}

impl BulkCpu {
    pub fn new(bytes: u64, node1_seconds: f64, node2_seconds: f64) -> BulkCpu {
        let gigabytes = bytes as f64 / 1e9;
        BulkCpu {
            gigabytes,
            node1_seconds,
            node2_seconds,
            seconds_per_gb: (node1_seconds + node2_seconds) / gigabytes.max(f64::MIN_POSITIVE),
        }
    }
}

/// Whom the server saw, and the agents' tunnel counters over one path's runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouteEvidence {
    pub client_ip: String,
    /// The client address the server's whoami reported.
    pub server_saw: String,
    /// node2's addresses (fabric, pod gateway): whom the server sees when node2's agent
    /// delivers a tunnelled connection.
    pub server_node_ips: Vec<String>,
    /// Increase of node1's `ambit_outbound_tunnelled_total`; `None` if node1 does not export it.
    pub node1_tunnelled: Option<u64>,
    /// Increase of node1's `ambit_hbone_outbound_connections_total{event="opened"}`: mTLS
    /// handshakes its pool made to node2.
    pub node1_mtls_opened: u64,
    /// Increase of node2's `ambit_hbone_inbound_streams_total{status="200"}`.
    pub node2_streams_accepted: u64,
}

#[derive(Clone, Debug, Default)]
pub struct PathRuns {
    pub latency: Vec<Attempt<Latency>>,
    pub throughput: Vec<Attempt<Throughput>>,
    /// The agents' CPU time over each measured bulk run.
    pub bulk_cpu: Vec<Attempt<BulkCpu>>,
    pub connect: Vec<Attempt<ConnectRate>>,
    pub route: RouteEvidence,
}

/// One agent's `VmRSS` in MB (10^6 bytes).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AgentRss {
    /// After enrollment, before any traffic.
    pub idle_mb: f64,
    /// Peak while the measured runs went on.
    pub load_peak_mb: f64,
    /// After the last run, idle again.
    pub after_mb: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ByNode<T> {
    pub node1: T,
    pub node2: T,
}

/// Everything one benchmark run measured.
pub struct Measured {
    pub method: Method,
    pub paths: ByPath<PathRuns>,
    pub rss: ByNode<AgentRss>,
    pub other_sandboxes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub benchmark: &'static str,
    pub method: Method,
    pub paths: ByPath<PathFigures>,
    /// Tunnel p50 minus direct p50, µs.
    pub added_p50_us: Option<f64>,
    pub agent_rss: ByNode<AgentRss>,
    pub targets: Vec<Target>,
    pub all_targets_met: bool,
    pub other_sandboxes: Vec<String>,
    pub warnings: Vec<String>,
}

/// A path's reported figures (from its median runs) and ratios to direct; `None` (JSON
/// `null`) when every run of that kind failed.
#[derive(Clone, Debug, Serialize)]
pub struct PathFigures {
    pub label: &'static str,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub gbit_per_s: Option<f64>,
    pub conns_per_s: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub throughput_ratio: Option<f64>,
    pub conns_ratio: Option<f64>,
    /// Both agents' CPU seconds per GB sent in bulk (median run); near 0 on direct.
    pub agent_cpu_s_per_gb: Option<f64>,
    pub latency_runs: Vec<Attempt<Latency>>,
    pub throughput_runs: Vec<Attempt<Throughput>>,
    pub bulk_cpu_runs: Vec<Attempt<BulkCpu>>,
    pub connect_runs: Vec<Attempt<ConnectRate>>,
    pub route: RouteEvidence,
    pub route_findings: Vec<String>,
    pub route_ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub description: String,
    /// The measured figure, in `unit`; `None` when it is missing (the target then fails).
    pub value: Option<f64>,
    pub unit: &'static str,
    pub limit: f64,
    pub pass: bool,
}

pub fn summarize(measured: Measured) -> Summary {
    let Measured {
        method,
        paths,
        rss,
        other_sandboxes,
    } = measured;
    let latency = |p: CrossPath| median_by(&paths.get(p).latency, |l| l.p50_us);
    let throughput = |p: CrossPath| median_by(&paths.get(p).throughput, |t| t.gbit_per_s);
    let connect = |p: CrossPath| median_by(&paths.get(p).connect, |c| c.conns_per_s);
    let cpu = |p: CrossPath| median_by(&paths.get(p).bulk_cpu, |c| c.seconds_per_gb);
    let base = (
        latency(CrossPath::Direct),
        throughput(CrossPath::Direct),
        connect(CrossPath::Direct),
    );
    let mut warnings = Vec::new();
    let figures = ByPath::from_fn(|path| {
        let runs = paths.get(path);
        let (lat, thr, con) = (latency(path), throughput(path), connect(path));
        warnings.extend(failures(path.tag(), "rr", &runs.latency));
        warnings.extend(failures(path.tag(), "bulk", &runs.throughput));
        warnings.extend(failures(path.tag(), "concurrent", &runs.connect));
        warnings.extend(failures(path.tag(), "agent CPU", &runs.bulk_cpu));
        let (notes, route_warnings) = check_route(path, &runs.route);
        warnings.extend(route_warnings.iter().cloned());
        PathFigures {
            label: path.label(),
            p50_us: lat.map(|l| l.p50_us),
            p99_us: lat.map(|l| l.p99_us),
            gbit_per_s: thr.map(|t| t.gbit_per_s),
            conns_per_s: con.map(|c| c.conns_per_s),
            p50_ratio: ratio(lat.map(|l| l.p50_us), base.0.map(|l| l.p50_us)),
            p99_ratio: ratio(lat.map(|l| l.p99_us), base.0.map(|l| l.p99_us)),
            throughput_ratio: ratio(thr.map(|t| t.gbit_per_s), base.1.map(|t| t.gbit_per_s)),
            conns_ratio: ratio(con.map(|c| c.conns_per_s), base.2.map(|c| c.conns_per_s)),
            agent_cpu_s_per_gb: cpu(path).map(|c| c.seconds_per_gb),
            latency_runs: runs.latency.clone(),
            throughput_runs: runs.throughput.clone(),
            bulk_cpu_runs: runs.bulk_cpu.clone(),
            connect_runs: runs.connect.clone(),
            route: runs.route.clone(),
            route_ok: route_warnings.is_empty(),
            route_findings: notes.into_iter().chain(route_warnings).collect(),
        }
    });
    warnings.extend(other_sandboxes_warning(&other_sandboxes));
    let added_p50_us = figures
        .tunnel
        .p50_us
        .zip(figures.direct.p50_us)
        .map(|(tunnel, direct)| tunnel - direct);
    let targets = targets(added_p50_us, figures.tunnel.throughput_ratio, &rss);
    Summary {
        benchmark: "tunnel",
        method,
        paths: figures,
        added_p50_us,
        agent_rss: rss,
        all_targets_met: targets.iter().all(|t| t.pass),
        targets,
        other_sandboxes,
        warnings,
    }
}

fn targets(
    added_p50_us: Option<f64>,
    throughput: Option<f64>,
    rss: &ByNode<AgentRss>,
) -> Vec<Target> {
    let idle = |node: &'static str, a: &AgentRss| Target {
        name: if node == "node1" {
            "node1_agent_idle_rss"
        } else {
            "node2_agent_idle_rss"
        },
        description: format!("{node}'s agent idle RSS ≤ {IDLE_RSS_LIMIT_MB} MB"),
        value: (a.idle_mb > 0.0).then_some(a.idle_mb),
        unit: "MB",
        limit: IDLE_RSS_LIMIT_MB,
        pass: a.idle_mb > 0.0 && a.idle_mb <= IDLE_RSS_LIMIT_MB,
    };
    vec![
        Target {
            name: "added_p50_latency",
            description: format!("added p50 latency ≤ {ADDED_P50_LIMIT_US} µs"),
            value: added_p50_us,
            unit: "µs",
            limit: ADDED_P50_LIMIT_US,
            pass: added_p50_us.is_some_and(|a| a <= ADDED_P50_LIMIT_US),
        },
        Target {
            name: "tunnel_throughput",
            description: format!("(b) throughput ≥ {THROUGHPUT_FLOOR}× direct"),
            value: throughput,
            unit: "×",
            limit: THROUGHPUT_FLOOR,
            pass: throughput.is_some_and(|r| r >= THROUGHPUT_FLOOR),
        },
        idle("node1", &rss.node1),
        idle("node2", &rss.node2),
    ]
}

/// Findings that confirm the path's route, and warnings that contradict it.
fn check_route(path: CrossPath, r: &RouteEvidence) -> (Vec<String>, Vec<String>) {
    let (mut notes, mut warnings) = (Vec::new(), Vec::new());
    let mut expect = |holds: bool, note: String, warning: String| {
        if holds {
            notes.push(note);
        } else {
            warnings.push(warning);
        }
    };
    let tag = path.tag();
    let streams = r.node2_streams_accepted;
    match path {
        CrossPath::Direct => {
            expect(
                r.server_saw == r.client_ip,
                format!("the server saw the client itself ({})", r.server_saw),
                format!(
                    "{tag} is not direct: the server saw {}, not the client {}",
                    r.server_saw, r.client_ip
                ),
            );
            expect(
                streams == 0,
                "node2's agent accepted no HBONE stream".into(),
                format!("{tag} is not direct: node2's agent accepted {streams} HBONE streams"),
            );
        }
        CrossPath::Tunnel => {
            expect(
                streams > 0,
                format!(
                    "node2's agent accepted {streams} HBONE streams; node1's pool opened {} \
                     mTLS connections",
                    r.node1_mtls_opened
                ),
                format!("{tag} did not use the tunnel: node2's agent accepted no HBONE stream"),
            );
            // node2's agent delivers from the client's address (`--client-address preserve`,
            // the default) or from its own.
            let kept = r.server_saw == r.client_ip;
            expect(
                kept || r.server_node_ips.contains(&r.server_saw),
                if kept {
                    format!(
                        "the server saw the client's address ({}), kept by node2's agent",
                        r.server_saw
                    )
                } else {
                    format!("the server saw node2's agent ({})", r.server_saw)
                },
                format!(
                    "{tag}: the server saw {}, neither the client {} nor node2's agent (one of {:?})",
                    r.server_saw, r.client_ip, r.server_node_ips
                ),
            );
            match r.node1_tunnelled {
                Some(n) => expect(
                    n > 0,
                    format!("node1's agent tunnelled {n} connections"),
                    format!("{tag}: node1's ambit_outbound_tunnelled_total did not move"),
                ),
                None => warnings.push(format!(
                    "{tag}: node1's agent exports no ambit_outbound_tunnelled_total, so only \
                     node2's HBONE stream count shows the tunnel was used"
                )),
            }
        }
    }
    (notes, warnings)
}

#[cfg(test)]
mod tests;
