//! `cargo xtask bench tunnel`: builds a two-node sandbox with the mesh CA and measures
//! cross-node pod-to-pod TCP direct and through the HBONE tunnel (HTTP/2 CONNECT over mTLS).
//!
//! | path | client (node1) | server (node2) | route |
//! | --- | --- | --- | --- |
//! | (a) direct | `plain/client` (not enrolled) | `mesh/server` | fabric only |
//! | (b) tunnel | `mesh/client` | `mesh/server` | node1 agent → :15008 mTLS → node2 agent |
//!
//! Both paths share the server, so they differ only in the route. After a discarded settling
//! round, runs are interleaved (a, b, a, b, …) so that drift on this shared machine hits both
//! alike. Each run is an `rr` (latency), a `bulk` (throughput) and a `concurrent` (new
//! connections per second, from the client process's wall time); both agents' CPU time
//! (utime + stime) is read around each bulk run, per GB sent. The agents' `VmRSS` is read
//! once idle, before any traffic, and sampled for its peak during the runs. The route is
//! checked with a whoami and the agents' tunnel counters, read around each path's runs.

mod rss;
mod summary;
pub(super) mod table;

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::process::Command;
use std::time::{Duration, Instant};

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::testapp::{
    parse_report, BulkReport, ConcurrentReport, RrReport, ECHO_PORT, SINK_PORT, WHOAMI_PORT,
};
use ambit_e2e::{Pod, Process};
use anyhow::{bail, Context, Result};

use super::common::{attempt, median_by, other_sandboxes};
use super::memory::RssSampler;
use super::summary::{Attempt, Latency, Throughput};
use rss::Agent;
use summary::{
    AgentRss, BulkCpu, ByNode, ByPath, ConnectRate, CrossPath, Measured, Method, PathRuns,
    RouteEvidence, Summary,
};

const RUNS: usize = 3;
const RR_MESSAGE_BYTES: usize = 1024;
const RR_WARMUP: Duration = Duration::from_millis(300);
const RR_DURATION: Duration = Duration::from_secs(3);
const BULK_DURATION: Duration = Duration::from_secs(3);
const CONNECTIONS: u32 = 500;
const CONNECTION_BYTES: u64 = 64;
/// A discarded rr on both paths before the measured runs.
const SETTLE: Duration = Duration::from_secs(1);
const MESH_NS: &str = "mesh";
const PLAIN_NS: &str = "plain";
const CLIENT_NODE: &str = "node1";
const SERVER_NODE: &str = "node2";
const TUNNELLED: &str = "ambit_outbound_tunnelled_total";
const STREAMS_ACCEPTED: &str = "ambit_hbone_inbound_streams_total{status=\"200\"}";
const MTLS_OPENED: &str = "ambit_hbone_outbound_connections_total{event=\"opened\"}";
const KB_PER_MB: f64 = 1000.0;

/// Counters of the agents' metrics that show the tunnel at work.
struct TunnelCounters {
    /// node1: connections its agent carried through the tunnel.
    tunnelled: Option<u64>,
    /// node1: mTLS connections its HBONE pool opened to other agents.
    mtls_opened: Option<u64>,
    /// node2: CONNECT streams its agent accepted (HTTP 200).
    streams: Option<u64>,
}

impl TunnelCounters {
    /// Adds the increase since `before` to a path's evidence.
    fn add_since(self, before: TunnelCounters, route: &mut RouteEvidence) {
        let since = |now: Option<u64>, then: Option<u64>| Some(now?.saturating_sub(then?));
        if let Some(n) = since(self.tunnelled, before.tunnelled) {
            *route.node1_tunnelled.get_or_insert(0) += n;
        }
        route.node1_mtls_opened += since(self.mtls_opened, before.mtls_opened).unwrap_or(0);
        route.node2_streams_accepted += since(self.streams, before.streams).unwrap_or(0);
    }
}

