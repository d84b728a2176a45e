//! Lookups by IP, by name and by selector, and the duplicates that make a model invalid.

use super::*;
use crate::model::{AddressSlot, ModelError};

fn shop() -> Model {
    model(
        vec![namespace("shop", Some("ambient"))],
        vec![
            with_labels(
                workload("shop", "echo-1", "node1", "10.0.1.2"),
                &[("app", "echo"), ("version", "v1")],
            ),
            with_labels(
                workload("shop", "echo-2", "node2", "10.0.2.1"),
                &[("app", "echo"), ("version", "v2")],
            ),
            with_labels(
                workload("shop", "client", "node1", "10.0.1.1"),
                &[("app", "client")],
            ),
            with_labels(
                workload("other", "echo", "node1", "10.0.1.9"),
                &[("app", "echo")],
            ),
        ],
        vec![
            service("shop", "echo", "10.96.0.10", &[("app", "echo")]),
            service(
                "shop",
                "echo-v2",
                "10.96.0.11",
                &[("app", "echo"), ("version", "v2")],
            ),
            service("shop", "external", "10.96.0.12", &[]),
        ],
    )
}

#[test]
fn workload_by_ip_finds_the_pod() {
    let m = shop();
    let w = m.workload_by_ip("10.0.2.1".parse().unwrap()).unwrap();
    assert_eq!((w.namespace.as_str(), w.name.as_str()), ("shop", "echo-2"));
}

#[test]
fn workload_by_ip_misses_unknown_addresses_and_vips() {
    let m = shop();
    assert!(m.workload_by_ip("10.0.9.9".parse().unwrap()).is_none());
    assert!(m.workload_by_ip("10.96.0.10".parse().unwrap()).is_none());
}

#[test]
fn service_by_vip_finds_the_service_and_not_a_pod() {
    let m = shop();
    let svc = m.service_by_vip("10.96.0.10".parse().unwrap()).unwrap();
    assert_eq!(svc.name, "echo");
    assert!(m.service_by_vip("10.0.1.2".parse().unwrap()).is_none());
}

#[test]
fn workload_and_service_are_found_by_namespace_and_name() {
    let m = shop();
    assert_eq!(
        m.workload("shop", "client").unwrap().ips[0].to_string(),
        "10.0.1.1"
    );
    assert!(m.workload("other", "client").is_none());
    assert_eq!(m.service("shop", "echo-v2").unwrap().vips.len(), 1);
    assert!(m.service("other", "echo").is_none());
    assert_eq!(m.node("node2").unwrap().address.to_string(), "192.168.0.2");
    assert!(m.namespace("other").is_none());
}

#[test]
fn endpoints_are_workloads_of_the_same_namespace_matching_every_selector_label() {
    let m = shop();
    let names = |svc: &str| {
        let svc = m.service("shop", svc).unwrap();
        m.endpoints(svc).map(|w| w.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names("echo"), ["echo-1", "echo-2"]);
    assert_eq!(names("echo-v2"), ["echo-2"]);
}

#[test]
fn service_without_selector_has_no_endpoints() {
    let m = shop();
    let svc = m.service("shop", "external").unwrap();
    assert_eq!(m.endpoints(svc).count(), 0);
}

#[test]
fn service_from_another_model_has_no_endpoints() {
    let m = shop();
    let stranger = service("shop", "unknown", "10.96.0.99", &[("app", "echo")]);
    assert_eq!(m.endpoints(&stranger).count(), 0);
}

#[test]
fn duplicate_workload_name_in_a_namespace_is_refused() {
    let err = Model::new(ClusterState {
        workloads: vec![
            workload("shop", "echo", "node1", "10.0.1.1"),
            workload("other", "echo", "node1", "10.0.1.2"),
            workload("shop", "echo", "node1", "10.0.1.3"),
        ],
        ..ClusterState::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, ModelError::DuplicateWorkload { index: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "workload shop/echo is listed twice");
}

#[test]
fn ip_shared_by_two_workloads_is_refused_naming_the_first_owner() {
    let err = Model::new(ClusterState {
        workloads: vec![
            workload("shop", "a", "node1", "10.0.1.1"),
            workload("shop", "b", "node1", "10.0.1.1"),
        ],
        ..ClusterState::default()
    })
    .unwrap_err();
    let ModelError::AddressInUse {
        claimant, owner, ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(
        *claimant,
        AddressSlot::WorkloadIp {
            index: 1,
            ip_index: 0
        }
    );
    assert_eq!(owner, "workload shop/a");
}

#[test]
fn vip_equal_to_a_pod_ip_is_refused() {
    let err = Model::new(ClusterState {
        workloads: vec![workload("shop", "a", "node1", "10.0.1.1")],
        services: vec![service("shop", "s", "10.0.1.1", &[])],
        ..ClusterState::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::AddressInUse {
                claimant: AddressSlot::ServiceVip {
                    index: 0,
                    vip_index: 0
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn host_network_pods_share_the_node_address_and_are_not_found_by_ip() {
    let mut a = workload("kube-system", "proxy", "node1", "192.168.0.1");
    a.host_network = true;
    let mut b = workload("monitoring", "exporter", "node1", "192.168.0.1");
    b.host_network = true;
    let m = model(vec![], vec![a, b], vec![]);
    assert!(m.workload_by_ip("192.168.0.1".parse().unwrap()).is_none());
    assert!(m.workload("monitoring", "exporter").is_some());
}

#[test]
fn models_serialize_as_their_state() {
    let m = shop();
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        serde_json::to_value(m.state()).unwrap()
    );
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["trustDomain"], "cluster.local");
    assert_eq!(json["workloads"][0]["serviceAccount"], "default");
    assert_eq!(json["services"][0]["ports"][0]["targetPort"], 8080);
    assert_eq!(json["services"][0]["ports"][0]["protocol"], "TCP");
}
