//! Gateways, HTTPRoutes and GRPCRoutes in the file: read as manifests, mistakes named by path.

use crate::config::parse;
use crate::model::labels::USE_WAYPOINT;

const WAYPOINT: &str = "
namespaces:
  - name: shop
    labels: {ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: waypoint}
services:
  - name: reviews
    namespace: shop
    labels: {ambit.dev/use-waypoint: none}
gateways:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata:
      name: waypoint
      namespace: shop
      uid: 2d1f5c1e-0000-4000-8000-000000000001
      resourceVersion: \"4242\"
    spec:
      gatewayClassName: ambit-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
    status: {addresses: [{value: 10.10.1.9}]}
httpRoutes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: reviews, namespace: shop}
    spec:
      parentRefs: [{group: \"\", kind: Service, name: reviews}]
      rules:
        - backendRefs:
            - {name: reviews-v1, port: 9080, weight: 90}
            - {name: reviews-v2, port: 9080, weight: 10}
grpcRoutes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: ratings, namespace: shop}
    spec:
      parentRefs: [{group: \"\", kind: Service, name: ratings}]
      rules: [{backendRefs: [{name: ratings, port: 9090}]}]
";

fn assert_refused(yaml: &str, expected: &str) {
    match parse(yaml) {
        Ok(model) => panic!("accepted {model:?}"),
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }
}

#[test]
fn gateway_api_objects_are_read_with_their_specs() {
    let m = parse(WAYPOINT).unwrap();
    let gw = m.gateway("shop", "waypoint").unwrap();
    assert_eq!(gw.spec.gateway_class_name, "ambit-waypoint");
    assert_eq!(gw.spec.listeners[0].port, 15008);
    let route = m.http_route("shop", "reviews").unwrap();
    let backends = route.spec.rules.as_ref().unwrap()[0]
        .backend_refs
        .as_ref()
        .unwrap();
    let weights: Vec<_> = backends.iter().map(|b| (&*b.name, b.weight)).collect();
    assert_eq!(
        weights,
        [("reviews-v1", Some(90)), ("reviews-v2", Some(10))]
    );
    assert!(m.grpc_route("shop", "ratings").is_some());
    let reviews = m.service("shop", "reviews").unwrap();
    assert_eq!(reviews.labels[USE_WAYPOINT], "none");
}

#[test]
fn server_set_metadata_and_status_are_dropped() {
    let m = parse(WAYPOINT).unwrap();
    let gw = m.gateway("shop", "waypoint").unwrap();
    assert_eq!(gw.metadata.uid, None);
    assert_eq!(gw.metadata.resource_version, None);
    assert!(gw.status.is_none());
}

#[test]
fn dump_with_gateway_api_objects_parses_back_to_the_same_model() {
    let m = parse(WAYPOINT).unwrap();
    let dump = serde_yaml::to_string(&m).unwrap();
    assert_eq!(parse(&dump).unwrap(), m, "dump:\n{dump}");
}

#[test]
fn wrong_kind_is_named_by_its_path() {
    assert_refused(
        &WAYPOINT.replace("kind: GRPCRoute", "kind: HTTPRoute"),
        "config: grpcRoutes[0].kind: kind \"HTTPRoute\" does not belong in this list; \
         expected \"GRPCRoute\"",
    );
    assert_refused(
        &WAYPOINT.replacen(
            "gateway.networking.k8s.io/v1",
            "gateway.networking.k8s.io/v1beta1",
            1,
        ),
        "gateways[0].apiVersion: apiVersion \"gateway.networking.k8s.io/v1beta1\" is not \
         supported; use \"gateway.networking.k8s.io/v1\"",
    );
}

#[test]
fn missing_namespace_is_named_by_its_path() {
    assert_refused(
        &WAYPOINT.replace("{name: reviews, namespace: shop}", "{name: reviews}"),
        "httpRoutes[0].metadata.namespace: must not be empty",
    );
}

#[test]
fn schema_error_inside_a_spec_is_named_by_its_path() {
    assert_refused(
        &WAYPOINT.replace("port: 9080, weight: 90", "port: 9080, weight: ninety"),
        "httpRoutes[0].spec.rules[0].backendRefs[0].weight: invalid type",
    );
    assert_refused(
        &WAYPOINT.replace(
            "gatewayClassName: ambit-waypoint",
            "className: ambit-waypoint",
        ),
        "gateways[0].spec: missing field `gatewayClassName`",
    );
}

#[test]
fn duplicate_route_is_named_by_its_path() {
    let twice = WAYPOINT.replace(
        "grpcRoutes:",
        "  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: reviews, namespace: shop}
    spec: {}
grpcRoutes:",
    );
    assert_refused(
        &twice,
        "httpRoutes[1].metadata.name: HTTPRoute shop/reviews is listed twice",
    );
}

const POLICIES: &str = "
namespaces:
  - name: shop
    labels: {ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: waypoint}
services:
  - {name: reviews, namespace: shop}
  - {name: ratings, namespace: shop}
  - {name: legacy, namespace: shop, labels: {ambit.dev/use-waypoint: none}}
gateways:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: waypoint, namespace: shop}
    spec:
      gatewayClassName: ambit-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
trafficPolicies:
  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: whole-waypoint, namespace: shop}
    spec:
      targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
      connectionPool: {maxConnections: 100}
  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: reviews, namespace: shop}
    spec:
      targetRefs: [{group: \"\", kind: Service, name: reviews}]
      outlierDetection: {consecutiveFailures: 3}
";

#[test]
fn a_service_takes_its_own_traffic_policy_before_its_waypoints() {
    let m = parse(POLICIES).unwrap();
    assert_eq!(m.traffic_policies().len(), 2);
    let name = |ns: &str, svc: &str| {
        m.traffic_policy_for(ns, svc)
            .and_then(|p| p.metadata.name.clone())
    };
    assert_eq!(name("shop", "reviews").as_deref(), Some("reviews"));
    assert_eq!(name("shop", "ratings").as_deref(), Some("whole-waypoint"));
    assert_eq!(name("shop", "legacy"), None, "no waypoint, no policy");
    assert_eq!(name("shop", "missing"), None);
}

#[test]
fn a_traffic_policy_of_the_wrong_kind_or_twice_is_named_by_its_path() {
    assert_refused(
        &POLICIES.replace("kind: TrafficPolicy", "kind: TrafficPolicie"),
        "trafficPolicies[0].kind",
    );
    assert_refused(
        &POLICIES.replace("name: whole-waypoint", "name: reviews"),
        "trafficPolicies[1].metadata.name",
    );
}
