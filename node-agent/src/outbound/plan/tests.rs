//! The outbound decision table.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ambit_mesh::model::labels::DATAPLANE_MODE;
use ambit_mesh::model::{
    ClusterState, Model, Namespace, Node, Protocol, Service, ServicePort, Workload,
};

use super::*;

/// Always picks the candidate at a fixed index.
struct Fixed(usize);

impl ChooseEndpoint for Fixed {
    fn choose(&self, _: &[SocketAddr]) -> usize {
        self.0
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn workload(ns: &str, name: &str, sa: &str, node: &str, pod_ip: &str) -> Workload {
    Workload {
        name: name.into(),
        namespace: ns.into(),
        uid: None,
        service_account: sa.into(),
        node: node.into(),
        ips: vec![ip(pod_ip)],
        netns: None,
        labels: BTreeMap::from([(
            "app".to_string(),
            name.trim_end_matches(char::is_numeric)
                .trim_end_matches('-')
                .to_string(),
        )]),
        host_network: false,
    }
}

/// shop (enrolled): client on n1, echo-1 on n1, echo-2 on n2; legacy (not enrolled): old on
/// n2; service shop/echo (VIP 10.96.0.10:80 -> 8080) selects app=echo; legacy/old-svc selects
/// app=old.
fn model() -> Model {
    Model::new(state()).expect("valid test model")
}

fn state() -> ClusterState {
    let mut echo_svc = Service {
        name: "echo".into(),
        namespace: "shop".into(),
        vips: vec![ip("10.96.0.10")],
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            target_port: 8080,
            protocol: Protocol::Tcp,
        }],
        selector: BTreeMap::from([("app".to_string(), "echo".to_string())]),
        labels: BTreeMap::new(),
    };
    let mut old_svc = echo_svc.clone();
    old_svc.name = "old-svc".into();
    old_svc.namespace = "legacy".into();
    old_svc.vips = vec![ip("10.96.0.11")];
    old_svc.selector = BTreeMap::from([("app".to_string(), "old".to_string())]);
    let mut empty_svc = echo_svc.clone();
    empty_svc.name = "nobody".into();
    empty_svc.vips = vec![ip("10.96.0.12")];
    empty_svc.selector = BTreeMap::from([("app".to_string(), "nobody".to_string())]);
    echo_svc.ports.push(ServicePort {
        name: None,
        port: 9000,
        target_port: 9000,
        protocol: Protocol::Udp,
    });
    ClusterState {
        trust_domain: "mesh.test".into(),
        nodes: vec![
            Node {
                name: "n1".into(),
                address: ip("192.168.50.1"),
            },
            Node {
                name: "n2".into(),
                address: ip("192.168.50.2"),
            },
        ],
        namespaces: vec![
            Namespace {
                name: "shop".into(),
                labels: BTreeMap::from([(DATAPLANE_MODE.to_string(), "ambient".to_string())]),
            },
            Namespace {
                name: "legacy".into(),
                labels: BTreeMap::new(),
            },
        ],
        workloads: vec![
            workload("shop", "client", "client", "n1", "10.1.1.2"),
            workload("shop", "echo-1", "echo", "n1", "10.1.1.3"),
            workload("shop", "echo-2", "echo", "n2", "10.1.2.2"),
            workload("legacy", "old", "default", "n2", "10.1.2.3"),
        ],
        services: vec![echo_svc, old_svc, empty_svc],
        ..ClusterState::default()
    }
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

#[test]
fn workload_in_the_mesh_is_reached_through_its_nodes_agent() {
    let plan = plan(
        &model(),
        ("shop", "client"),
        addr("10.1.2.2:8080"),
        &Fixed(0),
    )
    .unwrap();
    assert_eq!(
        plan,
        OutboundPlan::Hbone(Box::new(HboneHop {
            source: id("spiffe://mesh.test/ns/shop/sa/client"),
            actual_destination: addr("10.1.2.2:8080"),
            destination_identity: id("spiffe://mesh.test/ns/shop/sa/echo"),
            destination_node: "n2".into(),
            hbone_target: addr("192.168.50.2:15008"),
            intended_service: None,
            waypoint: None,
        }))
    );
}

#[test]
fn workload_on_the_same_node_still_goes_through_hbone_planning() {
    let Ok(OutboundPlan::Hbone(hop)) = plan(
        &model(),
        ("shop", "client"),
        addr("10.1.1.3:8080"),
        &Fixed(0),
    ) else {
        panic!("expected an HBONE hop");
    };
    assert_eq!(hop.destination_node, "n1");
    assert_eq!(hop.hbone_target, addr("192.168.50.1:15008"));
}

#[test]
fn workload_outside_the_mesh_is_passed_through_in_plaintext() {
    let plan = plan(&model(), ("shop", "client"), addr("10.1.2.3:80"), &Fixed(0)).unwrap();
    assert_eq!(
        plan,
        OutboundPlan::Passthrough {
            destination: addr("10.1.2.3:80"),
            reason: PassthroughReason::DestinationNotInMesh
        }
    );
}

#[test]
fn unknown_address_is_passed_through() {
    let plan = plan(
        &model(),
        ("shop", "client"),
        addr("93.184.216.34:443"),
        &Fixed(0),
    )
    .unwrap();
    assert_eq!(
        plan,
        OutboundPlan::Passthrough {
            destination: addr("93.184.216.34:443"),
            reason: PassthroughReason::UnknownAddress
        }
    );
}

#[test]
fn service_vip_resolves_to_an_endpoint_and_its_target_port() {
    for (pick, endpoint, node) in [(0, "10.1.1.3:8080", "n1"), (1, "10.1.2.2:8080", "n2")] {
        let Ok(OutboundPlan::Hbone(hop)) = plan(
            &model(),
            ("shop", "client"),
            addr("10.96.0.10:80"),
            &Fixed(pick),
        ) else {
            panic!("expected an HBONE hop");
        };
        assert_eq!(hop.actual_destination, addr(endpoint));
        assert_eq!(hop.destination_node, node);
        assert_eq!(hop.intended_service.as_deref(), Some("shop/echo"));
        assert_eq!(
            hop.destination_identity,
            id("spiffe://mesh.test/ns/shop/sa/echo")
        );
    }
}

#[test]
fn service_whose_endpoint_is_outside_the_mesh_is_passed_through_to_the_endpoint() {
    let plan = plan(
        &model(),
        ("shop", "client"),
        addr("10.96.0.11:80"),
        &Fixed(0),
    )
    .unwrap();
    assert_eq!(
        plan,
        OutboundPlan::Passthrough {
            destination: addr("10.1.2.3:8080"),
            reason: PassthroughReason::DestinationNotInMesh
        }
    );
}

#[test]
fn service_without_endpoints_is_refused() {
    let err = plan(
        &model(),
        ("shop", "client"),
        addr("10.96.0.12:80"),
        &Fixed(0),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlanError::NoEndpoints {
            service: "shop/nobody".into()
        }
    );
}

#[test]
fn service_port_that_is_not_declared_for_tcp_is_refused() {
    for port in [81, 9000] {
        let err = plan(
            &model(),
            ("shop", "client"),
            SocketAddr::new(ip("10.96.0.10"), port),
            &Fixed(0),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PlanError::NoSuchPort {
                service: "shop/echo".into(),
                port
            }
        );
    }
}

#[test]
fn source_missing_from_the_model_is_an_error() {
    let err = plan(&model(), ("shop", "gone"), addr("10.1.2.2:8080"), &Fixed(0)).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownSource {
            source_workload: "shop/gone".into()
        }
    );
}

