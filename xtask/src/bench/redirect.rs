//! `cargo xtask bench redirect`: builds a two-node sandbox and measures same-node pod-to-pod
//! TCP direct, through the agent, and through the agent with the sk_msg fast path.
//!
//! | path | node | client | server | agent |
//! | --- | --- | --- | --- | --- |
//! | (a) direct | node1 | `plain/client` (not enrolled) | `mesh/server-1` | `ambit-node run` |
//! | (b) agent | node1 | `mesh/client-1` | `mesh/server-1` | `ambit-node run` |
//! | (c) fast path | node2 | `mesh/client-2` | `mesh/server-2` | `ambit-node run --fastpath` |
//!
//! (a) and (b) share a server, so they differ only in the route. After a discarded settling
//! round, runs are interleaved (a, b, c, a, b, c, …) so that drift on this shared 2-core
//! machine hits every path alike.
//! Each path's route is checked with a whoami (whom the server saw) and the client node's
//! kernel counters, read just before and after each of its runs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::testapp::{parse_report, BulkReport, RrReport, ECHO_PORT, SINK_PORT, WHOAMI_PORT};
use ambit_e2e::{Pod, Process};
use anyhow::{bail, Context, Result};

use super::common::{attempt, other_sandboxes};
use super::route::{Route, RouteCounters};
use super::summary::{
    self, Attempt, ByPath, DataPath, Latency, Measured, Method, PathMeasurement, Summary,
    Throughput,
};

const RUNS: usize = 3;
const RR_MESSAGE_BYTES: usize = 64;
const RR_WARMUP: Duration = Duration::from_millis(300);
const RR_DURATION: Duration = Duration::from_secs(3);
const BULK_DURATION: Duration = Duration::from_secs(3);
/// A discarded rr on every path before the measured runs.
const SETTLE: Duration = Duration::from_secs(1);
const MESH_NS: &str = "mesh";
const PLAIN_NS: &str = "plain";
const RELAY_NODE: &str = "node1";
const FASTPATH_NODE: &str = "node2";

/// One path's endpoints.
struct Lane {
    path: DataPath,
    /// Short name of the node both pods are on.
    node: &'static str,
    client: Pod,
    server: Pod,
}

/// The sandbox cluster; dropping it stops the agents and servers and removes the sandbox.
struct Bench {
    mesh: MeshCluster,
    lanes: ByPath<Lane>,
    _servers: Vec<Process>,
}

pub fn measure() -> Result<Summary> {
    let bench = Bench::build()?;
    let mut routes = ByPath::try_from_fn(|path| bench.route_before_runs(bench.lanes.get(path)))?;
    let mut latency = ByPath::<Vec<Attempt<Latency>>>::default();
    let mut throughput = ByPath::<Vec<Attempt<Throughput>>>::default();
    let mut other_sandboxes = BTreeSet::new();
    bench.settle();
    for n in 1..=RUNS {
        for path in DataPath::ALL {
            let lane = bench.lanes.get(path);
            other_sandboxes.extend(bench.other_sandboxes());
            let before = bench.counters(lane.node)?;
            let rr = bench.rr(lane);
            let bulk = bench.bulk(lane);
            let delta = bench.counters(lane.node)?.since(before);
            routes.get_mut(path).counters.add(delta);
            eprintln!(
                "bench redirect: run {n}/{RUNS} {}",
                progress(path, &rr, &bulk)
            );
            latency.get_mut(path).push(rr);
            throughput.get_mut(path).push(bulk);
        }
    }
    bench.stop();
    let measured = Measured {
        method: method(),
        other_sandboxes: other_sandboxes.into_iter().collect(),
        paths: ByPath::from_fn(|path| PathMeasurement {
            latency: std::mem::take(latency.get_mut(path)),
            throughput: std::mem::take(throughput.get_mut(path)),
            route: routes.get(path).clone(),
        }),
    };
    if let Some(error) = measured.baseline_missing() {
        bail!("the direct baseline (a) could not be measured, so nothing can be compared: {error}");
    }
    Ok(summary::summarize(measured))
}

