//! Route matching, precedence and validation, case by case.

use std::net::SocketAddr;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::tcproutes::TcpRoute;
use http::{HeaderMap, HeaderValue, Method, Uri};

use super::filters::PathModifier;
use super::*;
use crate::model::{Service, ServicePort};

fn services() -> Services {
    ["reviews", "v1", "v2", "v3", "shadow"]
        .into_iter()
        .map(|name| Service {
            namespace: "shop".into(),
            name: name.into(),
            ports: vec![ServicePort {
                port: 80,
                app_protocol: None,
                endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            }],
            traffic_policy: Default::default(),
        })
        .collect()
}

/// An HTTPRoute on Service shop/reviews with the given rules (YAML) and creation time.
fn route(name: &str, created: &str, rules: &str) -> HttpRoute {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\"}}\n\
         spec:\n  parentRefs: [{{kind: Service, group: \"\", name: reviews, port: 80}}]\n  rules:\n{rules}"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("bad test route {name}: {e}\n{yaml}"))
}

fn table(routes: &[HttpRoute]) -> (RouteTable, Vec<RouteVerdict>) {
    let (table, verdicts, _) = build(
        &services(),
        routes,
        &[],
        &[],
        &LastGood::default(),
        &Default::default(),
    );
    (table, verdicts)
}

fn dest() -> Destination {
    Destination {
        service: ServiceName::new("shop", "reviews"),
        port: 80,
    }
}

/// The label (route/rule) that `method uri` with `headers` lands on, or "404"/"none".
fn lands(table: &RouteTable, method: Method, uri: &str, headers: &[(&str, &str)]) -> String {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let uri: Uri = uri.parse().expect("uri");
    match table.lookup(&dest(), &method, &uri, &map) {
        Lookup::Matched(r) => r.rule.label.clone(),
        Lookup::NotFound => "404".into(),
        Lookup::NoRoutes => "none".into(),
    }
}

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-06-01T00:00:00Z";

fn to(backend: &str) -> String {
    format!("    backendRefs: [{{name: {backend}, port: 80}}]\n")
}

#[test]
fn exact_path_beats_any_prefix() {
    let r = route(
        "r",
        T0,
        &format!(
            "  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]\n{}\
         \x20 - matches: [{{path: {{type: Exact, value: /api/v1}}}}]\n{}",
            to("v1"),
            to("v2")
        ),
    );
    let (t, _) = table(&[r]);
    assert_eq!(lands(&t, Method::GET, "/api/v1", &[]), "shop/r/1");
    assert_eq!(lands(&t, Method::GET, "/api/v1/x", &[]), "shop/r/0");
}

#[test]
fn longest_prefix_wins_and_prefixes_match_whole_segments() {
    let r = route(
        "r",
        T0,
        &format!(
            "  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /api/}}}}]\n{}",
            to("v1"),
            to("v2")
        ),
    );
    let (t, _) = table(&[r]);
    assert_eq!(lands(&t, Method::GET, "/api", &[]), "shop/r/1");
    assert_eq!(lands(&t, Method::GET, "/api/x", &[]), "shop/r/1");
    assert_eq!(lands(&t, Method::GET, "/apix", &[]), "shop/r/0");
}

#[test]
fn regex_path_matches_the_whole_path_and_ranks_below_prefixes() {
    let r =
        route(
            "r",
            T0,
            &format!(
        "  - matches: [{{path: {{type: RegularExpression, value: \"/items/[0-9]+\"}}}}]\n{}\
         \x20 - matches: [{{path: {{type: PathPrefix, value: /items}}}}]\n{}", to("v1"), to("v2")),
        );
    let (t, _) = table(&[r]);
    assert_eq!(
        lands(&t, Method::GET, "/items/42", &[]),
        "shop/r/1",
        "prefix outranks regex"
    );
    let r = route(
        "r",
        T0,
        &format!(
            "  - matches: [{{path: {{type: RegularExpression, value: \"/items/[0-9]+\"}}}}]\n{}",
            to("v1")
        ),
    );
    let (t, _) = table(&[r]);
    assert_eq!(lands(&t, Method::GET, "/items/42", &[]), "shop/r/0");
    assert_eq!(
        lands(&t, Method::GET, "/items/42/x", &[]),
        "404",
        "regex is anchored"
    );
}

#[test]
fn method_match_beats_more_headers_at_equal_path() {
    let r = route(
        "r",
        T0,
        &format!(
        "  - matches: [{{headers: [{{name: a, value: \"1\"}}, {{name: b, value: \"2\"}}]}}]\n{}\
         \x20 - matches: [{{method: POST}}]\n{}", to("v1"), to("v2")),
    );
    let (t, _) = table(&[r]);
    assert_eq!(
        lands(&t, Method::POST, "/", &[("a", "1"), ("b", "2")]),
        "shop/r/1"
    );
    assert_eq!(
        lands(&t, Method::GET, "/", &[("a", "1"), ("b", "2")]),
        "shop/r/0"
    );
    assert_eq!(lands(&t, Method::GET, "/", &[("a", "1")]), "404");
}

