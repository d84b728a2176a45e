//! Decides where a redirected connection goes, from the model alone: no sockets, no I/O.
//!
//! `plan` is the whole routing table of the outbound proxy, so it is tested case by case
//! (`plan/tests.rs`); the proxy only carries out what it returns.

use std::net::SocketAddr;

use ambit_mesh::identity::SpiffeId;
use ambit_mesh::model::{Model, Protocol, Service, Workload};
use gateway_api::gateways::Gateway;

/// The HBONE port of node agents and waypoints.
pub const HBONE_PORT: u16 = 15008;

/// What to do with one redirected connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundPlan {
    /// Tunnel to the agent of the destination's node over mTLS (HBONE).
    Hbone(Box<HboneHop>),
    /// The destination is outside the mesh: connect to it directly, in plaintext, as Istio
    /// ambient does.
    Passthrough {
        destination: SocketAddr,
        reason: PassthroughReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HboneHop {
    /// Who is calling: the source workload's identity (its certificate is presented).
    pub source: SpiffeId,
    /// The CONNECT authority. Direct to an endpoint: a workload IP and the target port, not
    /// the address the application dialled when that was a service VIP. Through a waypoint:
    /// the address the application dialled, which the waypoint resolves after its routes.
    pub actual_destination: SocketAddr,
    /// The identity the HBONE peer must present: the endpoint's (its agent holds it), or the
    /// waypoint's.
    pub destination_identity: SpiffeId,
    /// The node of the HBONE peer, and where the peer listens for HBONE: the endpoint's
    /// node agent, or a waypoint pod.
    pub destination_node: String,
    pub hbone_target: SocketAddr,
    /// The service the application dialled, as `namespace/name`, when it dialled a VIP.
    pub intended_service: Option<String>,
    /// The waypoint (Gateway `namespace/name`) that carries this connection, if any.
    pub waypoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughReason {
    /// No workload or service in the model has this address.
    UnknownAddress,
    /// The destination workload is not enrolled (namespace not labelled, opted out, …).
    DestinationNotInMesh,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("source {source_workload} is not in the model; was it deleted while connecting?")]
    UnknownSource { source_workload: String },
    #[error("service {service} has no port {port}")]
    NoSuchPort { service: String, port: u16 },
    #[error("service {service} has no endpoints")]
    NoEndpoints { service: String },
    #[error("destination {workload} runs on node {node}, which is not in the model")]
    UnknownNode { workload: String, node: String },
    #[error("identity of {workload} is invalid: {reason}")]
    Identity { workload: String, reason: String },
    /// Refused rather than sent around the waypoint, which would skip its policies.
    #[error("{target} uses waypoint {waypoint}, which has no running pod (labelled gateway.networking.k8s.io/gateway-name={name})")]
    WaypointUnavailable {
        target: String,
        waypoint: String,
        name: String,
    },
}

/// Picks one of a service's endpoints; the proxy passes its load balancer.
pub trait ChooseEndpoint {
    /// `candidates` is never empty; returns an index into it.
    fn choose(&self, candidates: &[SocketAddr]) -> usize;
}

/// Plans the next hop for a connection from `source` (namespace, name) to `dialled`.
pub fn plan(
    model: &Model,
    source: (&str, &str),
    dialled: SocketAddr,
    balancer: &impl ChooseEndpoint,
) -> Result<OutboundPlan, PlanError> {
    let (src_ns, src_name) = source;
    let source_workload =
        model
            .workload(src_ns, src_name)
            .ok_or_else(|| PlanError::UnknownSource {
                source_workload: format!("{src_ns}/{src_name}"),
            })?;
    let source_id = identity_of(model, source_workload)?;

    if let Some(service) = model.service_by_vip(dialled.ip()) {
        return match model.waypoint_for(service) {
            Some(waypoint) => {
                let name = format!("{}/{}", service.namespace, service.name);
                service_port(service, &name, dialled)?;
                plan_waypoint(model, waypoint, source_id, dialled, Some(name), balancer)
            }
            None => plan_service(model, service, source_id, dialled, balancer),
        };
    }
    match model.workload_by_ip(dialled.ip()) {
        Some(dst) if model.enrollment(dst).is_enrolled() => match model.waypoint_for(dst) {
            Some(waypoint) => plan_waypoint(model, waypoint, source_id, dialled, None, balancer),
            None => plan_workload(model, dst, source_id, dialled, None),
        },
        Some(dst) => plan_workload(model, dst, source_id, dialled, None),
        None => Ok(OutboundPlan::Passthrough {
            destination: dialled,
            reason: PassthroughReason::UnknownAddress,
        }),
    }
}

fn plan_service(
    model: &Model,
    service: &Service,
    source: SpiffeId,
    dialled: SocketAddr,
    balancer: &impl ChooseEndpoint,
) -> Result<OutboundPlan, PlanError> {
    let name = format!("{}/{}", service.namespace, service.name);
    let port = service_port(service, &name, dialled)?;
    let endpoints = addresses(model.endpoints(service), dialled, port.target_port);
    if endpoints.is_empty() {
        return Err(PlanError::NoEndpoints { service: name });
    }
    let addrs: Vec<SocketAddr> = endpoints.iter().map(|(_, a)| *a).collect();
    let (workload, endpoint) = endpoints[balancer.choose(&addrs).min(endpoints.len() - 1)];
    plan_workload(model, workload, source, endpoint, Some(name))
}

/// Each workload with an address on `port`: of the dialled address's family if it has one,
/// else its first; workloads without an address are left out.
fn addresses<'m>(
    workloads: impl Iterator<Item = &'m Workload>,
    dialled: SocketAddr,
    port: u16,
) -> Vec<(&'m Workload, SocketAddr)> {
    workloads
        .filter_map(|w| {
            let ip = w
                .ips
                .iter()
                .find(|ip| ip.is_ipv4() == dialled.is_ipv4())
                .or(w.ips.first())?;
            Some((w, SocketAddr::new(*ip, port)))
        })
        .collect()
}

