//! A waypoint Gateway's status, the GatewayClass's, and leftover bindings.

use std::sync::Arc;

use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::GatewayStatus;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::render::gateway;
use crate::deployer::stale_bindings;
use crate::deployer::status::{
    class_status_update, gateway_status, gateway_status_update, listener_problem, Observed,
};

fn at(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
}

/// `(type, status, reason, observedGeneration)` of each condition.
fn conditions(status: &GatewayStatus) -> Vec<(String, String, String, Option<i64>)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.observed_generation,
            )
        })
        .collect()
}

fn row(t: &str, s: &str, r: &str) -> (String, String, String, Option<i64>) {
    (t.into(), s.into(), r.into(), Some(2))
}

#[test]
fn an_hbone_gateway_is_accepted_and_pending_until_a_pod_is_ready() {
    let g = gateway("shop", "waypoint");
    assert_eq!(listener_problem(&g), None);
    let observed = Observed {
        ready_replicas: 0,
        cluster_ip: Some("10.96.7.7".into()),
    };
    let status = gateway_status(&g, None, Some(&observed), &at(1));
    assert_eq!(
        conditions(&status),
        [
            row("Accepted", "True", "Accepted"),
            row("Programmed", "False", "Pending")
        ]
    );
    assert_eq!(
        status.conditions.as_ref().unwrap()[1].message,
        "waiting for a ready pod of Deployment shop/waypoint"
    );
    let addresses = serde_json::to_value(&status.addresses).unwrap();
    assert_eq!(
        addresses,
        json!([{"type": "IPAddress", "value": "10.96.7.7"}])
    );

    let ready = Observed {
        ready_replicas: 2,
        ..observed
    };
    let status = gateway_status(&g, None, Some(&ready), &at(1));
    assert_eq!(
        conditions(&status)[1],
        row("Programmed", "True", "Programmed")
    );
}

#[test]
fn a_listener_other_than_hbone_15008_is_not_accepted_and_named() {
    let mut g = gateway("shop", "waypoint");
    g.spec.listeners[0].port = 80;
    g.spec.listeners[0].protocol = "HTTP".into();
    let problem = listener_problem(&g).expect("port 80 HTTP is no waypoint listener");
    assert_eq!(
        problem,
        "listener mesh is port 80 protocol HTTP; a waypoint listens on port 15008 with protocol HBONE only"
    );
    let status = gateway_status(&g, Some(&problem), None, &at(1));
    assert_eq!(
        conditions(&status),
        [
            row("Accepted", "False", "ListenersNotValid"),
            row("Programmed", "False", "Invalid")
        ]
    );
    assert_eq!(status.conditions.as_ref().unwrap()[0].message, problem);
    assert_eq!(status.addresses, None);

    g.spec.listeners.clear();
    assert!(listener_problem(&g).unwrap().starts_with("no listener"));
}

