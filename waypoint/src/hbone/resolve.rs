//! Decisions from the mesh model, without I/O: which Service port a CONNECT names, which node
//! agent and identity an endpoint sits behind, and the engine's view of the Services.

use std::net::SocketAddr;

use ambit_mesh::identity::SpiffeId;
use ambit_mesh::model::Model;
use gateway_api::experimental::httproutes::HttpRoute;

use crate::model::{Destination, Service, ServiceName, ServicePort};
use crate::policy::TrafficPolicySpec;
use crate::Config;

/// Why an address could not be resolved; the front end answers 400 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("{target} is neither a Service VIP nor a workload address in the mesh model")]
    UnknownAddress { target: SocketAddr },
    #[error("{service} has no port {port}")]
    UnknownPort { service: ServiceName, port: u16 },
    #[error("no Service selects workload {workload} on target port {port}")]
    NoServiceForEndpoint { workload: String, port: u16 },
    #[error("{service} is in namespace {}, this waypoint serves {namespace}", service.namespace)]
    OtherNamespace {
        service: ServiceName,
        namespace: String,
    },
    #[error("workload {workload} runs on node {node}, which the mesh model does not list")]
    UnknownNode { workload: String, node: String },
    #[error("workload {workload} has no valid SPIFFE ID: {reason}")]
    BadIdentity { workload: String, reason: String },
}

/// The Service port `CONNECT <target>` asks for: a Service VIP and one of its ports, or an
/// endpoint address (pod IP and target port) of a Service. Only Services of the waypoint's
/// `namespace` are served.
pub fn destination(
    model: &Model,
    namespace: &str,
    target: SocketAddr,
) -> Result<Destination, Unresolved> {
    let found = if let Some(service) = model.service_by_vip(target.ip()) {
        let name = ServiceName::new(&service.namespace, &service.name);
        if !service.ports.iter().any(|p| p.port == target.port()) {
            return Err(Unresolved::UnknownPort {
                service: name,
                port: target.port(),
            });
        }
        Destination {
            service: name,
            port: target.port(),
        }
    } else if let Some(workload) = model.workload_by_ip(target.ip()) {
        model
            .services()
            .iter()
            .filter(|s| s.selects(workload))
            .find_map(|s| {
                let port = s.ports.iter().find(|p| p.target_port == target.port())?;
                Some(Destination {
                    service: ServiceName::new(&s.namespace, &s.name),
                    port: port.port,
                })
            })
            .ok_or_else(|| Unresolved::NoServiceForEndpoint {
                workload: format!("{}/{}", workload.namespace, workload.name),
                port: target.port(),
            })?
    } else {
        return Err(Unresolved::UnknownAddress { target });
    };
    if found.service.namespace != namespace {
        return Err(Unresolved::OtherNamespace {
            service: found.service,
            namespace: namespace.to_string(),
        });
    }
    Ok(found)
}

/// Where the HBONE connector sends a stream for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The endpoint's node agent: the node's address and the HBONE port.
    pub hbone_target: SocketAddr,
    /// The identity that agent must present: the endpoint workload's SVID.
    pub identity: SpiffeId,
}

/// The node agent and identity behind `endpoint` (a pod address and target port).
pub fn hop(model: &Model, endpoint: SocketAddr, hbone_port: u16) -> Result<Hop, Unresolved> {
    let workload = model
        .workload_by_ip(endpoint.ip())
        .ok_or(Unresolved::UnknownAddress { target: endpoint })?;
    let name = || format!("{}/{}", workload.namespace, workload.name);
    let node = model
        .node(&workload.node)
        .ok_or_else(|| Unresolved::UnknownNode {
            workload: name(),
            node: workload.node.clone(),
        })?;
    let identity = SpiffeId::new(
        model.trust_domain(),
        &workload.namespace,
        &workload.service_account,
    )
    .map_err(|e| Unresolved::BadIdentity {
        workload: name(),
        reason: e.to_string(),
    })?;
    Ok(Hop {
        hbone_target: SocketAddr::new(node.address, hbone_port),
        identity,
    })
}

/// The engine's Services from the mesh model: each port's endpoints are the selected
/// workloads' first address and the port's target port; the traffic policy is the model's
/// TrafficPolicy for the Service ([`Model::traffic_policy_for`]). `appProtocol` is not in the
/// mesh model yet (HTTP is detected per connection).
pub fn services(model: &Model) -> Vec<Service> {
    model
        .services()
        .iter()
        .map(|s| Service {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            ports: s
                .ports
                .iter()
                .map(|p| ServicePort {
                    port: p.port,
                    app_protocol: None,
                    endpoints: model
                        .endpoints(s)
                        .filter_map(|w| w.ips.first())
                        .map(|ip| SocketAddr::new(*ip, p.target_port))
                        .collect(),
                })
                .collect(),
            traffic_policy: model
                .traffic_policy_for(&s.namespace, &s.name)
                .map(|p| TrafficPolicySpec::from_crd(&p.spec))
                .unwrap_or_default(),
        })
        .collect()
}

/// What the engine routes by: the model's Services, then `extra`'s (a Service listed in both
/// takes `extra`'s traffic policy and `appProtocol`s, the model's endpoints), and the routes.
pub fn engine_config(model: &Model, http_routes: &[HttpRoute], extra: &Config) -> Config {
    let mut services = services(model);
    for wanted in &extra.services {
        match services
            .iter_mut()
            .find(|s| s.namespace == wanted.namespace && s.name == wanted.name)
        {
            Some(service) => {
                service.traffic_policy = wanted.traffic_policy.clone();
                for port in &mut service.ports {
                    if let Some(p) = wanted.port(port.port) {
                        port.app_protocol = p.app_protocol.clone();
                    }
                }
            }
            None => services.push(wanted.clone()),
        }
    }
    Config {
        services,
        http_routes: http_routes.to_vec(),
        grpc_routes: model
            .grpc_routes()
            .iter()
            .chain(&extra.grpc_routes)
            .cloned()
            .collect(),
        tcp_routes: extra.tcp_routes.clone(),
    }
}
