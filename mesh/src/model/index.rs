//! Lookup tables built once per model, so that per-connection questions are hash lookups.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::labels::GATEWAY_NAME;
use super::route::key;
use super::{enrollment, ClusterState};

/// Why a [`ClusterState`] cannot become a model: two objects claim the same key or address.
///
/// Positions (`index`, `ip_index`, …) count from 0 in the state's lists, so that a source can
/// point at the offending entry (the file source turns them into paths such as
/// `workloads[2].ips[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("node {name} is listed twice")]
    DuplicateNode { index: usize, name: String },
    #[error("namespace {name} is listed twice")]
    DuplicateNamespace { index: usize, name: String },
    #[error("workload {namespace}/{name} is listed twice")]
    DuplicateWorkload {
        index: usize,
        namespace: String,
        name: String,
    },
    #[error("service {namespace}/{name} is listed twice")]
    DuplicateService {
        index: usize,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} is listed twice")]
    DuplicateObject {
        kind: GatewayApiKind,
        index: usize,
        namespace: String,
        name: String,
    },
    #[error("{kind} without metadata.{field}")]
    Unnamed {
        kind: GatewayApiKind,
        index: usize,
        /// `name` or `namespace`.
        field: &'static str,
    },
    #[error("{ip} is already an address of {owner}; an IP belongs to one workload or service")]
    AddressInUse {
        ip: IpAddr,
        claimant: AddressSlot,
        /// The object that listed the address first, e.g. `workload shop/echo-1`.
        owner: String,
    },
}

/// The Gateway API kinds the model holds, named as in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayApiKind {
    Gateway,
    HttpRoute,
    GrpcRoute,
    /// Ambit's own `TrafficPolicy` (ambit.dev), held alongside the Gateway API objects.
    TrafficPolicy,
}

impl std::fmt::Display for GatewayApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gateway => "Gateway",
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::TrafficPolicy => "TrafficPolicy",
        })
    }
}

/// Where an address is listed in a [`ClusterState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSlot {
    WorkloadIp { index: usize, ip_index: usize },
    ServiceVip { index: usize, vip_index: usize },
}

/// Positions into the state's lists. Built by [`Index::build`], never changed afterwards.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    pub nodes: HashMap<String, usize>,
    pub namespaces: HashMap<String, usize>,
    pub workloads: NamespacedNames,
    pub services: NamespacedNames,
    pub gateways: NamespacedNames,
    pub http_routes: NamespacedNames,
    pub grpc_routes: NamespacedNames,
    pub traffic_policies: NamespacedNames,
    /// Per namespace, then Gateway name, the positions of the workloads labelled
    /// `gateway.networking.k8s.io/gateway-name` with that name.
    pub by_gateway: HashMap<String, HashMap<String, Vec<usize>>>,
    /// Workload IPs and service VIPs; host-network workloads are left out.
    pub addresses: HashMap<IpAddr, Address>,
    /// Per service position, the positions of its endpoints.
    pub endpoints: Vec<Vec<usize>>,
    /// Per node name, the positions of its enrolled workloads.
    pub enrolled_by_node: HashMap<String, Vec<usize>>,
}

/// What an indexed address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Address {
    Workload(usize),
    ServiceVip(usize),
}

/// Positions by namespace, then name; looked up with two `&str` and no allocation.
#[derive(Debug, Clone, Default)]
pub(super) struct NamespacedNames(HashMap<String, HashMap<String, usize>>);

impl NamespacedNames {
    pub fn get(&self, namespace: &str, name: &str) -> Option<usize> {
        self.0.get(namespace)?.get(name).copied()
    }

    /// Records `position`; false (and nothing recorded) if the name is taken.
    fn insert(&mut self, namespace: &str, name: &str, position: usize) -> bool {
        let names = self.0.entry(namespace.to_owned()).or_default();
        if names.contains_key(name) {
            return false;
        }
        names.insert(name.to_owned(), position);
        true
    }
}