/// One progress line: the run's figures, or what failed.
fn progress(path: DataPath, rr: &Attempt<Latency>, bulk: &Attempt<Throughput>) -> String {
    let rr = match rr {
        Attempt::Measured(l) => format!("p50 {:>7.1} µs  p99 {:>7.1} µs", l.p50_us, l.p99_us),
        Attempt::Failed { error } => format!("rr FAILED: {error}"),
    };
    let bulk = match bulk {
        Attempt::Measured(t) => format!("{:>6.2} Gbit/s", t.gbit_per_s),
        Attempt::Failed { error } => format!("bulk FAILED: {error}"),
    };
    format!("{:<24} {rr}  {bulk}", path.label())
}

fn method() -> Method {
    Method {
        runs: RUNS,
        reported: "median run",
        connections: 1,
        settle_seconds: SETTLE.as_secs_f64(),
        rr_message_bytes: RR_MESSAGE_BYTES,
        rr_warmup_seconds: RR_WARMUP.as_secs_f64(),
        rr_seconds: RR_DURATION.as_secs_f64(),
        bulk_seconds: BULK_DURATION.as_secs_f64(),
    }
}

impl Bench {
    fn build() -> Result<Bench> {
        eprintln!("bench redirect: building the sandbox (2 nodes, 5 pods)");
        let mut mesh = MeshCluster::new("bench-redirect").context("creating the sandbox")?;
        for node in [RELAY_NODE, FASTPATH_NODE] {
            mesh.add_node(node)
                .with_context(|| format!("adding {node}"))?;
        }
        let mut pod = |node: &str, ns: &str, name: &str| {
            mesh.add_pod(node, ns, name)
                .with_context(|| format!("adding pod {ns}/{name} on {node}"))
        };
        let direct_client = pod(RELAY_NODE, PLAIN_NS, "client")?;
        let relay_client = pod(RELAY_NODE, MESH_NS, "client-1")?;
        let relay_server = pod(RELAY_NODE, MESH_NS, "server-1")?;
        let fastpath_client = pod(FASTPATH_NODE, MESH_NS, "client-2")?;
        let fastpath_server = pod(FASTPATH_NODE, MESH_NS, "server-2")?;
        mesh.enroll_namespace(MESH_NS);
        mesh.write_config().context("writing the mesh config")?;

        for (node, args) in [
            (RELAY_NODE, vec![]),
            (FASTPATH_NODE, vec!["--fastpath".into()]),
        ] {
            eprintln!("bench redirect: starting the agent on {node} {args:?}");
            mesh.agent_args = args;
            mesh.start_agent(node)
                .with_context(|| format!("starting the agent on {node}"))?;
        }
        for (node, server, client) in [
            (RELAY_NODE, &relay_server, &relay_client),
            (FASTPATH_NODE, &fastpath_server, &fastpath_client),
        ] {
            mesh.wait_enrolled(node, &[&client.id(), &server.id()])
                .with_context(|| format!("waiting for {node}'s pods to be enrolled"))?;
        }
        let servers = [&relay_server, &fastpath_server]
            .into_iter()
            .map(|s| {
                mesh.serve(s)
                    .with_context(|| format!("starting the test server in {}", s.id()))
            })
            .collect::<Result<Vec<_>>>()?;
        let lanes = ByPath {
            direct: Lane {
                path: DataPath::Direct,
                node: RELAY_NODE,
                client: direct_client,
                server: relay_server.clone(),
            },
            agent: Lane {
                path: DataPath::Agent,
                node: RELAY_NODE,
                client: relay_client,
                server: relay_server,
            },
            fastpath: Lane {
                path: DataPath::Fastpath,
                node: FASTPATH_NODE,
                client: fastpath_client,
                server: fastpath_server,
            },
        };
        Ok(Bench {
            mesh,
            lanes,
            _servers: servers,
        })
    }