/// [`state`] where `shop` uses waypoint `wp` (class ambit-waypoint), run by `pods` pods
/// (`wp-<i>` on n2, 10.1.2.10+i, service account `wp`, opted out as waypoints are).
fn with_waypoint(pods: usize) -> ClusterState {
    use ambit_mesh::model::labels::{GATEWAY_NAME, USE_WAYPOINT};
    use gateway_api::gateways::{Gateway, GatewaySpec};

    let mut state = state();
    state.namespaces[0]
        .labels
        .insert(USE_WAYPOINT.into(), "wp".into());
    for i in 0..pods {
        let mut pod = workload(
            "shop",
            &format!("wp-{i}"),
            "wp",
            "n2",
            &format!("10.1.2.{}", 10 + i),
        );
        pod.labels = BTreeMap::from([
            (GATEWAY_NAME.to_string(), "wp".to_string()),
            (DATAPLANE_MODE.to_string(), "none".to_string()),
        ]);
        state.workloads.push(pod);
    }
    let mut gateway = Gateway {
        metadata: Default::default(),
        spec: GatewaySpec {
            gateway_class_name: "ambit-waypoint".into(),
            ..GatewaySpec::default()
        },
        status: None,
    };
    gateway.metadata.name = Some("wp".into());
    gateway.metadata.namespace = Some("shop".into());
    state.gateways.push(gateway);
    state
}