/// The sandbox cluster; dropping it stops the agents and servers and removes the sandbox.
struct Bench {
    mesh: MeshCluster,
    clients: ByPath<Pod>,
    server: Pod,
    agents: [Agent; 2],
    _server: Process,
}

pub(super) fn measure() -> Result<Summary> {
    let bench = Bench::build()?;
    let idle = bench.rss()?;
    eprintln!(
        "bench tunnel: idle agent RSS: node1 {:.1} MB, node2 {:.1} MB",
        idle[0] as f64 / KB_PER_MB,
        idle[1] as f64 / KB_PER_MB
    );
    let mut paths = ByPath::<PathRuns>::default();
    for path in CrossPath::ALL {
        paths.get_mut(path).route = bench.route_before_runs(path)?;
    }
    let mut others = BTreeSet::new();
    bench.settle();
    let sampler = RssSampler::start(bench.agents.iter().map(|a| a.pid).collect());
    for n in 1..=RUNS {
        for path in CrossPath::ALL {
            others.extend(other_sandboxes(bench.mesh.sb.name()));
            let before = bench.tunnel_counters();
            let runs = paths.get_mut(path);
            runs.latency.push(bench.rr(path));
            let (throughput, cpu) = bench.bulk(path);
            runs.throughput.push(throughput);
            runs.bulk_cpu.extend(cpu);
            runs.connect.push(bench.connect(path));
            bench.tunnel_counters().add_since(before, &mut runs.route);
            eprintln!("bench tunnel: run {n}/{RUNS} {}", progress(path, runs));
        }
    }
    let peak = sampler.stop();
    let after = bench.rss()?;
    let mb = |kb: u64| kb as f64 / KB_PER_MB;
    let rss = |i: usize| AgentRss {
        idle_mb: mb(idle[i]),
        load_peak_mb: mb(peak[i]),
        after_mb: mb(after[i]),
    };
    let rss = ByNode {
        node1: rss(0),
        node2: rss(1),
    };
    bench.stop();
    if median_by(&paths.direct.latency, |l| l.p50_us).is_none()
        || median_by(&paths.direct.throughput, |t| t.gbit_per_s).is_none()
    {
        bail!(
            "the direct baseline (a) could not be measured, so nothing can be compared: {:?}",
            super::common::errors(&paths.direct.latency)
                .into_iter()
                .chain(super::common::errors(&paths.direct.throughput))
                .next()
        );
    }
    Ok(summary::summarize(Measured {
        method: method(),
        paths,
        rss,
        other_sandboxes: others.into_iter().collect(),
    }))
}

/// One progress line: the latest run's figures, or what failed.
fn progress(path: CrossPath, runs: &PathRuns) -> String {
    let rr = match runs.latency.last() {
        Some(Attempt::Measured(l)) => format!("p50 {:>7.1} µs  p99 {:>7.1} µs", l.p50_us, l.p99_us),
        Some(Attempt::Failed { error }) => format!("rr FAILED: {error}"),
        None => String::new(),
    };
    let bulk = match runs.throughput.last() {
        Some(Attempt::Measured(t)) => format!("{:>6.2} Gbit/s", t.gbit_per_s),
        Some(Attempt::Failed { error }) => format!("bulk FAILED: {error}"),
        None => String::new(),
    };
    let connect = match runs.connect.last() {
        Some(Attempt::Measured(c)) => format!("{:>6.0} conns/s", c.conns_per_s),
        Some(Attempt::Failed { error }) => format!("concurrent FAILED: {error}"),
        None => String::new(),
    };
    format!("{:<24} {rr}  {bulk}  {connect}", path.label())
}

fn method() -> Method {
    Method {
        runs: RUNS,
        reported: "median run",
        settle_seconds: SETTLE.as_secs_f64(),
        rr_message_bytes: RR_MESSAGE_BYTES,
        rr_warmup_seconds: RR_WARMUP.as_secs_f64(),
        rr_seconds: RR_DURATION.as_secs_f64(),
        bulk_seconds: BULK_DURATION.as_secs_f64(),
        connect_connections: CONNECTIONS,
        connect_bytes: CONNECTION_BYTES,
        connect_rate: "`concurrent`: 500 connections opened at once, each echoing 64 B, then \
                       closed; connections / wall time of the client process (its start-up \
                       included: see one_connection_seconds, a 1-connection run just before)",
        rss: "VmRSS of /proc/<agent pid>/status: idle after enrollment before any traffic; \
              peak of 100 ms samples during the measured runs; again after them",
    }
}