    /// Whom the server sees connecting, with the counters still at zero.
    fn route_before_runs(&self, lane: &Lane) -> Result<Route> {
        let seen = self
            .mesh
            .whoami(&lane.client, SocketAddrV4::new(lane.server.ip, WHOAMI_PORT))
            .with_context(|| format!("whoami for {}", lane.path.label()))?;
        let node = self.mesh.node(lane.node)?;
        Ok(Route {
            client_ip: IpAddr::V4(lane.client.ip),
            node_ips: vec![IpAddr::V4(node.address), IpAddr::V4(node.pod_gateway)],
            server_saw: seen.peer.ip(),
            counters: RouteCounters::default(),
        })
    }

    /// A discarded rr on every path: the first run after the sandbox and agents start is
    /// otherwise measurably slower.
    fn settle(&self) {
        eprintln!("bench redirect: settling: {SETTLE:?} of rr on every path, discarded");
        for path in DataPath::ALL {
            let lane = self.lanes.get(path);
            let to = SocketAddrV4::new(lane.server.ip, ECHO_PORT);
            let cmd = self.mesh.app.rr(to, RR_MESSAGE_BYTES, SETTLE);
            if let Err(e) = self.client::<RrReport>(lane, cmd) {
                eprintln!("bench redirect: settling {} failed: {e:#}", path.label());
            }
        }
    }

    /// Request/response latency on one connection.
    fn rr(&self, lane: &Lane) -> Attempt<Latency> {
        let to = SocketAddrV4::new(lane.server.ip, ECHO_PORT);
        let mut cmd = self.mesh.app.rr(to, RR_MESSAGE_BYTES, RR_DURATION);
        cmd.args(["--warmup-ms", &RR_WARMUP.as_millis().to_string()]);
        attempt(self.client::<RrReport>(lane, cmd).map(|r| Latency {
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            round_trips: r.count,
        }))
    }

    /// Bulk throughput on one connection.
    fn bulk(&self, lane: &Lane) -> Attempt<Throughput> {
        let to = SocketAddrV4::new(lane.server.ip, SINK_PORT);
        let cmd = self.mesh.app.bulk(to, BULK_DURATION);
        attempt(self.client::<BulkReport>(lane, cmd).map(|r| Throughput {
            gbit_per_s: r.gbit_per_s,
        }))
    }

    fn client<T: serde::de::DeserializeOwned>(&self, lane: &Lane, cmd: Command) -> Result<T> {
        let out = self
            .mesh
            .run_client(&lane.client, cmd)
            .with_context(|| format!("running the client in {}", lane.client.id()))?;
        parse_report(&out)
    }

    /// The route counters of a node's kernel, via `ambit-node inspect`.
    fn counters(&self, node: &str) -> Result<RouteCounters> {
        let report = self
            .mesh
            .inspect(node)
            .with_context(|| format!("inspecting {node}"))?;
        let get = |name: &str| {
            report["counters"][name]
                .as_u64()
                .with_context(|| format!("{node}: no counter {name} in `ambit-node inspect`"))
        };
        Ok(RouteCounters {
            established: get("established")?,
            fastpath_redirected: get("fastpath_redirected")?,
            fastpath_passed: get("fastpath_passed")?,
        })
    }

    /// Sandboxes of other processes (tests running meanwhile), which compete for the CPUs.
    fn other_sandboxes(&self) -> Vec<String> {
        other_sandboxes(self.mesh.sb.name())
    }

    /// Stops the agents gracefully; the sandbox's drop removes the rest.
    fn stop(mut self) {
        for node in [RELAY_NODE, FASTPATH_NODE] {
            if let Err(e) = self.mesh.stop_agent(node) {
                eprintln!("bench redirect: stopping the agent on {node}: {e:#}");
            }
        }
    }
}
