//! Which waypoint carries the traffic to a service or a workload, and where it is reached.
//!
//! # The rule
//! 1. The object's own `ambit.dev/use-waypoint` label wins over its namespace's.
//! 2. The value `none` means no waypoint, so one Service can leave its namespace's waypoint.
//! 3. The label names a Gateway in the object's namespace, and only a Gateway with
//!    `gatewayClassName: ambit-waypoint` is a waypoint. Any other name gives no waypoint.
//! 4. A waypoint's own pods never go through a waypoint (no loop).
//!
//! A waypoint is reached at the addresses of its workloads: the pods of the Gateway's
//! namespace labelled `gateway.networking.k8s.io/gateway-name: <gateway>`, the label Gateway
//! API implementations put on the pods they deploy. Not the Gateway's `status.addresses`:
//! status is written by a controller that may lag or be absent (the file source has none),
//! and the tunnel needs the workloads anyway, for their node and their SPIFFE identity.
//!
//! A label naming no waypoint is not an error of the model (the Gateway may be applied a
//! moment later), but its traffic then skips the waypoint and its policies:
//! [`dangling_waypoints`] lists such labels for sources to report.

use std::collections::BTreeMap;

use gateway_api::gateways::Gateway;

use super::labels::{GATEWAY_NAME, NO_WAYPOINT, USE_WAYPOINT, WAYPOINT_CLASS};
use super::{Model, Service, Workload};

/// What [`Model::waypoint_for`] is asked about: a Service (traffic to its VIP) or a workload
/// (traffic to its own address).
#[derive(Debug, Clone, Copy)]
pub enum WaypointTarget<'a> {
    Service(&'a Service),
    Workload(&'a Workload),
}

impl<'a> From<&'a Service> for WaypointTarget<'a> {
    fn from(service: &'a Service) -> Self {
        Self::Service(service)
    }
}

impl<'a> From<&'a Workload> for WaypointTarget<'a> {
    fn from(workload: &'a Workload) -> Self {
        Self::Workload(workload)
    }
}

impl WaypointTarget<'_> {
    fn namespace(&self) -> &str {
        match self {
            Self::Service(s) => &s.namespace,
            Self::Workload(w) => &w.namespace,
        }
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Service(s) => &s.labels,
            Self::Workload(w) => &w.labels,
        }
    }
}

/// Whether `gateway` is an Ambit waypoint.
pub fn is_waypoint(gateway: &Gateway) -> bool {
    gateway.spec.gateway_class_name == WAYPOINT_CLASS
}

/// The waypoint of `target` per the rule in the module docs.
pub(super) fn waypoint_for<'m>(
    model: &'m Model,
    target: WaypointTarget<'_>,
) -> Option<&'m Gateway> {
    let namespace = target.namespace();
    let name = target.labels().get(USE_WAYPOINT).or_else(|| {
        model
            .namespace(namespace)
            .and_then(|ns| ns.labels.get(USE_WAYPOINT))
    })?;
    if name == NO_WAYPOINT {
        return None;
    }
    if let WaypointTarget::Workload(w) = target {
        let serves = w.labels.get(GATEWAY_NAME);
        if serves
            .and_then(|g| model.gateway(namespace, g))
            .is_some_and(is_waypoint)
        {
            return None;
        }
    }
    model
        .gateway(namespace, name)
        .filter(|gateway| is_waypoint(gateway))
}

/// An `ambit.dev/use-waypoint` label naming no `ambit-waypoint` Gateway of its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingWaypoint {
    /// `Namespace`, `Service` or `Pod`.
    pub kind: &'static str,
    /// The labelled object: `shop` for a namespace, `shop/echo` otherwise.
    pub object: String,
    pub namespace: String,
    /// The label's value.
    pub gateway: String,
}

/// Every `ambit.dev/use-waypoint` label (on a namespace, a Service or a pod) that names no
/// `ambit-waypoint` Gateway in its namespace, in the model's order.
pub fn dangling_waypoints(model: &Model) -> Vec<DanglingWaypoint> {
    let namespaces = model
        .namespaces()
        .iter()
        .map(|ns| ("Namespace", ns.name.clone(), &ns.name, &ns.labels));
    let services = model.services().iter().map(|s| {
        let object = format!("{}/{}", s.namespace, s.name);
        ("Service", object, &s.namespace, &s.labels)
    });
    let pods = model.workloads().iter().map(|w| {
        let object = format!("{}/{}", w.namespace, w.name);
        ("Pod", object, &w.namespace, &w.labels)
    });
    namespaces
        .chain(services)
        .chain(pods)
        .filter_map(|(kind, object, namespace, labels)| {
            let gateway = labels.get(USE_WAYPOINT)?;
            let found = model.gateway(namespace, gateway).is_some_and(is_waypoint);
            (gateway != NO_WAYPOINT && !found).then(|| DanglingWaypoint {
                kind,
                object,
                namespace: namespace.clone(),
                gateway: gateway.clone(),
            })
        })
        .collect()
}
