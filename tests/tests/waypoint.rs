//! The waypoint on the sandbox, through the real tunnel: the client's node agent sends the
//! connections of a namespace that uses a waypoint to the waypoint pod over HBONE; the
//! waypoint applies the namespace's HTTPRoutes and tunnels each request to the endpoint it
//! chose, through that endpoint's node agent.
//!
//! Topology (every test): node1 runs `shop/client` and `shop/reviews-v1`; node2 runs
//! `shop/reviews-v2` and the waypoint pod `shop/waypoint-0`. Namespace `shop` is enrolled and
//! labelled `ambit.dev/use-waypoint: waypoint`. Services: `reviews` (both pods), `reviews-v1`,
//! `reviews-v2` (one pod each), all with port 80 → the test app's HTTP port and 9090 → its
//! gRPC port; `plain` selects both pods but opts out of the waypoint (`use-waypoint: none`).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::process::Output;
use std::time::{Duration, Instant};

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{
    GrpcCall, GrpcReport, HitCounts, HttpOpts, HttpReport, WsReport, GRPC_PORT, HTTP_PORT,
};
use ambit_e2e::{Pod, Process};
use ambit_mesh::model::{Protocol, Service, ServicePort};
use common::pod;
use serde::de::DeserializeOwned;

/// The port Services expose for HTTP, and for gRPC.
const SVC_HTTP: u16 = 80;
const SVC_GRPC: u16 = 9090;

struct Shop {
    mesh: MeshCluster,
    client: Pod,
    v1: Pod,
    v2: Pod,
    /// VIPs by Service name.
    vips: BTreeMap<&'static str, Ipv4Addr>,
    /// The test app's servers, by pod name (`reviews-v1`, `reviews-v2`).
    servers: BTreeMap<String, Process>,
}

/// Starts the topology above with `routes` (HTTPRoute YAML documents) in the mesh config and
/// `route_file` (the waypoint's `--routes`: traffic policies) if given.
fn shop(label: &str, routes: &[&str], route_file: Option<&str>) -> Shop {
    shop_with(label, routes, route_file, |_| {})
}

/// [`shop`], with `more` applied to the cluster before anything starts.
fn shop_with(
    label: &str,
    routes: &[&str],
    route_file: Option<&str>,
    more: impl FnOnce(&mut MeshCluster),
) -> Shop {
    let mut mesh = MeshCluster::new(label).expect("sandbox");
    mesh.add_node("node1").expect("node1");
    mesh.add_node("node2").expect("node2");
    mesh.add_pod("node1", "shop", "client").expect("client");
    let v1 = mesh.add_pod("node1", "shop", "reviews-v1").expect("v1");
    let v2 = mesh.add_pod("node2", "shop", "reviews-v2").expect("v2");
    mesh.add_waypoint("node2", "shop", "waypoint")
        .expect("waypoint");
    mesh.enroll_namespace("shop");
    mesh.use_waypoint("shop", None, "waypoint");

    let mut vips = BTreeMap::new();
    let state = mesh.state_mut();
    for (pod, version) in [("reviews-v1", "v1"), ("reviews-v2", "v2")] {
        let w = state
            .workloads
            .iter_mut()
            .find(|w| w.name == pod)
            .expect("pod listed");
        w.labels.insert("app".into(), "reviews".into());
        w.labels.insert("version".into(), version.into());
    }
    for (n, (name, selector)) in [
        ("reviews", ("app", "reviews")),
        ("reviews-v1", ("version", "v1")),
        ("reviews-v2", ("version", "v2")),
        ("plain", ("app", "reviews")),
    ]
    .into_iter()
    .enumerate()
    {
        let vip = mesh.sb.service_ip(n as u8 + 1);
        vips.insert(name, vip);
        mesh.state_mut().services.push(Service {
            name: name.into(),
            namespace: "shop".into(),
            vips: vec![IpAddr::V4(vip)],
            ports: vec![
                ServicePort {
                    name: Some("http".into()),
                    port: SVC_HTTP,
                    target_port: HTTP_PORT,
                    protocol: Protocol::Tcp,
                },
                ServicePort {
                    name: Some("grpc".into()),
                    port: SVC_GRPC,
                    target_port: GRPC_PORT,
                    protocol: Protocol::Tcp,
                },
            ],
            selector: BTreeMap::from([(selector.0.to_string(), selector.1.to_string())]),
            labels: BTreeMap::new(),
        });
    }
    mesh.use_waypoint("shop", Some("plain"), "none");
    for route in routes {
        mesh.add_http_route(route).expect("route");
    }
    more(&mut mesh);

    mesh.start_agents().expect("agents");
    let file = route_file.map(|text| {
        let path = mesh.sb.dir().join("waypoint-routes.yaml");
        std::fs::write(&path, text).expect("route file");
        path
    });
    mesh.start_waypoint("shop", "waypoint", file.as_deref())
        .expect("waypoint");
    let servers = [&v1, &v2]
        .into_iter()
        .map(|p| (p.name.clone(), mesh.serve(p).expect("server")))
        .collect();
    mesh.wait_enrolled("node1", &["shop/client", "shop/reviews-v1"])
        .expect("enrolled");
    let client = pod(&mesh, "shop", "client");
    Shop {
        mesh,
        client,
        v1,
        v2,
        vips,
        servers,
    }
}

