use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::model::{Destination, ServiceName};

/// `shop` has reviews (VIP 10.96.0.10, port 80 -> 9080) backed by two pods on two nodes, and
/// `other` has a Service of its own.
const MESH: &str = "
trustDomain: cluster.local
nodes:
  - {name: n1, address: 192.168.50.1}
  - {name: n2, address: 192.168.50.2}
namespaces:
  - {name: shop, labels: {ambit.dev/dataplane-mode: ambient}}
workloads:
  - {name: reviews-1, namespace: shop, serviceAccount: reviews, node: n1, ips: [10.10.1.5], labels: {app: reviews}}
  - {name: reviews-2, namespace: shop, serviceAccount: reviews, node: n2, ips: [10.10.2.5], labels: {app: reviews}}
  - {name: lonely, namespace: shop, serviceAccount: lonely, node: n2, ips: [10.10.2.9]}
  - {name: ads-1, namespace: other, serviceAccount: ads, node: n1, ips: [10.10.1.7], labels: {app: ads}}
services:
  - {name: reviews, namespace: shop, vips: [10.96.0.10], ports: [{port: 80, targetPort: 9080}], selector: {app: reviews}}
  - {name: ads, namespace: other, vips: [10.96.0.20], ports: [{port: 80, targetPort: 8080}], selector: {app: ads}}
";

fn model() -> ambit_mesh::model::Model {
    ambit_mesh::config::parse(MESH).expect("the test mesh parses")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn reviews() -> Destination {
    Destination {
        service: ServiceName::new("shop", "reviews"),
        port: 80,
    }
}

#[test]
fn vip_and_port_name_the_service_port() {
    assert_eq!(
        destination(&model(), "shop", addr("10.96.0.10:80")),
        Ok(reviews())
    );
}

#[test]
fn endpoint_address_names_the_service_port_that_targets_it() {
    assert_eq!(
        destination(&model(), "shop", addr("10.10.2.5:9080")),
        Ok(reviews())
    );
}

#[test]
fn unknown_addresses_and_ports_are_refused() {
    let m = model();
    assert!(matches!(
        destination(&m, "shop", addr("10.99.0.1:80")),
        Err(Unresolved::UnknownAddress { .. })
    ));
    assert!(matches!(
        destination(&m, "shop", addr("10.96.0.10:81")),
        Err(Unresolved::UnknownPort { .. })
    ));
    assert!(matches!(
        destination(&m, "shop", addr("10.10.2.9:80")),
        Err(Unresolved::NoServiceForEndpoint { .. })
    ));
}

#[test]
fn services_of_other_namespaces_are_not_served() {
    assert!(matches!(
        destination(&model(), "shop", addr("10.96.0.20:80")),
        Err(Unresolved::OtherNamespace { .. })
    ));
}

#[test]
fn endpoint_is_reached_through_its_node_agent_as_its_workload() {
    let hop = hop(&model(), addr("10.10.2.5:9080"), 15008).expect("known endpoint");
    assert_eq!(hop.hbone_target, addr("192.168.50.2:15008"));
    assert_eq!(
        hop.identity.to_string(),
        "spiffe://cluster.local/ns/shop/sa/reviews"
    );
}

#[test]
fn engine_services_list_each_pod_on_the_target_port() {
    let services = services(&model());
    let reviews = services
        .iter()
        .find(|s| s.name == "reviews")
        .expect("reviews is listed");
    let port = reviews.port(80).expect("port 80");
    assert_eq!(
        port.endpoints,
        vec![addr("10.10.1.5:9080"), addr("10.10.2.5:9080")]
    );
}

#[test]
fn route_file_services_add_policy_and_app_protocol_to_model_services() {
    let extra: crate::Config = serde_yaml::from_str(
        "services:\n- {namespace: shop, name: reviews, ports: [{port: 80, appProtocol: http2}]}\n",
    )
    .expect("extra parses");
    let config = engine_config(&model(), &[], &extra);
    let reviews = config
        .services
        .iter()
        .find(|s| s.name == "reviews")
        .expect("reviews is listed");
    let port = reviews.port(80).expect("port 80");
    assert_eq!(port.app_protocol.as_deref(), Some("http2"));
    assert_eq!(port.endpoints.len(), 2, "endpoints come from the model");
}

#[test]
fn services_take_the_models_traffic_policy_with_defaults_filled_in() {
    let model = ambit_mesh::config::parse(
        "
namespaces: [{name: shop, labels: {ambit.dev/dataplane-mode: ambient}}]
services:
  - {name: reviews, namespace: shop, ports: [{port: 9080}]}
  - {name: ratings, namespace: shop, ports: [{port: 9090}]}
trafficPolicies:
  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: reviews, namespace: shop}
    spec:
      targetRefs: [{group: \"\", kind: Service, name: reviews}]
      outlierDetection: {consecutiveFailures: 3, baseEjectionTime: 2s}
      faultInjection: {delay: {percentage: 10, fixedDelay: 200ms}}
",
    )
    .unwrap();
    let services = resolve::services(&model);
    let reviews = services.iter().find(|s| s.name == "reviews").unwrap();
    let outlier = reviews.traffic_policy.outlier_detection.as_ref().unwrap();
    assert_eq!(outlier.consecutive_failures, 3);
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(2));
    assert_eq!(outlier.interval, Duration::from_secs(10), "the default");
    let delay = reviews
        .traffic_policy
        .fault_injection
        .as_ref()
        .and_then(|f| f.delay.as_ref())
        .unwrap();
    assert_eq!(
        (delay.percentage, delay.fixed_delay),
        (10.0, Duration::from_millis(200))
    );
    let ratings = services.iter().find(|s| s.name == "ratings").unwrap();
    assert_eq!(ratings.traffic_policy, Default::default());
}