#[test]
fn service_with_a_waypoint_is_tunnelled_to_a_waypoint_pod_with_the_dialled_vip() {
    let model = Model::new(with_waypoint(2)).unwrap();
    for (pick, pod) in [(0, "10.1.2.10:15008"), (1, "10.1.2.11:15008")] {
        let plan = plan(
            &model,
            ("shop", "client"),
            addr("10.96.0.10:80"),
            &Fixed(pick),
        )
        .unwrap();
        assert_eq!(
            plan,
            OutboundPlan::Hbone(Box::new(HboneHop {
                source: id("spiffe://mesh.test/ns/shop/sa/client"),
                actual_destination: addr("10.96.0.10:80"),
                destination_identity: id("spiffe://mesh.test/ns/shop/sa/wp"),
                destination_node: "n2".into(),
                hbone_target: addr(pod),
                intended_service: Some("shop/echo".into()),
                waypoint: Some("shop/wp".into()),
            }))
        );
    }
}

#[test]
fn workload_with_a_waypoint_is_tunnelled_to_the_waypoint_with_its_own_address() {
    let model = Model::new(with_waypoint(1)).unwrap();
    let Ok(OutboundPlan::Hbone(hop)) =
        plan(&model, ("shop", "client"), addr("10.1.1.3:8080"), &Fixed(0))
    else {
        panic!("expected an HBONE hop");
    };
    assert_eq!(hop.actual_destination, addr("10.1.1.3:8080"));
    assert_eq!(hop.hbone_target, addr("10.1.2.10:15008"));
    assert_eq!(hop.waypoint.as_deref(), Some("shop/wp"));
    assert_eq!(hop.intended_service, None);
}

#[test]
fn service_opting_out_of_its_namespaces_waypoint_goes_straight_to_an_endpoint() {
    use ambit_mesh::model::labels::USE_WAYPOINT;
    let mut state = with_waypoint(1);
    state.services[0]
        .labels
        .insert(USE_WAYPOINT.into(), "none".into());
    let model = Model::new(state).unwrap();
    let Ok(OutboundPlan::Hbone(hop)) =
        plan(&model, ("shop", "client"), addr("10.96.0.10:80"), &Fixed(1))
    else {
        panic!("expected an HBONE hop");
    };
    assert_eq!(hop.waypoint, None);
    assert_eq!(hop.actual_destination, addr("10.1.2.2:8080"));
    assert_eq!(hop.hbone_target, addr("192.168.50.2:15008"));
}

#[test]
fn a_waypoint_with_no_pods_refuses_rather_than_bypassing_its_policies() {
    let model = Model::new(with_waypoint(0)).unwrap();
    let err = plan(&model, ("shop", "client"), addr("10.96.0.10:80"), &Fixed(0)).unwrap_err();
    assert_eq!(
        err,
        PlanError::WaypointUnavailable {
            target: "shop/echo".into(),
            waypoint: "shop/wp".into(),
            name: "wp".into(),
        }
    );
    assert!(err.to_string().contains("gateway-name=wp"), "{err}");
}

#[test]
fn an_undeclared_port_is_refused_before_the_waypoint() {
    let model = Model::new(with_waypoint(1)).unwrap();
    let err = plan(&model, ("shop", "client"), addr("10.96.0.10:81"), &Fixed(0)).unwrap_err();
    assert_eq!(
        err,
        PlanError::NoSuchPort {
            service: "shop/echo".into(),
            port: 81
        }
    );
}

#[test]
fn services_of_namespaces_without_a_waypoint_are_unaffected() {
    let model = Model::new(with_waypoint(1)).unwrap();
    let plan = plan(&model, ("shop", "client"), addr("10.96.0.11:80"), &Fixed(0)).unwrap();
    assert_eq!(
        plan,
        OutboundPlan::Passthrough {
            destination: addr("10.1.2.3:8080"),
            reason: PassthroughReason::DestinationNotInMesh
        }
    );
}