impl Shop {
    fn url(&self, service: &str, path: &str) -> String {
        format!("http://{}:{SVC_HTTP}{path}", self.vips[service])
    }

    /// Runs the test app's HTTP client in the client pod.
    fn http(&self, service: &str, path: &str, opts: &HttpOpts) -> HttpReport {
        let out = self
            .mesh
            .run_client(
                &self.client,
                self.mesh.app.http(&self.url(service, path), opts),
            )
            .expect("http client");
        report(&out)
    }

    /// GET `/hits` from one pod's server, from its node's network namespace: around the
    /// mesh (a pod address of `shop` would go through the waypoint too).
    fn hits(&self, server: &Pod) -> HitCounts {
        let url = format!("http://{}:{HTTP_PORT}/hits", server.ip);
        let node = self.mesh.node(&server.node).expect("node");
        let out = self
            .mesh
            .sb
            .run_in_node(
                &node,
                self.mesh.app.http(&url, &HttpOpts::default()),
                Duration::from_secs(30),
            )
            .expect("hits");
        let report: HttpReport = report(&out);
        assert_eq!(report.ok, 1, "GET /hits from {}: {report:?}", server.id());
        serde_json::from_str(report.last_body.as_deref().expect("a body")).expect("hit counts")
    }

    /// One sample of the waypoint's metrics (`name{labels}` exactly), 0 when absent.
    fn waypoint_metric(&self, sample: &str) -> u64 {
        let text = self
            .mesh
            .waypoint_metrics("shop", "waypoint")
            .expect("waypoint metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Requests the waypoint has answered, over every route and status.
    fn waypoint_requests(&self) -> u64 {
        let text = self
            .mesh
            .waypoint_metrics("shop", "waypoint")
            .expect("waypoint metrics");
        text.lines()
            .filter(|l| l.starts_with("ambit_waypoint_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

fn report<T: DeserializeOwned>(out: &Output) -> T {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no report from the client: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report {line:?}: {e}"))
}

fn opts(requests: u64, concurrency: u32) -> HttpOpts {
    HttpOpts {
        requests,
        concurrency,
        ..HttpOpts::default()
    }
}

fn with_header(mut opts: HttpOpts, name: &str, value: &str) -> HttpOpts {
    opts.headers.push((name.into(), value.into()));
    opts
}

const SPLIT_AND_HEADER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{headers: [{name: x-user, value: tester}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /canary}}]
    backendRefs: [{name: reviews-v1, port: 80, weight: 90}, {name: reviews-v2, port: 80, weight: 10}]
  - backendRefs: [{name: reviews-v1, port: 80}]
"#;

#[test]
fn a_90_10_split_sends_a_tenth_of_2000_requests_to_the_canary() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-split", &[SPLIT_AND_HEADER], None);
    let report = shop.http("reviews", "/canary", &opts(2000, 8));
    assert_eq!(report.ok, 2000, "{report:?}");
    let canary = report.servers.get("reviews-v2").copied().unwrap_or(0);
    let share = canary as f64 / 2000.0;
    eprintln!("canary share {share:.3} ({report:?})");
    assert!((0.07..=0.13).contains(&share), "canary share {share}");
    assert_eq!(
        report.servers.get("reviews-v1").copied().unwrap_or(0) + canary,
        2000
    );
}

#[test]
fn a_header_match_sends_the_tester_to_v2_and_everyone_else_to_v1() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-header", &[SPLIT_AND_HEADER], None);
    for http2 in [false, true] {
        let mut plain = opts(50, 4);
        plain.http2 = http2;
        let tester = with_header(plain.clone(), "x-user", "tester");
        let others = with_header(plain.clone(), "x-user", "someone-else");
        for (opts, expect) in [
            (tester, "reviews-v2"),
            (others, "reviews-v1"),
            (plain, "reviews-v1"),
        ] {
            let report = shop.http("reviews", "/", &opts);
            assert_eq!(report.ok, 50, "{opts:?}: {report:?}");
            assert_eq!(
                report.servers,
                BTreeMap::from([(expect.to_string(), 50)]),
                "{opts:?}"
            );
        }
    }
}

const RETRIES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    backendRefs: [{name: reviews-v1, port: 80}]
    retry: {attempts: 3, codes: [503], backoff: 5ms}
  - matches: [{path: {type: PathPrefix, value: /no-retry}}]
    backendRefs: [{name: reviews-v1, port: 80}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /flaky}}
  - matches: [{path: {type: PathPrefix, value: /status}}]
    backendRefs: [{name: reviews-v1, port: 80}]
    retry: {attempts: 3, codes: [503], backoff: 1ms}
"#;

#[test]
fn retries_hide_a_backend_failing_two_times_in_three_and_the_budget_caps_an_outage() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-retry", &[RETRIES], None);

    eprintln!("without retries, two requests in three fail");
    let report = shop.http("reviews", "/no-retry", &opts(30, 1));
    assert_eq!(report.statuses.get(&503).copied(), Some(20), "{report:?}");
    assert_eq!(report.ok, 10, "{report:?}");

    eprintln!("with retry.attempts 3, every request succeeds");
    let before = shop
        .hits(&shop.v1)
        .by_path
        .get("/flaky")
        .copied()
        .unwrap_or(0);
    let report = shop.http("reviews", "/flaky", &opts(30, 1));
    assert_eq!(report.ok, 30, "{report:?}");
    let tries = shop.hits(&shop.v1).by_path["/flaky"] - before;
    assert_eq!(tries, 90, "each request takes three tries");

    eprintln!("an outage (always 503): the retry budget, not the attempts, bounds the load");
    let report = shop.http("reviews", "/status/503", &opts(200, 4));
    assert_eq!(report.statuses.get(&503).copied(), Some(200), "{report:?}");
    let tries = shop.hits(&shop.v1).by_path["/status/503"];
    eprintln!("200 failing requests cost {tries} tries (800 without a budget)");
    // The budget: retries up to 20% of requests (40) plus 10 per second over its 10 s
    // window (100), whatever the attempts allow: 340, a few more if the run outlasts the
    // window. Without the budget, 800.
    assert!(
        (200..=360).contains(&tries),
        "the budget should cap 200 requests near 340 tries, got {tries}"
    );
    let metrics = shop
        .mesh
        .waypoint_metrics("shop", "waypoint")
        .expect("metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("ambit_waypoint_retry_budget_exhausted_total{") && !l.ends_with(" 0")
        ),
        "the waypoint counts retries the budget refused:\n{metrics}"
    );
}

const TIMEOUT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /sleep}}]
    backendRefs: [{name: reviews-v1, port: 80}]
    timeouts: {request: 200ms}