impl Index {
    pub fn build(state: &ClusterState) -> Result<Self, ModelError> {
        let mut index = Index::default();
        for (i, node) in state.nodes.iter().enumerate() {
            if index.nodes.insert(node.name.clone(), i).is_some() {
                return Err(ModelError::DuplicateNode {
                    index: i,
                    name: node.name.clone(),
                });
            }
        }
        for (i, ns) in state.namespaces.iter().enumerate() {
            if index.namespaces.insert(ns.name.clone(), i).is_some() {
                return Err(ModelError::DuplicateNamespace {
                    index: i,
                    name: ns.name.clone(),
                });
            }
        }
        for (i, w) in state.workloads.iter().enumerate() {
            if !index.workloads.insert(&w.namespace, &w.name, i) {
                return Err(ModelError::DuplicateWorkload {
                    index: i,
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                });
            }
            if w.host_network {
                continue;
            }
            for (ip_index, ip) in w.ips.iter().enumerate() {
                let slot = AddressSlot::WorkloadIp { index: i, ip_index };
                index.claim(state, *ip, slot, Address::Workload(i))?;
            }
        }
        for (i, svc) in state.services.iter().enumerate() {
            if !index.services.insert(&svc.namespace, &svc.name, i) {
                return Err(ModelError::DuplicateService {
                    index: i,
                    namespace: svc.namespace.clone(),
                    name: svc.name.clone(),
                });
            }
            for (vip_index, vip) in svc.vips.iter().enumerate() {
                let slot = AddressSlot::ServiceVip {
                    index: i,
                    vip_index,
                };
                index.claim(state, *vip, slot, Address::ServiceVip(i))?;
            }
        }
        index.gateways = named(
            GatewayApiKind::Gateway,
            state.gateways.iter().map(|g| &g.metadata),
        )?;
        index.http_routes = named(
            GatewayApiKind::HttpRoute,
            state.http_routes.iter().map(|r| &r.metadata),
        )?;
        index.grpc_routes = named(
            GatewayApiKind::GrpcRoute,
            state.grpc_routes.iter().map(|r| &r.metadata),
        )?;
        index.traffic_policies = named(
            GatewayApiKind::TrafficPolicy,
            state.traffic_policies.iter().map(|p| &p.metadata),
        )?;
        for (i, w) in state.workloads.iter().enumerate() {
            if let Some(gateway) = w.labels.get(GATEWAY_NAME) {
                index
                    .by_gateway
                    .entry(w.namespace.clone())
                    .or_default()
                    .entry(gateway.clone())
                    .or_default()
                    .push(i);
            }
        }
        index.endpoints = endpoints(state);
        for (i, w) in state.workloads.iter().enumerate() {
            let namespace = index
                .namespaces
                .get(&w.namespace)
                .map(|&n| &state.namespaces[n]);
            if enrollment::decide(namespace, w).is_enrolled() {
                index
                    .enrolled_by_node
                    .entry(w.node.clone())
                    .or_default()
                    .push(i);
            }
        }
        Ok(index)
    }

    fn claim(
        &mut self,
        state: &ClusterState,
        ip: IpAddr,
        claimant: AddressSlot,
        address: Address,
    ) -> Result<(), ModelError> {
        match self.addresses.insert(ip, address) {
            None => Ok(()),
            Some(previous) => Err(ModelError::AddressInUse {
                ip,
                claimant,
                owner: match previous {
                    Address::Workload(w) => {
                        let w = &state.workloads[w];
                        format!("workload {}/{}", w.namespace, w.name)
                    }
                    Address::ServiceVip(s) => {
                        let s = &state.services[s];
                        format!("service {}/{}", s.namespace, s.name)
                    }
                },
            }),
        }
    }
}

/// Positions of Gateway API objects by namespace and name, refusing an unnamed object or a
/// name listed twice.
fn named<'a>(
    kind: GatewayApiKind,
    metas: impl Iterator<Item = &'a ObjectMeta>,
) -> Result<NamespacedNames, ModelError> {
    let mut names = NamespacedNames::default();
    for (index, meta) in metas.enumerate() {
        let (namespace, name) = key(meta);
        for (field, value) in [("namespace", namespace), ("name", name)] {
            if value.is_empty() {
                return Err(ModelError::Unnamed { kind, index, field });
            }
        }
        if !names.insert(namespace, name, index) {
            return Err(ModelError::DuplicateObject {
                kind,
                index,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
    }
    Ok(names)
}

/// Per service, the workloads it selects, found among the workloads of its namespace only.
fn endpoints(state: &ClusterState) -> Vec<Vec<usize>> {
    let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, w) in state.workloads.iter().enumerate() {
        by_namespace.entry(&w.namespace).or_default().push(i);
    }
    state
        .services
        .iter()
        .map(|svc| {
            by_namespace
                .get(svc.namespace.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|&w| svc.selects(&state.workloads[w]))
                .collect()
        })
        .collect()
}
