//! The mesh's view of the cluster: nodes, namespaces, workloads, services, and who is enrolled.
//!
//! Both proxies read this one model; its sources (the YAML file now, Kubernetes later) only
//! fill a [`ClusterState`] and call [`Model::new`]. A model never changes once built: a reload
//! builds a new one, which readers receive as an `Arc<Model>`.
//!
//! # Invariants
//! - node and namespace names are unique, workload and service names unique per namespace;
//! - an IP is the address of at most one workload or service VIP; host-network workloads
//!   share their node's address, are exempt, and are not found by IP;
//! - Gateways, HTTPRoutes and GRPCRoutes are unique per namespace, and are kept as the
//!   gateway-api crate's types, trimmed by [`Trimmed`];
//! - lookups by IP, by name and by node are hash lookups on indexes built by [`Model::new`].

mod cidr;
mod enrollment;
mod index;
pub mod labels;
mod namespace;
mod node;
mod redirect;
mod route;
mod service;
mod waypoint;
mod workload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gateways::Gateway;
use serde::{Serialize, Serializer};

use crate::api::{TargetKind, TrafficPolicy};

pub use cidr::{Cidr, CidrError};
pub use enrollment::Enrollment;
pub use index::{AddressSlot, GatewayApiKind, ModelError};
pub use namespace::Namespace;
pub use node::Node;
pub use redirect::RedirectSettings;
pub use route::{trimmed_meta, Trimmed};
pub use service::{Protocol, Service, ServicePort};
pub use waypoint::{dangling_waypoints, is_waypoint, DanglingWaypoint, WaypointTarget};
pub use workload::{Workload, DEFAULT_SERVICE_ACCOUNT};

use index::{Address, Index};

/// The trust domain of SPIFFE IDs when a source names none, as in Kubernetes.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Everything a source knows, as lists; [`Model::new`] checks and indexes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// The `<trust-domain>` of `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub trust_domain: String,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    /// Gateways; those of class `ambit-waypoint` are waypoints ([`Model::waypoint_for`]).
    /// (Empty Gateway API lists are left out of a dump, which older readers then accept.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<Gateway>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<HttpRoute>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_routes: Vec<GrpcRoute>,
    /// Ambit's TrafficPolicies: outlier detection, limits and faults the waypoint applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic_policies: Vec<TrafficPolicy>,
    pub redirect: RedirectSettings,
}

impl Default for ClusterState {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            nodes: Vec::new(),
            namespaces: Vec::new(),
            workloads: Vec::new(),
            services: Vec::new(),
            gateways: Vec::new(),
            http_routes: Vec::new(),
            grpc_routes: Vec::new(),
            traffic_policies: Vec::new(),
            redirect: RedirectSettings::default(),
        }
    }
}

/// A checked, indexed [`ClusterState`]. Serializes as the state (for a config dump); two
/// models are equal when their states are.
#[derive(Clone, Default)]
pub struct Model {
    state: ClusterState,
    index: Index,
}

impl Model {
    /// Indexes `state`, refusing duplicate names and addresses claimed twice.
    pub fn new(state: ClusterState) -> Result<Self, ModelError> {
        let index = Index::build(&state)?;
        Ok(Self { state, index })
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn trust_domain(&self) -> &str {
        &self.state.trust_domain
    }

    pub fn redirect(&self) -> &RedirectSettings {
        &self.state.redirect
    }

    pub fn nodes(&self) -> &[Node] {
        &self.state.nodes
    }

    pub fn namespaces(&self) -> &[Namespace] {
        &self.state.namespaces
    }

    pub fn workloads(&self) -> &[Workload] {
        &self.state.workloads
    }

    pub fn services(&self) -> &[Service] {
        &self.state.services
    }

    pub fn gateways(&self) -> &[Gateway] {
        &self.state.gateways
    }

    pub fn http_routes(&self) -> &[HttpRoute] {
        &self.state.http_routes
    }

    pub fn grpc_routes(&self) -> &[GrpcRoute] {
        &self.state.grpc_routes
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&Gateway> {
        let i = self.index.gateways.get(namespace, name)?;
        Some(&self.state.gateways[i])
    }

    pub fn traffic_policies(&self) -> &[TrafficPolicy] {
        &self.state.traffic_policies
    }

    /// The TrafficPolicy in force for the Service `namespace/name`: one that targets the
    /// Service wins over one that targets its waypoint Gateway; among equals, the first in
    /// namespace/name order.
    pub fn traffic_policy_for(&self, namespace: &str, name: &str) -> Option<&TrafficPolicy> {
        let service = self.service(namespace, name)?;
        let waypoint = self
            .waypoint_for(service)
            .and_then(|g| g.metadata.name.as_deref());
        let targets = |p: &TrafficPolicy, kind: TargetKind, target: &str| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.spec
                    .target_refs
                    .iter()
                    .any(|t| t.kind == kind && t.group == kind.group() && t.name == target)
        };
        let mut ordered: Vec<&TrafficPolicy> = self.state.traffic_policies.iter().collect();
        ordered.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
        ordered
            .iter()
            .find(|p| targets(p, TargetKind::Service, name))
            .or_else(|| {
                let gateway = waypoint?;
                ordered
                    .iter()
                    .find(|p| targets(p, TargetKind::Gateway, gateway))
            })
            .copied()
    }

    pub fn http_route(&self, namespace: &str, name: &str) -> Option<&HttpRoute> {
        let i = self.index.http_routes.get(namespace, name)?;
        Some(&self.state.http_routes[i])
    }

    pub fn grpc_route(&self, namespace: &str, name: &str) -> Option<&GrpcRoute> {
        let i = self.index.grpc_routes.get(namespace, name)?;
        Some(&self.state.grpc_routes[i])
    }

    /// The waypoint (an `ambit-waypoint` Gateway) that traffic to `target` goes through, if
    /// any: the object's `ambit.dev/use-waypoint` label wins over its namespace's, `none` opts
    /// out, and the Gateway must exist in the object's namespace with class `ambit-waypoint`;
    /// a waypoint's own pods use none. The rule's reasons are in `model/waypoint.rs`.
    pub fn waypoint_for<'a>(&self, target: impl Into<WaypointTarget<'a>>) -> Option<&Gateway> {
        waypoint::waypoint_for(self, target.into())
    }

