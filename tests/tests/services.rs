//! Service VIPs: the agent resolves a VIP to one of its endpoints (power of two choices).

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddrV4};

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::WHOAMI_PORT;
use ambit_mesh::model::{Protocol, Service, ServicePort};
use common::{pod, two_node_shop};

#[test]
fn service_vip_connections_spread_over_both_endpoints() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("service-vip");
    let vip = mesh.sb.service_ip(1);
    eprintln!(
        "service shop/echo: VIP {vip}:80 -> whoami port of echo-1 (node1) and echo-2 (node2)"
    );
    let state = mesh.state_mut();
    for w in state
        .workloads
        .iter_mut()
        .filter(|w| w.name.starts_with("echo-"))
    {
        w.labels.insert("svc".into(), "echo".into());
    }
    state.services.push(Service {
        name: "echo".into(),
        namespace: "shop".into(),
        vips: vec![IpAddr::V4(vip)],
        ports: vec![ServicePort {
            name: Some("whoami".into()),
            port: 80,
            target_port: WHOAMI_PORT,
            protocol: Protocol::Tcp,
        }],
        selector: BTreeMap::from([("svc".to_string(), "echo".to_string())]),
        labels: BTreeMap::new(),
    });
    mesh.start_agents().expect("agents");
    let client = pod(&mesh, "shop", "client");
    let _servers: Vec<_> = ["echo-1", "echo-2"]
        .iter()
        .map(|name| mesh.serve(&pod(&mesh, "shop", name)).expect("server"))
        .collect();
    mesh.wait_enrolled("node1", &["shop/client", "shop/echo-1"])
        .expect("enrolled");

    eprintln!("20 connections to the VIP, which only the mesh can route");
    let answered: BTreeSet<String> = (0..20)
        .map(|_| {
            mesh.whoami(&client, SocketAddrV4::new(vip, 80))
                .expect("whoami through the VIP")
                .server
        })
        .collect();
    assert_eq!(
        answered,
        BTreeSet::from(["echo-1".to_string(), "echo-2".to_string()]),
        "connections did not spread over both endpoints"
    );

    eprintln!("a port the service does not declare is refused and counted");
    assert!(mesh.whoami(&client, SocketAddrV4::new(vip, 81)).is_err());
    let refused = mesh
        .metric(
            "node1",
            "ambit_outbound_connections_total{result=\"refused_no_route\"}",
        )
        .unwrap();
    assert_eq!(refused, 1);
}