/// The TCP port of `service` the application dialled.
fn service_port<'s>(
    service: &'s Service,
    name: &str,
    dialled: SocketAddr,
) -> Result<&'s ambit_mesh::model::ServicePort, PlanError> {
    service
        .ports
        .iter()
        .find(|p| p.port == dialled.port() && p.protocol == Protocol::Tcp)
        .ok_or_else(|| PlanError::NoSuchPort {
            service: name.to_owned(),
            port: dialled.port(),
        })
}

/// Tunnels to one of `waypoint`'s pods, which listen for HBONE themselves; the CONNECT
/// carries the address the application dialled, so the waypoint applies the routes of what
/// was asked for. `intended_service` is set when that was a service VIP.
fn plan_waypoint(
    model: &Model,
    waypoint: &Gateway,
    source: SpiffeId,
    dialled: SocketAddr,
    intended_service: Option<String>,
    balancer: &impl ChooseEndpoint,
) -> Result<OutboundPlan, PlanError> {
    let namespace = waypoint.metadata.namespace.as_deref().unwrap_or_default();
    let name = waypoint.metadata.name.as_deref().unwrap_or_default();
    let pods = addresses(model.waypoint_workloads(waypoint), dialled, HBONE_PORT);
    if pods.is_empty() {
        return Err(PlanError::WaypointUnavailable {
            target: intended_service.unwrap_or_else(|| dialled.to_string()),
            waypoint: format!("{namespace}/{name}"),
            name: name.to_owned(),
        });
    }
    let addrs: Vec<SocketAddr> = pods.iter().map(|(_, a)| *a).collect();
    let (pod, hbone_target) = pods[balancer.choose(&addrs).min(pods.len() - 1)];
    Ok(OutboundPlan::Hbone(Box::new(HboneHop {
        source,
        actual_destination: dialled,
        destination_identity: identity_of(model, pod)?,
        destination_node: pod.node.clone(),
        hbone_target,
        intended_service,
        waypoint: Some(format!("{namespace}/{name}")),
    })))
}

fn plan_workload(
    model: &Model,
    dst: &Workload,
    source: SpiffeId,
    destination: SocketAddr,
    intended_service: Option<String>,
) -> Result<OutboundPlan, PlanError> {
    if !model.enrollment(dst).is_enrolled() {
        return Ok(OutboundPlan::Passthrough {
            destination,
            reason: PassthroughReason::DestinationNotInMesh,
        });
    }
    let workload = format!("{}/{}", dst.namespace, dst.name);
    let node = model
        .node(&dst.node)
        .ok_or_else(|| PlanError::UnknownNode {
            workload: workload.clone(),
            node: dst.node.clone(),
        })?;
    Ok(OutboundPlan::Hbone(Box::new(HboneHop {
        source,
        actual_destination: destination,
        destination_identity: identity_of(model, dst)?,
        destination_node: node.name.clone(),
        hbone_target: SocketAddr::new(node.address, HBONE_PORT),
        intended_service,
        waypoint: None,
    })))
}

fn identity_of(model: &Model, w: &Workload) -> Result<SpiffeId, PlanError> {
    SpiffeId::new(model.trust_domain(), &w.namespace, &w.service_account).map_err(|e| {
        PlanError::Identity {
            workload: format!("{}/{}", w.namespace, w.name),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests;