    /// The workloads that implement `gateway` (labelled
    /// `gateway.networking.k8s.io/gateway-name: <name>` in its namespace): a waypoint is
    /// reached at their addresses. In the order they were listed.
    pub fn waypoint_workloads(&self, gateway: &Gateway) -> impl Iterator<Item = &Workload> + '_ {
        let (namespace, name) = route::key(&gateway.metadata);
        self.index
            .by_gateway
            .get(namespace)
            .and_then(|names| names.get(name))
            .into_iter()
            .flatten()
            .map(|&w| &self.state.workloads[w])
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index.nodes.get(name).map(|&i| &self.state.nodes[i])
    }

    /// The namespace if a source listed it; an unlisted one has no labels.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.index
            .namespaces
            .get(name)
            .map(|&i| &self.state.namespaces[i])
    }

    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Workload> {
        let i = self.index.workloads.get(namespace, name)?;
        Some(&self.state.workloads[i])
    }

    /// The workload answering on `ip`; never a host-network workload (see the invariants).
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Workload> {
        match self.index.addresses.get(&ip)? {
            Address::Workload(i) => Some(&self.state.workloads[*i]),
            Address::ServiceVip(_) => None,
        }
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        let i = self.index.services.get(namespace, name)?;
        Some(&self.state.services[i])
    }

    /// The service that has `ip` among its VIPs.
    pub fn service_by_vip(&self, ip: IpAddr) -> Option<&Service> {
        match self.index.addresses.get(&ip)? {
            Address::ServiceVip(i) => Some(&self.state.services[*i]),
            Address::Workload(_) => None,
        }
    }

    /// The workloads `service` selects ([`Service::selects`]), in the order they were listed.
    /// The service is found in this model by namespace and name; one this model does not
    /// hold has no endpoints.
    pub fn endpoints(&self, service: &Service) -> impl Iterator<Item = &Workload> + '_ {
        self.index
            .services
            .get(&service.namespace, &service.name)
            .and_then(|i| self.index.endpoints.get(i))
            .into_iter()
            .flatten()
            .map(|&w| &self.state.workloads[w])
    }

    /// Whether `workload` is in the mesh, and if not, why (see [`Enrollment`]).
    pub fn enrollment(&self, workload: &Workload) -> Enrollment {
        enrollment::decide(self.namespace(&workload.namespace), workload)
    }

    /// Whether a pod of `namespace` is enrolled before its own labels are known (its sandbox
    /// announced ahead of the model): the namespace's label decides.
    pub fn namespace_enrolls(&self, namespace: &str) -> bool {
        enrollment::namespace_enrolls(self.namespace(namespace))
    }

    /// The enrolled workloads scheduled on `node`, in the order they were listed.
    pub fn enrolled_on_node(&self, node: &str) -> impl Iterator<Item = &Workload> + '_ {
        self.index
            .enrolled_by_node
            .get(node)
            .into_iter()
            .flatten()
            .map(|&w| &self.state.workloads[w])
    }
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Model").field(&self.state).finish()
    }
}

impl Serialize for Model {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.state.serialize(serializer)
    }
}
