//! Conversions of Kubernetes objects, case by case.

use k8s_openapi::api::core::v1::{
    Namespace as KubeNamespace, Node as KubeNode, Pod, Service as KubeService,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::super::convert::{self, Problem};
use crate::model::Protocol;

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

pub(super) fn pod(extra: Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": "echo-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "echo"}},
        "spec": {"containers": [], "nodeName": "node1", "serviceAccountName": "echo"},
        "status": {"phase": "Running", "podIP": "10.10.1.3", "podIPs": [{"ip": "10.10.1.3"}]},
    });
    merge(&mut pod, extra);
    from(pod)
}

fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    into.remove(&k);
                } else {
                    merge(into.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (into, patch) => *into = patch,
    }
}

#[test]
fn running_pod_becomes_a_workload_with_its_uid() {
    let w = convert::workload(&pod(json!({}))).value.unwrap();
    assert_eq!((w.name.as_str(), w.namespace.as_str()), ("echo-1", "shop"));
    assert_eq!(w.uid.as_deref(), Some("u-1"));
    assert_eq!(
        (w.node.as_str(), w.service_account.as_str()),
        ("node1", "echo")
    );
    assert_eq!(w.ips, ["10.10.1.3".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!((w.netns.as_ref(), w.host_network), (None, false));
}

#[test]
fn pod_without_ip_is_skipped_silently() {
    let c = convert::workload(&pod(
        json!({"status": {"podIP": null, "podIPs": null, "phase": "Pending"}}),
    ));
    assert_eq!((c.value, c.problems), (None, vec![]));
}

#[test]
fn unscheduled_and_finished_pods_are_skipped() {
    assert!(convert::workload(&pod(json!({"spec": {"nodeName": null}})))
        .value
        .is_none());
    for phase in ["Succeeded", "Failed"] {
        assert!(convert::workload(&pod(json!({"status": {"phase": phase}})))
            .value
            .is_none());
    }
}

#[test]
fn pod_without_service_account_runs_as_default() {
    let w = convert::workload(&pod(json!({"spec": {"serviceAccountName": null}})))
        .value
        .unwrap();
    assert_eq!(w.service_account, "default");
}

#[test]
fn dual_stack_pod_keeps_both_ips_and_a_bad_one_is_reported() {
    let c = convert::workload(&pod(json!({"status": {"podIPs": [
        {"ip": "10.10.1.3"}, {"ip": "fd00::3"}, {"ip": "10.10.1.300"}
    ]}})));
    assert_eq!(c.value.unwrap().ips.len(), 2);
    assert_eq!(
        c.problems,
        [Problem {
            object: "Pod shop/echo-1".to_owned(),
            message: "invalid pod IP \"10.10.1.300\"; ignored".to_owned(),
        }]
    );
}

#[test]
fn host_network_pod_is_kept_as_such() {
    let w = convert::workload(&pod(json!({"spec": {"hostNetwork": true}})))
        .value
        .unwrap();
    assert!(w.host_network);
}

#[test]
fn namespace_with_unknown_dataplane_mode_is_kept_and_reported() {
    let ns: KubeNamespace =
        from(json!({"metadata": {"name": "shop", "labels": {"ambit.dev/dataplane-mode": "on"}}}));
    let c = convert::namespace(&ns);
    assert_eq!(c.value.unwrap().labels["ambit.dev/dataplane-mode"], "on");
    assert_eq!(
        c.problems[0].to_string(),
        "Namespace shop: unknown value \"on\" for label ambit.dev/dataplane-mode \
         (allowed: ambient, none); ignored, its pods are not enrolled"
    );
}

#[test]
fn node_is_reached_at_its_internal_ip_and_one_without_address_is_reported() {
    let node: KubeNode = from(
        json!({"metadata": {"name": "node1"}, "status": {"addresses": [
            {"type": "Hostname", "address": "node1"},
            {"type": "ExternalIP", "address": "203.0.113.1"},
            {"type": "InternalIP", "address": "192.168.50.1"},
        ]}}),
    );
    assert_eq!(
        convert::node(&node).value.unwrap().address.to_string(),
        "192.168.50.1"
    );
    let bare: KubeNode = from(json!({"metadata": {"name": "node9"}}));
    let c = convert::node(&bare);
    assert!(c.value.is_none());
    assert_eq!(c.problems[0].object, "Node node9");
}

fn service(spec: Value) -> KubeService {
    from(
        json!({"metadata": {"name": "echo", "namespace": "shop", "labels": {"app": "echo"}}, "spec": spec}),
    )
}

fn slice(ports: Value) -> EndpointSlice {
    from(json!({"metadata": {"name": "echo-x", "namespace": "shop",
        "labels": {"kubernetes.io/service-name": "echo"}}, "addressType": "IPv4", "endpoints": [], "ports": ports}))
}

#[test]
fn service_ports_default_and_resolve_named_targets_from_slices() {
    let svc = service(
        json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
        "selector": {"app": "echo"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http-alt"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}),
    );
    let slices = [slice(
        json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 53}]),
    )];
    let s = convert::service(&svc, &slices.iter().collect::<Vec<_>>())
        .value
        .unwrap();
    assert_eq!(s.vips.len(), 2);
    assert_eq!(
        (s.ports[0].port, s.ports[0].target_port, s.ports[0].protocol),
        (80, 8080, Protocol::Tcp)
    );
    assert_eq!(
        (s.ports[1].target_port, s.ports[1].protocol),
        (53, Protocol::Udp)
    );
    assert_eq!(s.labels["app"], "echo");
    assert_eq!(s.selector["app"], "echo");
}

#[test]
fn named_target_port_without_slice_is_left_out_until_resolved() {
    let svc = service(
        json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": "http-alt"}]}),
    );
    let c = convert::service(&svc, &[]);
    assert!(c.value.unwrap().ports.is_empty());
    assert!(c.problems.is_empty());
}

#[test]
fn headless_and_external_name_services() {
    let headless =
        service(json!({"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "echo"}}));
    assert!(convert::service(&headless, &[])
        .value
        .unwrap()
        .vips
        .is_empty());
    let alias = service(json!({"type": "ExternalName", "externalName": "docs.example.com"}));
    assert!(convert::service(&alias, &[]).value.is_none());
}

#[test]
fn bad_service_port_is_reported_and_left_out() {
    let svc = service(json!({"clusterIP": "10.96.0.10", "ports": [
        {"name": "web", "port": 80, "protocol": "HTTP"}, {"name": "ok", "port": 81}]}));
    let c = convert::service(&svc, &[]);
    assert_eq!(c.value.unwrap().ports.len(), 1);
    assert_eq!(
        c.problems[0].to_string(),
        "Service shop/echo: port web: unknown protocol \"HTTP\"; port ignored"
    );
}
