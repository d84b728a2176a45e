//! Unit tests of the model, by topic, with small constructors for the objects they need.

mod enrollment;
mod lookups;
mod waypoint;

use std::collections::BTreeMap;

use super::labels::DATAPLANE_MODE;
use super::{ClusterState, Model, Namespace, Node, Protocol, Service, ServicePort, Workload};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn namespace(name: &str, mode: Option<&str>) -> Namespace {
    Namespace {
        name: name.to_owned(),
        labels: mode.map_or_else(BTreeMap::new, |m| labels(&[(DATAPLANE_MODE, m)])),
    }
}

fn node(name: &str, address: &str) -> Node {
    Node {
        name: name.to_owned(),
        address: address.parse().unwrap(),
    }
}

fn workload(namespace: &str, name: &str, node: &str, ip: &str) -> Workload {
    Workload {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        uid: None,
        service_account: "default".to_owned(),
        node: node.to_owned(),
        ips: vec![ip.parse().unwrap()],
        netns: None,
        labels: BTreeMap::new(),
        host_network: false,
    }
}

fn with_labels(mut workload: Workload, pairs: &[(&str, &str)]) -> Workload {
    workload.labels.extend(labels(pairs));
    workload
}

fn service(namespace: &str, name: &str, vip: &str, selector: &[(&str, &str)]) -> Service {
    Service {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        vips: vec![vip.parse().unwrap()],
        ports: vec![ServicePort {
            name: Some("http".to_owned()),
            port: 80,
            target_port: 8080,
            protocol: Protocol::Tcp,
        }],
        selector: labels(selector),
        labels: BTreeMap::new(),
    }
}

fn model(namespaces: Vec<Namespace>, workloads: Vec<Workload>, services: Vec<Service>) -> Model {
    Model::new(ClusterState {
        nodes: vec![node("node1", "192.168.0.1"), node("node2", "192.168.0.2")],
        namespaces,
        workloads,
        services,
        ..ClusterState::default()
    })
    .unwrap()
}