/// `(type, status, reason)` of each condition of listener `index`.
fn listener(status: &GatewayStatus, index: usize) -> Vec<(String, String, String)> {
    status.listeners.as_ref().expect("listeners")[index]
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn cond(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

#[test]
fn each_listener_reports_its_own_conditions() {
    let mut g = gateway("shop", "waypoint");
    let ready = Observed {
        ready_replicas: 1,
        cluster_ip: None,
    };
    let status = gateway_status(&g, None, Some(&ready), &at(1));
    let entry = &status.listeners.as_ref().unwrap()[0];
    assert_eq!(
        (entry.name.as_str(), entry.attached_routes),
        ("mesh", 0),
        "routes attach to Services, not to the waypoint's listener"
    );
    assert_eq!(entry.supported_kinds, Some(vec![]));
    assert_eq!(
        listener(&status, 0),
        [
            cond("Accepted", "True", "Accepted"),
            cond("Programmed", "True", "Programmed"),
            cond("ResolvedRefs", "True", "ResolvedRefs"),
            cond("Conflicted", "False", "NoConflicts"),
        ]
    );
    assert!(entry
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(2)));

    // A second listener on another port, and route kinds on the first.
    let mut other = g.spec.listeners[0].clone();
    other.name = "http".into();
    other.port = 80;
    g.spec.listeners.push(other.clone());
    other.name = "grpc".into();
    other.protocol = "GRPC".into();
    other.port = 15008;
    g.spec.listeners.push(other);
    g.spec.listeners[0].allowed_routes = serde_json::from_value(
        json!({"kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]}),
    )
    .unwrap();
    let problem = listener_problem(&g).expect("not a waypoint");
    let status = gateway_status(&g, Some(&problem), None, &at(1));
    assert_eq!(
        listener(&status, 0)[..3],
        [
            cond("Accepted", "True", "Accepted"),
            cond("Programmed", "False", "Invalid"),
            cond("ResolvedRefs", "False", "InvalidRouteKinds"),
        ]
    );
    assert_eq!(
        listener(&status, 1)[..2],
        [
            cond("Accepted", "False", "PortUnavailable"),
            cond("Programmed", "False", "Invalid"),
        ]
    );
    assert_eq!(
        listener(&status, 2)[0],
        cond("Accepted", "False", "UnsupportedProtocol")
    );
}

#[test]
fn an_unchanged_status_is_not_written_and_keeps_its_transition_times() {
    let mut g = gateway("shop", "waypoint");
    let pending = Observed {
        ready_replicas: 0,
        cluster_ip: Some("10.96.7.7".into()),
    };
    let first = gateway_status_update(&g, gateway_status(&g, None, Some(&pending), &at(1)))
        .expect("no status yet: written");
    g.status = Some(first.clone());

    let again = gateway_status(&g, None, Some(&pending), &at(50));
    assert_eq!(gateway_status_update(&g, again), None, "nothing changed");

    let ready = Observed {
        ready_replicas: 1,
        ..pending.clone()
    };
    let update = gateway_status_update(&g, gateway_status(&g, None, Some(&ready), &at(90)))
        .expect("Programmed changed: written");
    let times: Vec<_> = update
        .conditions
        .unwrap()
        .iter()
        .map(|c| (c.type_.clone(), c.last_transition_time.clone()))
        .collect();
    assert_eq!(
        times,
        [("Accepted".into(), at(1)), ("Programmed".into(), at(90))]
    );
    let listener_times: Vec<_> = update.listeners.as_ref().unwrap()[0]
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.last_transition_time.clone()))
        .collect();
    assert_eq!(
        listener_times,
        [
            ("Accepted".into(), at(1)),
            ("Programmed".into(), at(90)),
            ("ResolvedRefs".into(), at(1)),
            ("Conflicted".into(), at(1)),
        ]
    );

    g.metadata.generation = Some(3);
    let status = gateway_status(&g, None, Some(&pending), &at(100));
    assert!(
        gateway_status_update(&g, status).is_some(),
        "a new generation is written"
    );
}

fn class(controller: &str) -> GatewayClass {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "ambit-waypoint", "generation": 4},
        "spec": {"controllerName": controller},
    }))
    .unwrap()
}

#[test]
fn the_gateway_class_is_accepted_when_ambit_is_its_controller() {
    assert_eq!(
        class_status_update(&class("example.com/other"), &at(1)),
        None
    );
    let mut ours = class("ambit.dev/waypoint");
    let update = class_status_update(&ours, &at(1)).expect("not accepted yet");
    let c = &update.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.observed_generation),
        ("Accepted", "True", Some(4))
    );
    ours.status = Some(update);
    assert_eq!(class_status_update(&ours, &at(9)), None, "already accepted");
}

fn binding(name: &str, labels: serde_json::Value) -> ClusterRoleBinding {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambit-waypoint"},
    }))
    .unwrap()
}

#[test]
fn bindings_of_gateways_that_are_gone_are_stale() {
    let live = Arc::new(gateway("shop", "waypoint"));
    let mut other_class = gateway("shop", "edge");
    other_class.spec.gateway_class_name = "istio".into();
    let gateways = [live, Arc::new(other_class)];
    let labels = |ns: &str, name: &str| json!({"ambit.dev/gateway-namespace": ns, "gateway.networking.k8s.io/gateway-name": name});
    let bindings = [
        binding("ambit-waypoint-shop-waypoint", labels("shop", "waypoint")),
        binding("ambit-waypoint-old-gone", labels("old", "gone")),
        binding("ambit-waypoint-shop-edge", labels("shop", "edge")),
        binding("unlabelled", json!({})),
    ];
    assert_eq!(
        stale_bindings(&bindings, &gateways),
        ["ambit-waypoint-old-gone", "ambit-waypoint-shop-edge"]
    );
}