"#;

#[test]
fn a_200ms_request_timeout_answers_504_before_a_1s_backend() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-timeout", &[TIMEOUT], None);
    let started = Instant::now();
    let report = shop.http("reviews", "/sleep/1000", &opts(1, 1));
    let took = started.elapsed();
    assert_eq!(report.statuses, BTreeMap::from([(504, 1)]), "{report:?}");
    eprintln!(
        "504 after {} ms (client process {took:?})",
        report.latency_ms.max
    );
    assert!(
        report.latency_ms.max >= 190.0 && report.latency_ms.max < 300.0,
        "504 expected within 200-300 ms, took {} ms",
        report.latency_ms.max
    );
    let fast = shop.http("reviews", "/sleep/10", &opts(1, 1));
    assert_eq!(fast.ok, 1, "a request under the timeout succeeds: {fast:?}");
}

const GRPC_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: reviews-grpc, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9090}]
  rules:
  - matches: [{headers: [{name: x-track, value: canary}], method: {service: ambit.testapp.v1.Echo}}]
    backendRefs: [{name: reviews-v2, port: 9090}]
  - backendRefs: [{name: reviews-v1, port: 9090}]
"#;

#[test]
fn grpc_unary_and_server_streaming_calls_follow_a_grpcroute_header_match() {
    if !require_privileged() {
        return;
    }
    let shop = shop_with("wp-grpc", &[], None, |mesh| {
        mesh.add_grpc_route(GRPC_ROUTE).expect("GRPCRoute")
    });
    let addr = SocketAddrV4::new(shop.vips["reviews"], SVC_GRPC);
    let call = |headers: Vec<(String, String)>, call: GrpcCall| -> GrpcReport {
        let out = shop
            .mesh
            .run_client(&shop.client, shop.mesh.app.grpc(addr, &headers, call))
            .expect("grpc client");
        report(&out)
    };
    let canary = vec![("x-track".to_string(), "canary".to_string())];

    let unary = call(
        Vec::new(),
        GrpcCall::Unary {
            message: "hello".into(),
        },
    );
    assert!(unary.ok, "{unary:?}");
    assert_eq!(unary.server.as_deref(), Some("reviews-v1"), "{unary:?}");
    assert_eq!(unary.replies, vec!["hello".to_string()]);

    let unary = call(
        canary.clone(),
        GrpcCall::Unary {
            message: "hi".into(),
        },
    );
    assert!(unary.ok, "{unary:?}");
    assert_eq!(unary.server.as_deref(), Some("reviews-v2"), "{unary:?}");

    let stream = call(
        canary,
        GrpcCall::Stream {
            message: "tick".into(),
            count: 5,
        },
    );
    assert!(stream.ok, "{stream:?}");
    assert_eq!(stream.server.as_deref(), Some("reviews-v2"), "{stream:?}");
    assert_eq!(stream.indices, vec![0, 1, 2, 3, 4], "{stream:?}");
}

