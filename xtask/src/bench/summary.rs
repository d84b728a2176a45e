//! The `redirect` benchmark's verdicts: median runs, ratios to the direct path, targets.
//!
//! No I/O here: `redirect.rs` measures and hands over [`Measured`], `table.rs` renders the
//! [`Summary`], and `--json` serializes it as is. A client that failed on a path is a finding,
//! not a crash: its run is kept as [`Attempt::Failed`] and the figures come from the others.

use serde::Serialize;

use super::common::{errors, failures, median_by, other_sandboxes_warning, ratio};
use super::route::{self, Route};

/// (c) p50 latency may be at most this multiple of direct.
pub const FASTPATH_P50_LIMIT: f64 = 1.5;
/// (c) bulk throughput must be at least this fraction of direct.
pub const FASTPATH_THROUGHPUT_FLOOR: f64 = 0.8;

/// The three ways a same-node pod reaches another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    /// Un-enrolled client: the kernel's TCP stack only.
    Direct,
    /// Enrolled client, agent without `--fastpath`: client → agent :15001 → server.
    Agent,
    /// Enrolled client, agent with `--fastpath`: the same relay, with sk_msg between sockets.
    Fastpath,
}

impl DataPath {
    pub const ALL: [DataPath; 3] = [DataPath::Direct, DataPath::Agent, DataPath::Fastpath];

    pub fn label(self) -> &'static str {
        match self {
            DataPath::Direct => "(a) direct, no mesh",
            DataPath::Agent => "(b) agent, no fast path",
            DataPath::Fastpath => "(c) agent + fast path",
        }
    }

    /// `(a)`, `(b)` or `(c)`.
    pub fn tag(self) -> &'static str {
        &self.label()[..3]
    }
}

/// One value per path; serializes as `{"direct": .., "agent": .., "fastpath": ..}`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ByPath<T> {
    pub direct: T,
    pub agent: T,
    pub fastpath: T,
}

impl<T> ByPath<T> {
    pub fn from_fn(mut f: impl FnMut(DataPath) -> T) -> ByPath<T> {
        ByPath {
            direct: f(DataPath::Direct),
            agent: f(DataPath::Agent),
            fastpath: f(DataPath::Fastpath),
        }
    }

    pub fn try_from_fn<E>(mut f: impl FnMut(DataPath) -> Result<T, E>) -> Result<ByPath<T>, E> {
        Ok(ByPath {
            direct: f(DataPath::Direct)?,
            agent: f(DataPath::Agent)?,
            fastpath: f(DataPath::Fastpath)?,
        })
    }

    pub fn get(&self, path: DataPath) -> &T {
        match path {
            DataPath::Direct => &self.direct,
            DataPath::Agent => &self.agent,
            DataPath::Fastpath => &self.fastpath,
        }
    }

    pub fn get_mut(&mut self, path: DataPath) -> &mut T {
        match path {
            DataPath::Direct => &mut self.direct,
            DataPath::Agent => &mut self.agent,
            DataPath::Fastpath => &mut self.fastpath,
        }
    }
}

/// How the figures were taken; echoed into the output so a number never travels without it.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub runs: usize,
    /// Which run is reported: the median one, per measurement.
    pub reported: &'static str,
    pub connections: u32,
    /// A discarded rr on every path before the first run.
    pub settle_seconds: f64,
    pub rr_message_bytes: usize,
    pub rr_warmup_seconds: f64,
    pub rr_seconds: f64,
    pub bulk_seconds: f64,
}

/// One client run: its figures, or why the client failed. Serializes as the figures or as
/// `{"error": ".."}`.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Attempt<T> {
    Measured(T),
    Failed { error: String },
}

/// An `rr` run: request/response round trips on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub round_trips: u64,
}

/// A `bulk` run: one connection sending as fast as it can.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub gbit_per_s: f64,
}

#[derive(Clone, Debug)]
pub struct PathMeasurement {
    pub latency: Vec<Attempt<Latency>>,
    pub throughput: Vec<Attempt<Throughput>>,
    pub route: Route,
}

/// Everything one benchmark run measured.
#[derive(Clone, Debug)]
pub struct Measured {
    pub method: Method,
    pub paths: ByPath<PathMeasurement>,
    /// Other sandboxes seen live between measurements: tests sharing the CPUs.
    pub other_sandboxes: Vec<String>,
}