#[test]
fn more_headers_beat_more_query_params() {
    let r = route(
        "r",
        T0,
        &format!(
            "  - matches: [{{queryParams: [{{name: q, value: x}}, {{name: r, value: y}}]}}]\n{}\
         \x20 - matches: [{{headers: [{{name: x-user, value: tester}}]}}]\n{}\
         \x20 - matches: [{{queryParams: [{{name: q, value: x}}]}}]\n{}",
            to("v1"),
            to("v2"),
            to("v3")
        ),
    );
    let (t, _) = table(&[r]);
    assert_eq!(
        lands(&t, Method::GET, "/?q=x&r=y", &[("x-user", "tester")]),
        "shop/r/1"
    );
    assert_eq!(lands(&t, Method::GET, "/?q=x&r=y", &[]), "shop/r/0");
    assert_eq!(lands(&t, Method::GET, "/?q=x", &[]), "shop/r/2");
}

#[test]
fn header_and_query_regex_matches() {
    let r = route("r", T0, &format!(
        "  - matches: [{{headers: [{{name: X-Version, type: RegularExpression, value: \"v[23]\"}}], \
         queryParams: [{{name: debug, type: RegularExpression, value: \"1|true\"}}]}}]\n{}", to("v2")));
    let (t, _) = table(&[r]);
    assert_eq!(
        lands(&t, Method::GET, "/?debug=true", &[("x-version", "v3")]),
        "shop/r/0"
    );
    assert_eq!(
        lands(&t, Method::GET, "/?debug=truex", &[("x-version", "v3")]),
        "404"
    );
    assert_eq!(
        lands(&t, Method::GET, "/?debug=1", &[("x-version", "v4")]),
        "404"
    );
}

#[test]
fn older_route_wins_a_tie_then_namespace_and_name() {
    let rules = format!(
        "  - matches: [{{path: {{type: PathPrefix, value: /a}}}}]\n{}",
        to("v1")
    );
    let (t, _) = table(&[route("zeta", T1, &rules), route("beta", T0, &rules)]);
    assert_eq!(
        lands(&t, Method::GET, "/a", &[]),
        "shop/beta/0",
        "oldest first"
    );
    let (t, _) = table(&[route("zeta", T0, &rules), route("beta", T0, &rules)]);
    assert_eq!(
        lands(&t, Method::GET, "/a", &[]),
        "shop/beta/0",
        "then alphabetical"
    );
    let (t, _) = table(&[route("alpha", T1, &rules), route("zeta", T0, &rules)]);
    assert_eq!(
        lands(&t, Method::GET, "/a", &[]),
        "shop/zeta/0",
        "age before name"
    );
}

#[test]
fn within_a_route_the_first_rule_wins_a_tie() {
    let r = route(
        "r",
        T0,
        &format!(
            "  - matches: [{{path: {{value: /a}}}}]\n{}  - matches: [{{path: {{value: /a}}}}]\n{}",
            to("v1"),
            to("v2")
        ),
    );
    let (t, _) = table(&[r]);
    assert_eq!(lands(&t, Method::GET, "/a", &[]), "shop/r/0");
}

#[test]
fn a_service_without_routes_is_passed_through_and_unmatched_requests_get_404() {
    let (t, _) = table(&[]);
    assert_eq!(lands(&t, Method::GET, "/", &[]), "none");
    let (t, _) = table(&[route(
        "r",
        T0,
        &format!(
            "  - matches: [{{path: {{type: Exact, value: /only}}}}]\n{}",
            to("v1")
        ),
    )]);
    assert_eq!(lands(&t, Method::GET, "/other", &[]), "404");
}

#[test]
fn parent_port_limits_the_route_to_that_port() {
    let (t, _) = table(&[route("r", T0, &to("v1").replacen("    ", "  - ", 1))]);
    let other = Destination {
        port: 9090,
        ..dest()
    };
    assert!(matches!(
        t.lookup(
            &other,
            &Method::GET,
            &"/".parse().expect("uri"),
            &HeaderMap::new()
        ),
        Lookup::NoRoutes
    ));
}

fn rejected(rules: &str) -> String {
    let (_, verdicts) = table(&[route("bad", T0, rules)]);
    assert!(!verdicts[0].accepted, "route should be rejected: {rules}");
    verdicts[0].reason.clone()
}