#[test]
fn a_websocket_echoes_through_the_waypoint() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-ws", &[SPLIT_AND_HEADER], None);
    let url = format!("ws://{}:{SVC_HTTP}/ws", shop.vips["reviews"]);
    let out = shop
        .mesh
        .run_client(&shop.client, shop.mesh.app.ws(&url, "ping", 3))
        .expect("ws client");
    let ws: WsReport = report(&out);
    assert!(ws.ok, "{ws:?}");
    assert_eq!(ws.replies, vec!["reviews-v1:ping".to_string(); 3], "{ws:?}");
    assert!(
        shop.waypoint_requests() >= 1,
        "the upgrade went through the waypoint"
    );
}

const MIRROR: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - backendRefs: [{name: reviews-v1, port: 80}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: reviews-v2, port: 80}}
"#;

#[test]
fn a_mirror_gets_a_copy_and_the_client_sees_only_the_primary() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-mirror", &[MIRROR], None);
    let report = shop.http("reviews", "/mirrored", &opts(20, 2));
    assert_eq!(report.ok, 20, "{report:?}");
    assert_eq!(
        report.servers,
        BTreeMap::from([("reviews-v1".to_string(), 20)])
    );
    // Mirrors are fire-and-forget: give the last ones a moment to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shadow = shop
            .hits(&shop.v2)
            .by_path
            .get("/mirrored")
            .copied()
            .unwrap_or(0);
        if shadow == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow received {shadow} of 20 copies"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const OUTLIER_POLICY: &str = r#"
services:
- namespace: shop
  name: reviews
  ports: []
  trafficPolicy:
    outlierDetection: {consecutiveFailures: 3, interval: 30s, baseEjectionTime: 3s, maxEjectionPercent: 50}
"#;