impl Measured {
    /// Why nothing can be compared: the direct path, the baseline of every ratio, has no
    /// successful rr or no successful bulk run.
    pub fn baseline_missing(&self) -> Option<String> {
        let direct = &self.paths.direct;
        let first_error = |errors: Vec<&str>| errors.first().map(|e| e.to_string());
        if median_by(&direct.latency, |l| l.p50_us).is_none() {
            return first_error(errors(&direct.latency));
        }
        if median_by(&direct.throughput, |t| t.gbit_per_s).is_none() {
            return first_error(errors(&direct.throughput));
        }
        None
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub benchmark: &'static str,
    pub method: Method,
    pub paths: ByPath<PathFigures>,
    pub targets: Vec<Target>,
    pub all_targets_met: bool,
    /// Other sandboxes seen live between measurements (tests running meanwhile).
    pub other_sandboxes: Vec<String>,
    /// Failed runs and routes not taken as named (such a path's figures mean something else).
    pub warnings: Vec<String>,
}

/// A path's reported figures: rr from the successful run with the median p50 (its p99 from
/// that same run), throughput from the successful run with the median Gbit/s. `None` (JSON
/// `null`) when every run of that kind failed.
#[derive(Clone, Debug, Serialize)]
pub struct PathFigures {
    pub label: &'static str,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub gbit_per_s: Option<f64>,
    /// `p50_us / direct p50_us`.
    pub p50_ratio: Option<f64>,
    /// `p99_us / direct p99_us`.
    pub p99_ratio: Option<f64>,
    /// `gbit_per_s / direct gbit_per_s`.
    pub throughput_ratio: Option<f64>,
    pub latency_runs: Vec<Attempt<Latency>>,
    pub throughput_runs: Vec<Attempt<Throughput>>,
    pub route: Route,
    /// What the route evidence showed, one finding each.
    pub route_findings: Vec<String>,
    pub route_ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub description: String,
    /// `None` when the figure is missing (every run failed); the target then fails.
    pub ratio: Option<f64>,
    pub limit: f64,
    pub pass: bool,
}

pub fn summarize(measured: Measured) -> Summary {
    let Measured {
        method,
        paths,
        other_sandboxes,
    } = measured;
    let latency = |path: DataPath| median_by(&paths.get(path).latency, |l| l.p50_us);
    let throughput = |path: DataPath| median_by(&paths.get(path).throughput, |t| t.gbit_per_s);
    let (base_latency, base_throughput) = (latency(DataPath::Direct), throughput(DataPath::Direct));
    let mut warnings = Vec::new();
    let figures = ByPath::from_fn(|path| {
        let measurement = paths.get(path);
        let (lat, thr) = (latency(path), throughput(path));
        warnings.extend(failures(path.tag(), "rr", &measurement.latency));
        warnings.extend(failures(path.tag(), "bulk", &measurement.throughput));
        let check = route::check(path, &measurement.route);
        warnings.extend(check.warnings.iter().cloned());
        PathFigures {
            label: path.label(),
            p50_us: lat.map(|l| l.p50_us),
            p99_us: lat.map(|l| l.p99_us),
            gbit_per_s: thr.map(|t| t.gbit_per_s),
            p50_ratio: ratio(lat.map(|l| l.p50_us), base_latency.map(|l| l.p50_us)),
            p99_ratio: ratio(lat.map(|l| l.p99_us), base_latency.map(|l| l.p99_us)),
            throughput_ratio: ratio(
                thr.map(|t| t.gbit_per_s),
                base_throughput.map(|t| t.gbit_per_s),
            ),
            latency_runs: measurement.latency.clone(),
            throughput_runs: measurement.throughput.clone(),
            route: measurement.route.clone(),
            route_ok: check.warnings.is_empty(),
            route_findings: check.notes.into_iter().chain(check.warnings).collect(),
        }
    });
    warnings.extend(other_sandboxes_warning(&other_sandboxes));
    let targets = targets(&figures.fastpath);
    Summary {
        benchmark: "redirect",
        method,
        all_targets_met: targets.iter().all(|t| t.pass),
        targets,
        paths: figures,
        other_sandboxes,
        warnings,
    }
}

fn targets(fastpath: &PathFigures) -> Vec<Target> {
    let p50 = fastpath.p50_ratio;
    let throughput = fastpath.throughput_ratio;
    vec![
        Target {
            name: "fastpath_p50_latency",
            description: format!("(c) p50 latency ≤ {FASTPATH_P50_LIMIT}× direct"),
            ratio: p50,
            limit: FASTPATH_P50_LIMIT,
            pass: p50.is_some_and(|r| r <= FASTPATH_P50_LIMIT),
        },
        Target {
            name: "fastpath_throughput",
            description: format!("(c) throughput ≥ {FASTPATH_THROUGHPUT_FLOOR}× direct"),
            ratio: throughput,
            limit: FASTPATH_THROUGHPUT_FLOOR,
            pass: throughput.is_some_and(|r| r >= FASTPATH_THROUGHPUT_FLOOR),
        },
    ]
}

#[cfg(test)]
mod tests;
