use super::*;

fn evidence(saw: &str, tunnelled: Option<u64>, streams: u64) -> RouteEvidence {
    RouteEvidence {
        client_ip: "10.1.1.2".into(),
        server_saw: saw.into(),
        server_node_ips: vec!["10.0.0.2".into(), "10.1.2.1".into()],
        node1_tunnelled: tunnelled,
        node1_mtls_opened: 1,
        node2_streams_accepted: streams,
    }
}

fn rr(p50_us: f64) -> Attempt<Latency> {
    Attempt::Measured(Latency {
        p50_us,
        p99_us: 2.0 * p50_us,
        round_trips: 1000,
    })
}

fn bulk(gbit_per_s: f64) -> Attempt<Throughput> {
    Attempt::Measured(Throughput { gbit_per_s })
}

fn rss(idle_mb: f64) -> AgentRss {
    AgentRss {
        idle_mb,
        load_peak_mb: idle_mb * 2.0,
        after_mb: idle_mb,
    }
}

fn method() -> Method {
    Method {
        runs: 3,
        reported: "median run",
        settle_seconds: 1.0,
        rr_message_bytes: 1024,
        rr_warmup_seconds: 0.3,
        rr_seconds: 3.0,
        bulk_seconds: 3.0,
        connect_connections: 500,
        connect_bytes: 64,
        connect_rate: "",
        rss: "",
    }
}

#[test]
fn each_path_on_its_route_passes_the_check() {
    let (_, direct) = check_route(CrossPath::Direct, &evidence("10.1.1.2", None, 0));
    let (_, tunnel) = check_route(CrossPath::Tunnel, &evidence("10.0.0.2", Some(3), 3));
    let (notes, kept) = check_route(CrossPath::Tunnel, &evidence("10.1.1.2", Some(3), 3));
    assert!(direct.is_empty(), "{direct:?}");
    assert!(tunnel.is_empty(), "{tunnel:?}");
    assert!(kept.is_empty(), "{kept:?}");
    assert!(
        notes.iter().any(|n| n.contains("kept by node2's agent")),
        "{notes:?}"
    );
}

#[test]
fn a_server_that_saw_neither_the_client_nor_the_agent_is_flagged() {
    let (_, warnings) = check_route(CrossPath::Tunnel, &evidence("10.9.9.9", Some(3), 3));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("neither the client"), "{warnings:?}");
}

#[test]
fn tunnel_path_that_bypassed_the_agents_is_flagged() {
    // The server seeing the client is no evidence either way: the agents' counters are.
    let (_, warnings) = check_route(CrossPath::Tunnel, &evidence("10.1.1.2", Some(0), 0));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn a_missing_tunnelled_counter_is_a_warning_not_a_failure() {
    let (notes, warnings) = check_route(CrossPath::Tunnel, &evidence("10.0.0.2", None, 5));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("ambit_outbound_tunnelled_total"));
    assert_eq!(notes.len(), 2, "{notes:?}");
}

#[test]
fn added_latency_is_the_difference_of_the_median_runs() {
    let summary = summarize(Measured {
        method: method(),
        paths: ByPath {
            direct: PathRuns {
                latency: vec![rr(20.0), rr(40.0), rr(19.0)],
                throughput: vec![bulk(10.0), bulk(12.0), bulk(11.0)],
                bulk_cpu: vec![],
                connect: vec![],
                route: evidence("10.1.1.2", None, 0),
            },
            tunnel: PathRuns {
                latency: vec![rr(100.0), rr(90.0), rr(95.0)],
                throughput: vec![bulk(6.0), bulk(5.0), bulk(7.0)],
                bulk_cpu: vec![
                    Attempt::Measured(BulkCpu::new(2_000_000_000, 2.0, 1.0)),
                    Attempt::Measured(BulkCpu::new(1_000_000_000, 1.0, 1.0)),
                    Attempt::Failed {
                        error: "no /proc/1/stat".into(),
                    },
                ],
                connect: vec![],
                route: evidence("10.0.0.2", Some(6), 6),
            },
        },
        rss: ByNode {
            node1: rss(12.0),
            node2: rss(21.0),
        },
        other_sandboxes: vec![],
    });
    assert_eq!(summary.added_p50_us, Some(75.0));
    assert_eq!(summary.paths.tunnel.throughput_ratio, Some(6.0 / 11.0));
    assert_eq!(summary.paths.tunnel.conns_per_s, None);
    // 1.5 s/GB and 2.0 s/GB measured; the median of two is the upper one, as for the others.
    assert_eq!(summary.paths.tunnel.agent_cpu_s_per_gb, Some(2.0));
    assert!(summary.warnings.iter().any(|w| w.contains("agent CPU")));
    let passed: Vec<bool> = summary.targets.iter().map(|t| t.pass).collect();
    assert_eq!(passed, [true, true, true, false]);
    assert!(!summary.all_targets_met);
}