#[test]
fn invalid_routes_are_rejected_with_a_reason() {
    let cases = [
        ("  - matches: [{path: {type: RegularExpression, value: \"(\"}}]\n", "regular expression"),
        ("  - filters: [{type: CORS, cors: {}}]\n", "not supported"),
        ("  - backendRefs: [{name: nowhere, port: 80}]\n", "does not exist"),
        ("  - backendRefs: [{name: v1, port: 80, weight: 0}, {name: v2, port: 80, weight: 0}]\n", "weight 0"),
        ("  - backendRefs: [{name: v1}]\n", "needs a port"),
        ("  - backendRefs: [{name: v1, port: 81}]\n", "no port 81"),
        ("  - backendRefs: [{name: v1, namespace: other, port: 80}]\n", "ReferenceGrant"),
        ("  - timeouts: {request: 1s, backendRequest: 2s}\n", "must not exceed"),
        ("  - timeouts: {request: 1.5s}\n", "timeouts.request"),
        ("  - retry: {codes: [200]}\n", "retry.codes"),
        ("  - matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]\n", "PathPrefix"),
        ("  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: ghost, port: 80}}}]\n", "mirror"),
    ];
    for (rules, needle) in cases {
        let reason = rejected(rules);
        assert!(
            reason.contains(needle),
            "reason {reason:?} should mention {needle:?}"
        );
    }
}

#[test]
fn a_rejected_route_does_not_stop_the_others() {
    let good = route("good", T0, &to("v1").replacen("    ", "  - ", 1));
    let bad = route("bad", T0, "  - backendRefs: [{name: nowhere, port: 80}]\n");
    let (t, verdicts) = table(&[bad, good]);
    assert_eq!(verdicts.iter().filter(|v| v.accepted).count(), 1);
    assert_eq!(lands(&t, Method::GET, "/", &[]), "shop/good/0");
}

#[test]
fn a_rejected_update_keeps_the_last_accepted_version() {
    let v1 = route(
        "r",
        T0,
        &format!("  - matches: [{{path: {{value: /v1}}}}]\n{}", to("v1")),
    );
    let (_, _, last_good) = build(
        &services(),
        &[v1],
        &[],
        &[],
        &LastGood::default(),
        &Default::default(),
    );
    let broken = route(
        "r",
        T0,
        "  - matches: [{path: {type: RegularExpression, value: \"[\"}}]\n",
    );
    let (t, verdicts, _) = build(
        &services(),
        &[broken],
        &[],
        &[],
        &last_good,
        &Default::default(),
    );
    assert!(!verdicts[0].accepted);
    assert!(
        verdicts[0]
            .reason
            .contains("previously accepted version stays in force"),
        "{}",
        verdicts[0].reason
    );
    assert_eq!(lands(&t, Method::GET, "/v1", &[]), "shop/r/0");
}

#[test]
fn routes_without_a_service_parent_are_rejected() {
    let mut r = route("gw", T0, &to("v1").replacen("    ", "  - ", 1));
    r.spec.parent_refs = Some(vec![Default::default()]);
    if let Some(p) = r.spec.parent_refs.as_mut().and_then(|p| p.first_mut()) {
        p.name = "my-gateway".into();
    }
    let (_, verdicts) = table(&[r]);
    assert!(verdicts[0].reason.contains("no parentRef of kind Service"));
}

#[test]
fn weights_are_kept_and_zero_weights_dropped() {
    let r = route("r", T0, "  - backendRefs: [{name: v1, port: 80, weight: 90}, {name: v2, port: 80, weight: 10}, {name: v3, port: 80, weight: 0}]\n");
    let (t, _) = table(&[r]);
    let Lookup::Matched(routed) = t.lookup(
        &dest(),
        &Method::GET,
        &"/".parse().expect("uri"),
        &HeaderMap::new(),
    ) else {
        panic!("no match");
    };
    let weights: Vec<(String, u32)> = routed
        .rule
        .backends
        .iter()
        .map(|b| (b.backend.service.name.clone(), b.weight))
        .collect();
    assert_eq!(weights, [("v1".to_owned(), 90), ("v2".to_owned(), 10)]);
}

#[test]
fn replace_prefix_match_keeps_the_rest_of_the_path() {
    let m = PathModifier::ReplacePrefixMatch("/v2".into());
    assert_eq!(m.apply("/api/users", Some("/api")), "/v2/users");
    assert_eq!(m.apply("/api", Some("/api")), "/v2");
    let root = PathModifier::ReplacePrefixMatch("/".into());
    assert_eq!(root.apply("/api/users", Some("/api")), "/users");
    assert_eq!(root.apply("/api", Some("/api")), "/");
    let slash = PathModifier::ReplacePrefixMatch("/new/".into());
    assert_eq!(slash.apply("/old/x", Some("/old")), "/new/x");
    assert_eq!(
        PathModifier::ReplaceFullPath("/f".into()).apply("/a/b", Some("/a")),
        "/f"
    );
}

