//! Medians, ratios, RPS per core, targets and route checks from made-up runs.

use super::super::table;
use super::*;

fn load(p50_ms: f64, p99_ms: f64) -> Attempt<Load> {
    Attempt::Measured(Load {
        requests: 8000,
        answered_per_s: 2000.0,
        p50_ms,
        p99_ms,
    })
}

fn max(rps: f64, proxy_cores: Option<f64>) -> Attempt<Max> {
    Attempt::Measured(Max {
        requests: 40_000,
        rps,
        proxy_cores,
    })
}

fn failed<T>() -> Attempt<T> {
    Attempt::Failed {
        error: "connection refused".into(),
    }
}

fn method() -> Method {
    Method {
        runs: 3,
        reported: "median run",
        route: "2 rules".into(),
        offered_rps: 2000,
        load_requests: 8000,
        max_requests: 40_000,
        concurrency: 32,
        pinning: "none".into(),
        rps_per_core: "req/s ÷ cores",
        rss: "VmRSS",
        load_average_before: Some(0.2),
    }
}

fn runs(loads: [(f64, f64); 3], maxes: [(f64, Option<f64>); 3]) -> Option<PathRuns> {
    Some(PathRuns {
        load: loads.iter().map(|&(a, b)| load(a, b)).collect(),
        max: maxes.iter().map(|&(r, c)| max(r, c)).collect(),
    })
}

fn good_route(path: ProxyPath) -> Option<RouteEvidence> {
    let proxied = path != ProxyPath::Direct;
    Some(RouteEvidence {
        tester_served_by: Some(if proxied { "v2" } else { "v1" }.into()),
        default_served_by: Some("v1".into()),
        tries_for_503: Some(if proxied { 3 } else { 1 }),
    })
}

/// h1 and h2 alike: direct 40k req/s, p99 0.4 ms; waypoint 20k at 0.5 cores (40k/core), p99
/// 0.8 ms; Envoy 16k at 0.8 cores (20k/core), p99 1.0 ms.
fn measured(with_envoy: bool) -> Measured {
    let protocol = || {
        [
            runs(
                [(0.2, 0.5), (0.1, 0.4), (0.1, 0.3)],
                [(39_000.0, None), (40_000.0, None), (41_000.0, None)],
            ),
            runs(
                [(0.3, 0.8), (0.3, 0.9), (0.3, 0.7)],
                [
                    (20_000.0, Some(0.5)),
                    (19_000.0, Some(0.5)),
                    (21_000.0, Some(0.5)),
                ],
            ),
            with_envoy
                .then(|| {
                    runs(
                        [(0.4, 1.0), (0.4, 1.1), (0.4, 0.9)],
                        [
                            (16_000.0, Some(0.8)),
                            (15_000.0, Some(0.8)),
                            (17_000.0, Some(0.8)),
                        ],
                    )
                })
                .flatten(),
        ]
    };
    Measured {
        method: method(),
        envoy: if with_envoy {
            EnvoyStatus::Used {
                version: "1.40.0".into(),
            }
        } else {
            EnvoyStatus::Absent {
                reason: "pip could not reach PyPI".into(),
            }
        },
        runs: [protocol(), protocol()],
        routes: [
            good_route(ProxyPath::Direct),
            good_route(ProxyPath::Waypoint),
            with_envoy.then(|| good_route(ProxyPath::Envoy)).flatten(),
        ],
        waypoint_rss: ProxyRss {
            idle_mb: 8.0,
            load_peak_mb: 12.0,
        },
        envoy_rss: with_envoy.then_some(ProxyRss {
            idle_mb: 30.0,
            load_peak_mb: 40.0,
        }),
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn figures_come_from_the_median_runs_and_ratios_from_direct() {
    let s = summarize(measured(true));
    let h1 = &s.protocols[0];
    assert!(close(h1.direct.rps, 40_000.0));
    assert!(close(h1.direct.p99_ms, 0.4));
    assert_eq!(h1.direct.rps_per_core, None);
    assert!(close(h1.waypoint.rps, 20_000.0));
    assert!(close(h1.waypoint.p99_ms, 0.8));
    assert!(close(h1.waypoint.rps_per_core, 40_000.0));
    assert!(close(h1.waypoint.rps_ratio, 0.5));
    assert!(close(h1.waypoint.p99_ratio, 2.0));
    let envoy = h1.envoy.as_ref().unwrap();
    assert!(close(envoy.rps_per_core, 20_000.0));
    assert!(close(envoy.p99_ratio, 2.5));
    let vs = h1.waypoint_vs_envoy.unwrap();
    assert!(close(vs.p99_ratio, 0.8));
    assert!(close(vs.rps_per_core_ratio, 2.0));
}

#[test]
fn the_waypoint_is_held_to_envoy_on_p99_and_rps_per_core() {
    let s = summarize(measured(true));
    let names: Vec<_> = s.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "h1_p99_vs_envoy",
            "h1_rps_per_core_vs_envoy",
            "h2_p99_vs_envoy",
            "h2_rps_per_core_vs_envoy"
        ]
    );
    assert!(s.all_targets_met, "{:?}", s.targets);
    assert!(s.routes.iter().all(|r| r.ok), "{:?}", s.routes);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);

    let mut slower = measured(true);
    for protocol in &mut slower.runs {
        protocol[1].as_mut().unwrap().max = vec![max(20_000.0, Some(0.9)); 3];
    }
    let s = summarize(slower);
    let h1 = s
        .targets
        .iter()
        .find(|t| t.name == "h1_rps_per_core_vs_envoy")
        .unwrap();
    assert!(!h1.pass && !s.all_targets_met);
}