impl Bench {
    fn build() -> Result<Bench> {
        eprintln!("bench tunnel: building the sandbox (2 nodes, 3 pods, the mesh CA)");
        let mut mesh = MeshCluster::new("bench-tunnel").context("creating the sandbox")?;
        for node in [CLIENT_NODE, SERVER_NODE] {
            mesh.add_node(node)
                .with_context(|| format!("adding {node}"))?;
        }
        let mut pod = |node: &str, ns: &str, name: &str| {
            mesh.add_pod(node, ns, name)
                .with_context(|| format!("adding pod {ns}/{name} on {node}"))
        };
        let direct = pod(CLIENT_NODE, PLAIN_NS, "client")?;
        let tunnel = pod(CLIENT_NODE, MESH_NS, "client")?;
        let server = pod(SERVER_NODE, MESH_NS, "server")?;
        mesh.enroll_namespace(MESH_NS);
        eprintln!(
            "bench tunnel: starting the mesh CA and the agents (mtls: {})",
            mesh.mtls
        );
        mesh.start_agents()
            .context("starting the mesh CA and the agents")?;
        mesh.wait_enrolled(CLIENT_NODE, &[&tunnel.id()])
            .context("waiting for node1's client to be enrolled")?;
        mesh.wait_enrolled(SERVER_NODE, &[&server.id()])
            .context("waiting for node2's server to be enrolled")?;
        let serving = mesh
            .serve(&server)
            .with_context(|| format!("starting the test server in {}", server.id()))?;
        let agent = |short: &str| -> Result<Agent> {
            let node = mesh.node(short)?;
            Agent::find(short, &node.agent_cgroup)
                .with_context(|| format!("finding the agent of {short} ({})", node.name))
        };
        let agents = [agent(CLIENT_NODE)?, agent(SERVER_NODE)?];
        Ok(Bench {
            mesh,
            clients: ByPath { direct, tunnel },
            server,
            agents,
            _server: serving,
        })
    }

    /// Both agents' `VmRSS` in kB.
    fn rss(&self) -> Result<[u64; 2]> {
        Ok([self.agents[0].rss_kb()?, self.agents[1].rss_kb()?])
    }

    /// Whom the server sees connecting, before the measured runs.
    fn route_before_runs(&self, path: CrossPath) -> Result<RouteEvidence> {
        let client = self.clients.get(path);
        let seen = self
            .mesh
            .whoami(client, SocketAddrV4::new(self.server.ip, WHOAMI_PORT))
            .with_context(|| format!("whoami for {}", path.label()))?;
        let node = self.mesh.node(SERVER_NODE)?;
        Ok(RouteEvidence {
            client_ip: client.ip.to_string(),
            server_saw: seen.peer.ip().to_string(),
            server_node_ips: vec![node.address.to_string(), node.pod_gateway.to_string()],
            node1_tunnelled: None,
            node1_mtls_opened: 0,
            node2_streams_accepted: 0,
        })
    }

    /// The agents' tunnel counters now (`None` for one the agent does not export).
    fn tunnel_counters(&self) -> TunnelCounters {
        let get = |node: &str, sample: &str| self.mesh.metric(node, sample).ok();
        TunnelCounters {
            tunnelled: get(CLIENT_NODE, TUNNELLED),
            mtls_opened: get(CLIENT_NODE, MTLS_OPENED),
            streams: get(SERVER_NODE, STREAMS_ACCEPTED),
        }
    }

