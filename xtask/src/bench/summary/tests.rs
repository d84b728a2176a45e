use super::*;
use crate::bench::route::RouteCounters;

fn latency(p50_us: f64, p99_us: f64) -> Attempt<Latency> {
    Attempt::Measured(Latency {
        p50_us,
        p99_us,
        round_trips: 1000,
    })
}

fn gbit(gbit_per_s: f64) -> Attempt<Throughput> {
    Attempt::Measured(Throughput { gbit_per_s })
}

fn failed<T>(error: &str) -> Attempt<T> {
    Attempt::Failed {
        error: error.into(),
    }
}

/// A route that passes its path's check.
fn route(path: DataPath) -> Route {
    let via_agent = path != DataPath::Direct;
    Route {
        client_ip: "10.1.1.2".parse().unwrap(),
        node_ips: vec!["10.0.0.1".parse().unwrap()],
        server_saw: if via_agent { "10.0.0.1" } else { "10.1.1.2" }
            .parse()
            .unwrap(),
        counters: RouteCounters {
            established: if via_agent { 6 } else { 0 },
            fastpath_redirected: if path == DataPath::Fastpath { 500 } else { 0 },
            fastpath_passed: 0,
        },
    }
}

/// Direct: median run 21 µs (p99 50) and 10 Gbit/s. Agent: 60 µs (120), 4 Gbit/s.
fn measured(
    fastpath_latency: Vec<Attempt<Latency>>,
    fastpath_throughput: Vec<Attempt<Throughput>>,
) -> Measured {
    let path = |path, latency, throughput| PathMeasurement {
        latency,
        throughput,
        route: route(path),
    };
    Measured {
        method: Method {
            runs: 3,
            reported: "median run",
            connections: 1,
            settle_seconds: 1.0,
            rr_message_bytes: 64,
            rr_warmup_seconds: 0.3,
            rr_seconds: 3.0,
            bulk_seconds: 3.0,
        },
        paths: ByPath {
            direct: path(
                DataPath::Direct,
                vec![
                    latency(21.0, 50.0),
                    latency(20.0, 40.0),
                    latency(90.0, 99.0),
                ],
                vec![gbit(9.0), gbit(10.0), gbit(11.0)],
            ),
            agent: path(
                DataPath::Agent,
                vec![latency(60.0, 120.0); 3],
                vec![gbit(4.0); 3],
            ),
            fastpath: path(DataPath::Fastpath, fastpath_latency, fastpath_throughput),
        },
        other_sandboxes: Vec::new(),
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn median_run_keeps_p50_and_p99_of_the_same_run() {
    let runs = [
        latency(30.0, 31.0),
        latency(10.0, 99.0),
        latency(20.0, 22.0),
    ];
    let middle = median_by(&runs, |l| l.p50_us).unwrap();
    assert_eq!((middle.p50_us, middle.p99_us), (20.0, 22.0));
}

#[test]
fn median_skips_failed_runs() {
    let runs = [gbit(3.0), failed("boom"), gbit(1.0)];
    assert_eq!(median_by(&runs, |t| t.gbit_per_s).unwrap().gbit_per_s, 3.0);
    assert!(median_by::<Throughput>(&[failed("boom")], |t| t.gbit_per_s).is_none());
}

#[test]
fn ratios_are_to_the_direct_median_run() {
    let summary = summarize(measured(vec![latency(25.0, 60.0); 3], vec![gbit(9.0); 3]));
    let direct = &summary.paths.direct;
    assert_eq!((direct.p50_us, direct.p99_us), (Some(21.0), Some(50.0)));
    assert_eq!(direct.gbit_per_s, Some(10.0));
    assert_eq!(direct.p50_ratio, Some(1.0));
    let agent = &summary.paths.agent;
    assert!(close(agent.p50_ratio, 60.0 / 21.0));
    assert!(close(agent.p99_ratio, 120.0 / 50.0));
    assert!(close(agent.throughput_ratio, 0.4));
}

#[test]
fn fast_path_within_both_limits_meets_the_targets() {
    let summary = summarize(measured(vec![latency(30.0, 60.0); 3], vec![gbit(8.5); 3]));
    assert!(summary.all_targets_met, "{:?}", summary.targets);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
}

#[test]
fn slow_fast_path_misses_the_latency_target_only() {
    let summary = summarize(measured(vec![latency(40.0, 60.0); 3], vec![gbit(9.0); 3]));
    let pass: Vec<(&str, bool)> = summary.targets.iter().map(|t| (t.name, t.pass)).collect();
    assert_eq!(
        pass,
        [
            ("fastpath_p50_latency", false),
            ("fastpath_throughput", true)
        ]
    );
    assert!(!summary.all_targets_met);
}

#[test]
fn fast_path_whose_bulk_always_fails_misses_the_throughput_target() {
    let summary = summarize(measured(
        vec![latency(25.0, 60.0); 3],
        vec![failed("Cannot allocate memory"); 3],
    ));
    let fastpath = &summary.paths.fastpath;
    assert_eq!(
        (fastpath.gbit_per_s, fastpath.throughput_ratio),
        (None, None)
    );
    assert!(!summary.targets[1].pass);
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(summary.warnings[0].starts_with("(c) bulk failed in 3 of 3 runs (no figure)"));
}

#[test]
fn one_failed_run_is_reported_and_the_others_count() {
    let summary = summarize(measured(
        vec![latency(25.0, 60.0); 3],
        vec![gbit(9.0), failed("reset"), gbit(8.0)],
    ));
    assert_eq!(summary.paths.fastpath.gbit_per_s, Some(9.0));
    assert!(
        summary.warnings[0].contains("the median is of the other 2"),
        "{:?}",
        summary.warnings
    );
}

#[test]
fn no_direct_figure_means_no_baseline() {
    let mut m = measured(vec![latency(25.0, 60.0); 3], vec![gbit(9.0); 3]);
    assert_eq!(m.baseline_missing(), None);
    m.paths.direct.throughput = vec![failed("refused"); 3];
    assert_eq!(m.baseline_missing().as_deref(), Some("refused"));
}

#[test]
fn json_has_flat_figures_and_failed_runs_as_errors() {
    let summary = summarize(measured(
        vec![latency(25.0, 60.0); 3],
        vec![gbit(9.0), failed("reset"), gbit(8.0)],
    ));
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["benchmark"], "redirect");
    assert!(json["paths"]["fastpath"]["p50_ratio"].is_f64());
    assert_eq!(json["paths"]["direct"]["throughput_ratio"], 1.0);
    assert_eq!(
        json["paths"]["fastpath"]["throughput_runs"][1]["error"],
        "reset"
    );
    assert_eq!(
        json["paths"]["fastpath"]["throughput_runs"][0]["gbit_per_s"],
        9.0
    );
    assert_eq!(json["targets"][1]["name"], "fastpath_throughput");
}

#[test]
fn other_sandboxes_are_named_in_a_warning() {
    let mut m = measured(vec![latency(25.0, 60.0); 3], vec![gbit(9.0); 3]);
    m.other_sandboxes = vec!["ambit-sb-restart-7".into()];
    let summary = summarize(m);
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(summary.warnings[0].contains("ambit-sb-restart-7"));
}