#[test]
fn without_envoy_its_figures_are_absent_not_zero() {
    let s = summarize(measured(false));
    assert!(s
        .protocols
        .iter()
        .all(|p| p.envoy.is_none() && p.waypoint_vs_envoy.is_none()));
    assert!(s.targets.is_empty());
    assert!(
        s.warnings[0].contains("pip could not reach PyPI"),
        "{:?}",
        s.warnings
    );
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["protocols"][0].get("envoy").is_none());
    assert!(json.get("envoy_rss").is_none());
    assert_eq!(
        json["envoy"]["absent"]["reason"],
        "pip could not reach PyPI"
    );
    let text = table::render(&s);
    assert!(!text.contains("(c) Envoy"), "{text}");
    assert!(!text.contains("waypoint ÷ Envoy"), "{text}");
}

#[test]
fn failed_runs_are_warned_about_and_left_out_of_the_median() {
    let mut m = measured(true);
    let waypoint = m.runs[1][1].as_mut().unwrap();
    waypoint.load[0] = failed();
    waypoint.max = vec![failed(), failed(), failed()];
    let s = summarize(m);
    let h2 = &s.protocols[1];
    assert!(close(h2.waypoint.p99_ms, 0.9));
    assert_eq!(h2.waypoint.rps, None);
    assert_eq!(h2.waypoint_vs_envoy.unwrap().rps_per_core_ratio, None);
    let target = s
        .targets
        .iter()
        .find(|t| t.name == "h2_rps_per_core_vs_envoy")
        .unwrap();
    assert!(!target.pass);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("h2 (b) max-rps run failed in 3 of 3")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_busy_machine_is_warned_about() {
    let mut m = measured(true);
    m.method.load_average_before = Some(7.5);
    let s = summarize(m);
    assert!(
        s.warnings[0].starts_with("the load average was 7.5"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_proxy_that_does_not_route_or_retry_is_flagged() {
    let mut m = measured(true);
    m.routes[2] = Some(RouteEvidence {
        tester_served_by: Some("v1".into()),
        default_served_by: Some("v1".into()),
        tries_for_503: Some(1),
    });
    let s = summarize(m);
    let envoy = s
        .routes
        .iter()
        .find(|r| r.path == ProxyPath::Envoy)
        .unwrap();
    assert!(!envoy.ok);
    assert!(envoy.findings.iter().any(|f| f.contains("(want v2)")));
    assert!(envoy
        .findings
        .iter()
        .any(|f| f.contains("1 times (want 3)")));
    assert!(s.warnings.iter().any(|w| w.starts_with("(c): ")));
}

#[test]
fn the_table_shows_every_path_the_comparison_and_the_verdicts() {
    let text = table::render(&summarize(measured(true)));
    for needle in [
        "h1 (a) direct",
        "h2 (b) ambit-waypoint",
        "h2 (c) Envoy",
        "waypoint ÷ Envoy",
        "PASS  h1: waypoint p99",
        "result: all 4 targets met",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    let rss: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("  ambit-waypoint") || l.starts_with("  Envoy"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rss,
        [["ambit-waypoint", "8.0", "12.0"], ["Envoy", "30.0", "40.0"]]
    );
}