    /// A discarded rr on both paths: the first run after the agents start is slower.
    fn settle(&self) {
        eprintln!("bench tunnel: settling: {SETTLE:?} of rr on both paths, discarded");
        for path in CrossPath::ALL {
            let to = SocketAddrV4::new(self.server.ip, ECHO_PORT);
            let cmd = self.mesh.app.rr(to, RR_MESSAGE_BYTES, SETTLE);
            if let Err(e) = self.client::<RrReport>(path, cmd) {
                eprintln!("bench tunnel: settling {} failed: {e:#}", path.label());
            }
        }
    }

    /// Request/response latency on one connection.
    fn rr(&self, path: CrossPath) -> Attempt<Latency> {
        let to = SocketAddrV4::new(self.server.ip, ECHO_PORT);
        let mut cmd = self.mesh.app.rr(to, RR_MESSAGE_BYTES, RR_DURATION);
        cmd.args(["--warmup-ms", &RR_WARMUP.as_millis().to_string()]);
        attempt(self.client::<RrReport>(path, cmd).map(|r| Latency {
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            round_trips: r.count,
        }))
    }

    /// Bulk throughput on one connection, and the agents' CPU time per GB it sent (`None`
    /// when the bulk run itself failed).
    fn bulk(&self, path: CrossPath) -> (Attempt<Throughput>, Option<Attempt<BulkCpu>>) {
        let to = SocketAddrV4::new(self.server.ip, SINK_PORT);
        let cmd = self.mesh.app.bulk(to, BULK_DURATION);
        let before = self.cpu_seconds();
        let report = self.client::<BulkReport>(path, cmd);
        let after = self.cpu_seconds();
        let cpu = report.as_ref().ok().map(|r| {
            attempt(before.and_then(|before| {
                let after = after?;
                Ok(BulkCpu::new(
                    r.bytes,
                    after[0] - before[0],
                    after[1] - before[1],
                ))
            }))
        });
        let throughput = attempt(report.map(|r| Throughput {
            gbit_per_s: r.gbit_per_s,
        }));
        (throughput, cpu)
    }

    /// Both agents' CPU time so far, in seconds.
    fn cpu_seconds(&self) -> Result<[f64; 2]> {
        Ok([self.agents[0].cpu_seconds()?, self.agents[1].cpu_seconds()?])
    }

    /// New connections per second: one `concurrent` client, timed from outside.
    fn connect(&self, path: CrossPath) -> Attempt<ConnectRate> {
        let to = SocketAddrV4::new(self.server.ip, ECHO_PORT);
        let cmd = self.mesh.app.concurrent(to, CONNECTIONS, CONNECTION_BYTES);
        let one = self.mesh.app.concurrent(to, 1, CONNECTION_BYTES);
        let started = Instant::now();
        let one = self.client::<ConcurrentReport>(path, one);
        let one_connection_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let report = one.and_then(|_| self.client::<ConcurrentReport>(path, cmd));
        let seconds = started.elapsed().as_secs_f64();
        attempt(report.and_then(|r| {
            if r.failed > 0 {
                bail!(
                    "{} of {CONNECTIONS} connections failed, the first: {}",
                    r.failed,
                    r.first_error.as_deref().unwrap_or("(no error given)")
                );
            }
            Ok(ConnectRate {
                connections: r.ok,
                seconds,
                conns_per_s: r.ok as f64 / seconds,
                one_connection_seconds,
            })
        }))
    }

    fn client<T: serde::de::DeserializeOwned>(&self, path: CrossPath, cmd: Command) -> Result<T> {
        let client = self.clients.get(path);
        let out = self
            .mesh
            .run_client(client, cmd)
            .with_context(|| format!("running the client in {}", client.id()))?;
        parse_report(&out)
    }

    /// Stops the agents gracefully; the sandbox's drop removes the rest.
    fn stop(mut self) {
        for node in [CLIENT_NODE, SERVER_NODE] {
            if let Err(e) = self.mesh.stop_agent(node) {
                eprintln!("bench tunnel: stopping the agent on {node}: {e:#}");
            }
        }
    }
}
