//! Which waypoint a service or a workload uses, and where the waypoint is reached.

use gateway_api::gateways::{Gateway, GatewaySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::model::labels::{GATEWAY_NAME, USE_WAYPOINT};

fn gateway(namespace: &str, name: &str, class: &str) -> Gateway {
    Gateway {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: GatewaySpec {
            gateway_class_name: class.to_owned(),
            ..GatewaySpec::default()
        },
        status: None,
    }
}

/// `shop` uses waypoint `wp` unless told otherwise; `wp-1` runs it; `other` is an ingress
/// Gateway of another class.
fn shop(namespace_waypoint: Option<&str>, echo_labels: &[(&str, &str)]) -> Model {
    let mut ns = namespace("shop", Some("ambient"));
    if let Some(name) = namespace_waypoint {
        ns.labels.insert(USE_WAYPOINT.to_owned(), name.to_owned());
    }
    let mut echo = service("shop", "echo", "10.96.0.10", &[("app", "echo")]);
    echo.labels = labels(echo_labels);
    Model::new(ClusterState {
        nodes: vec![node("node1", "192.168.0.1")],
        namespaces: vec![ns, namespace("other", Some("ambient"))],
        workloads: vec![
            with_labels(
                workload("shop", "echo-1", "node1", "10.0.1.2"),
                &[("app", "echo")],
            ),
            with_labels(
                workload("shop", "wp-1", "node1", "10.0.1.9"),
                &[(GATEWAY_NAME, "wp")],
            ),
        ],
        services: vec![echo],
        gateways: vec![
            gateway("shop", "wp", "ambit-waypoint"),
            gateway("shop", "wp2", "ambit-waypoint"),
            gateway("shop", "ingress", "nginx"),
            gateway("other", "wp", "ambit-waypoint"),
        ],
        ..ClusterState::default()
    })
    .unwrap()
}

fn name_of(gateway: Option<&Gateway>) -> Option<&str> {
    gateway.and_then(|g| g.metadata.name.as_deref())
}

#[test]
fn service_uses_its_namespaces_waypoint() {
    let m = shop(Some("wp"), &[]);
    let echo = m.service("shop", "echo").unwrap();
    assert_eq!(name_of(m.waypoint_for(echo)), Some("wp"));
    let pod = m.workload("shop", "echo-1").unwrap();
    assert_eq!(name_of(m.waypoint_for(pod)), Some("wp"));
}

#[test]
fn service_label_wins_over_namespace_label() {
    let m = shop(Some("wp"), &[(USE_WAYPOINT, "wp2")]);
    let echo = m.service("shop", "echo").unwrap();
    let gw = m.waypoint_for(echo).unwrap();
    assert_eq!(gw.metadata.name.as_deref(), Some("wp2"));
    assert_eq!(gw.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn service_label_none_leaves_the_namespaces_waypoint() {
    let m = shop(Some("wp"), &[(USE_WAYPOINT, "none")]);
    assert!(m.waypoint_for(m.service("shop", "echo").unwrap()).is_none());
}

#[test]
fn no_label_means_no_waypoint() {
    let m = shop(None, &[]);
    assert!(m.waypoint_for(m.service("shop", "echo").unwrap()).is_none());
}

#[test]
fn label_naming_a_missing_gateway_or_another_class_gives_no_waypoint() {
    let m = shop(Some("missing"), &[]);
    assert!(m.waypoint_for(m.service("shop", "echo").unwrap()).is_none());
    let m = shop(Some("ingress"), &[]);
    assert!(m.waypoint_for(m.service("shop", "echo").unwrap()).is_none());
}

#[test]
fn waypoint_is_looked_up_in_the_objects_own_namespace() {
    let m = shop(None, &[(USE_WAYPOINT, "wp")]);
    let gw = m.waypoint_for(m.service("shop", "echo").unwrap()).unwrap();
    assert_eq!(gw.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn waypoints_own_pods_do_not_go_through_a_waypoint() {
    let m = shop(Some("wp"), &[]);
    let wp_pod = m.workload("shop", "wp-1").unwrap();
    assert!(m.waypoint_for(wp_pod).is_none());
}

#[test]
fn waypoint_is_reached_at_its_workloads() {
    let m = shop(Some("wp"), &[]);
    let gw = m.waypoint_for(m.service("shop", "echo").unwrap()).unwrap();
    let at: Vec<_> = m.waypoint_workloads(gw).map(|w| w.name.as_str()).collect();
    assert_eq!(at, ["wp-1"]);
    let other = m.gateway("other", "wp").unwrap();
    assert_eq!(m.waypoint_workloads(other).count(), 0);
}

#[test]
fn gateway_listed_twice_is_refused() {
    let err = Model::new(ClusterState {
        gateways: vec![
            gateway("shop", "wp", "ambit-waypoint"),
            gateway("shop", "wp", "ambit-waypoint"),
        ],
        ..ClusterState::default()
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "Gateway shop/wp is listed twice");
}

#[test]
fn labels_naming_no_waypoint_are_listed() {
    let mut m = shop(Some("missing"), &[(USE_WAYPOINT, "ingress")]);
    let dangling = crate::model::dangling_waypoints(&m);
    let found: Vec<_> = dangling
        .iter()
        .map(|d| (d.kind, d.object.as_str(), d.gateway.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("Namespace", "shop", "missing"),
            ("Service", "shop/echo", "ingress")
        ]
    );
    m = shop(Some("wp"), &[(USE_WAYPOINT, "none")]);
    assert!(crate::model::dangling_waypoints(&m).is_empty());
}