#[test]
fn outlier_detection_ejects_a_failing_endpoint_and_readmits_it_after_the_backoff() {
    if !require_privileged() {
        return;
    }
    // No route for `reviews`: its requests go to its own two endpoints.
    let mut shop = shop("wp-outlier", &[], Some(OUTLIER_POLICY));
    let warm = shop.http("reviews", "/", &opts(40, 2));
    assert_eq!(warm.ok, 40, "{warm:?}");
    assert_eq!(warm.servers.len(), 2, "both endpoints serve: {warm:?}");

    eprintln!("v2's server stops: connects to it fail until the waypoint ejects it");
    let v2 = shop.servers.remove("reviews-v2").expect("v2 server");
    v2.kill().expect("stop v2");
    let failing = shop.http("reviews", "/", &opts(40, 1));
    eprintln!("while ejecting: {failing:?}");
    assert!(
        failing.ok < 40,
        "some requests met the dead endpoint: {failing:?}"
    );
    assert!(
        failing.requests - failing.ok <= 6,
        "ejected after 3 consecutive failures: {failing:?}"
    );
    let ejected = shop.http("reviews", "/", &opts(40, 2));
    assert_eq!(ejected.ok, 40, "v2 is ejected, v1 serves all: {ejected:?}");
    assert_eq!(
        ejected.servers,
        BTreeMap::from([("reviews-v1".to_string(), 40)])
    );

    eprintln!("v2 serves again; after the 3 s ejection it is readmitted");
    let server = shop.mesh.serve(&shop.v2).expect("restart v2");
    shop.servers.insert("reviews-v2".into(), server);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let report = shop.http("reviews", "/", &opts(20, 2));
        if report.servers.contains_key("reviews-v2") {
            assert_eq!(report.ok, 20, "{report:?}");
            break;
        }
        assert!(Instant::now() < deadline, "v2 never readmitted: {report:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_invalid_route_is_rejected_with_a_reason_and_the_previous_routes_keep_serving() {
    if !require_privileged() {
        return;
    }
    let mut shop = shop("wp-invalid", &[SPLIT_AND_HEADER], None);
    let tester = with_header(opts(10, 1), "x-user", "tester");
    let before = shop.http("reviews", "/", &tester);
    assert_eq!(
        before.servers,
        BTreeMap::from([("reviews-v2".to_string(), 10)])
    );

    eprintln!("the route is replaced by one whose regular expression does not compile");
    let broken = SPLIT_AND_HEADER.replace(
        "{headers: [{name: x-user, value: tester}]}",
        "{path: {type: RegularExpression, value: \"/([unclosed\"}}",
    );
    shop.mesh.replace_http_route(&broken).expect("route");
    shop.mesh.write_config().expect("config");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shop
        .mesh
        .waypoint_log("shop", "waypoint")
        .contains("route rejected")
    {
        assert!(
            Instant::now() < deadline,
            "no rejection logged:\n{}",
            shop.mesh.waypoint_log("shop", "waypoint")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = shop.mesh.waypoint_log("shop", "waypoint");
    let line = log
        .lines()
        .find(|l| l.contains("route rejected") && l.contains("reviews"))
        .unwrap_or_else(|| panic!("the rejection names the route:\n{log}"));
    let reason = line.to_lowercase();
    assert!(
        reason.contains("regular expression") || reason.contains("regex"),
        "the reason names the bad expression: {line}"
    );
    let metrics = shop
        .mesh
        .waypoint_metrics("shop", "waypoint")
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ambit_waypoint_routes_rejected_total") && !l.ends_with(" 0")),
        "{metrics}"
    );

    eprintln!("the last accepted version still routes the tester to v2");
    let after = shop.http("reviews", "/", &tester);
    assert_eq!(
        after.servers,
        BTreeMap::from([("reviews-v2".to_string(), 10)])
    );
}

#[test]
fn traffic_to_a_service_without_a_waypoint_takes_no_l7_hop() {
    if !require_privileged() {
        return;
    }
    let shop = shop("wp-bypass", &[SPLIT_AND_HEADER], None);
    let through = shop.http("reviews", "/", &opts(10, 1));
    assert_eq!(through.ok, 10, "{through:?}");
    let requests = shop.waypoint_requests();
    let streams = shop.waypoint_metric("ambit_hbone_inbound_streams_total{status=\"200\"}");
    assert!(
        requests >= 10 && streams >= 1,
        "the waypoint carried reviews"
    );

    let plain = shop.http("plain", "/", &opts(40, 2));
    assert_eq!(plain.ok, 40, "{plain:?}");
    assert_eq!(
        plain.servers.len(),
        2,
        "both endpoints, balanced by the agent: {plain:?}"
    );
    assert_eq!(
        shop.waypoint_requests(),
        requests,
        "no request reached the waypoint"
    );
    assert_eq!(
        shop.waypoint_metric("ambit_hbone_inbound_streams_total{status=\"200\"}"),
        streams,
        "no connection reached the waypoint"
    );
}