#[test]
fn tcp_routes_need_one_rule_with_weighted_backends() {
    let yaml = |rules: &str| -> TcpRoute {
        serde_yaml::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: t, namespace: shop}}\n\
             spec:\n  parentRefs: [{{kind: Service, group: \"\", name: reviews}}]\n  rules:\n{rules}"))
        .expect("tcp route")
    };
    let ok = yaml(
        "  - backendRefs: [{name: v1, port: 80, weight: 3}, {name: v2, port: 80, weight: 1}]\n",
    );
    let two =
        yaml("  - backendRefs: [{name: v1, port: 80}]\n  - backendRefs: [{name: v2, port: 80}]\n");
    let (t, verdicts, _) = build(
        &services(),
        &[],
        &[],
        &[ok, two.clone()],
        &LastGood::default(),
        &Default::default(),
    );
    assert!(verdicts[0].accepted, "{:?}", verdicts[0]);
    assert!(
        verdicts[1].reason.contains("exactly one rule"),
        "{:?}",
        verdicts[1]
    );
    assert_eq!(t.tcp(&dest()).expect("tcp rule").backends.len(), 2);
}

/// A GRPCRoute on Service shop/reviews with the given rules (YAML).
fn grpc_route(name: &str, rules: &str) -> GrpcRoute {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n\
         metadata: {{name: {name}, namespace: shop, creationTimestamp: \"{T0}\"}}\n\
         spec:\n  parentRefs: [{{kind: Service, group: \"\", name: reviews, port: 80}}]\n  rules:\n{rules}"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("bad test route {name}: {e}\n{yaml}"))
}

fn grpc_table(routes: &[GrpcRoute]) -> (RouteTable, Vec<RouteVerdict>) {
    let (table, verdicts, _) = build(
        &services(),
        &[],
        routes,
        &[],
        &LastGood::default(),
        &Default::default(),
    );
    (table, verdicts)
}

#[test]
fn grpc_method_matches_select_calls_by_service_and_method() {
    let rules = format!(
        "  - matches: [{{method: {{service: shop.Reviews, method: Get}}}}]\n{}\
         \x20 - matches: [{{method: {{service: shop.Reviews}}}}]\n{}\
         \x20 - matches: [{{method: {{method: Health}}}}]\n{}\
         \x20 - matches: [{{method: {{type: RegularExpression, service: \"shop\\\\..*\", method: \"List.*\"}}}}]\n{}",
        to("v1"),
        to("v2"),
        to("v3"),
        to("shadow"),
    );
    let (t, verdicts) = grpc_table(&[grpc_route("g", &rules)]);
    assert!(verdicts[0].accepted, "{verdicts:?}");
    assert_eq!(verdicts[0].kind, "GRPCRoute");
    for (path, rule) in [
        ("/shop.Reviews/Get", "shop/g/0"),
        ("/shop.Reviews/Put", "shop/g/1"),
        ("/shop.ReviewsV2/Put", "404"),
        ("/other.Thing/Health", "shop/g/2"),
        ("/shop.Ratings/ListAll", "shop/g/3"),
        ("/other.Ratings/ListAll", "404"),
    ] {
        assert_eq!(lands(&t, Method::POST, path, &[]), rule, "{path}");
    }
}

#[test]
fn grpc_header_matches_and_weighted_backends_compile_like_http_ones() {
    let rules = "  - matches: [{headers: [{name: x-track, value: canary}]}]\n    backendRefs: [{name: v2, port: 80}]\n  - backendRefs: [{name: v1, port: 80, weight: 9}, {name: v2, port: 80, weight: 1}]\n";
    let (t, verdicts) = grpc_table(&[grpc_route("g", rules)]);
    assert!(verdicts[0].accepted, "{verdicts:?}");
    assert_eq!(
        lands(
            &t,
            Method::POST,
            "/shop.Reviews/Get",
            &[("x-track", "canary")]
        ),
        "shop/g/0"
    );
    assert_eq!(
        lands(&t, Method::POST, "/shop.Reviews/Get", &[]),
        "shop/g/1"
    );
}

#[test]
fn a_grpc_method_match_without_service_or_method_is_rejected_with_a_reason() {
    let rules = format!("  - matches: [{{method: {{type: Exact}}}}]\n{}", to("v1"));
    let (_, verdicts) = grpc_table(&[grpc_route("g", &rules)]);
    assert!(!verdicts[0].accepted);
    assert!(
        verdicts[0]
            .reason
            .contains("needs a service, a method or both"),
        "{:?}",
        verdicts[0]
    );
}
