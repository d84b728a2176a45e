//! What a waypoint Gateway's status says, and the `ambit-waypoint` GatewayClass's.
//!
//! `Accepted` is `True` when every listener is port 15008 with protocol HBONE (the only thing
//! a waypoint listens for), else `False` with reason `ListenersNotValid` naming each bad
//! listener: such a Gateway is not deployed, and what an earlier version deployed stays.
//! `Programmed` is `True` once the waypoint's Deployment has a ready pod, else `False`
//! (`Pending`, or `Invalid` when not accepted). `addresses` is the waypoint Service's
//! ClusterIP. Conditions carry the Gateway's generation as `observedGeneration`, and keep
//! their `lastTransitionTime` while their status stays the same, so an unchanged status
//! compares equal and is not written again.

use ambit_mesh::config::kube::routes::CONTROLLER_NAME;
use gateway_api::gatewayclasses::{GatewayClass, GatewayClassStatus};
use gateway_api::gateways::{Gateway, GatewayStatus, GatewayStatusAddresses};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The port and protocol of a waypoint's listener.
pub const HBONE_PORT: i32 = 15008;
pub const HBONE_PROTOCOL: &str = "HBONE";

/// Why `gateway` cannot be a waypoint, or `None` when its listeners are what one needs.
pub fn listener_problem(gateway: &Gateway) -> Option<String> {
    let listeners = &gateway.spec.listeners;
    if listeners.is_empty() {
        return Some(format!(
            "no listener; a waypoint needs one on port {HBONE_PORT} with protocol {HBONE_PROTOCOL}"
        ));
    }
    let bad: Vec<String> = listeners
        .iter()
        .filter(|l| l.port != HBONE_PORT || l.protocol != HBONE_PROTOCOL)
        .map(|l| {
            format!(
                "listener {} is port {} protocol {}",
                l.name, l.port, l.protocol
            )
        })
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "{}; a waypoint listens on port {HBONE_PORT} with protocol {HBONE_PROTOCOL} only",
            bad.join(", ")
        )
    })
}

/// What the deployer saw of a waypoint's objects after applying them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The Deployment's `status.readyReplicas`.
    pub ready_replicas: i32,
    /// The Service's `spec.clusterIP`, when it has one.
    pub cluster_ip: Option<String>,
}

/// The status `gateway` should have: `problem` from [`listener_problem`], `observed` once its
/// objects were applied. Transition times are `now`; see [`keep_transition_times`].
pub fn gateway_status(
    gateway: &Gateway,
    problem: Option<&str>,
    observed: Option<&Observed>,
    now: &Time,
) -> GatewayStatus {
    let name = gateway.metadata.name.as_deref().unwrap_or_default();
    let namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: gateway.metadata.generation,
        last_transition_time: now.clone(),
    };
    let accepted = match problem {
        None => condition(
            "Accepted",
            true,
            "Accepted",
            "a waypoint, deployed by ambit-controller".to_owned(),
        ),
        Some(problem) => condition("Accepted", false, "ListenersNotValid", problem.to_owned()),
    };
    let ready = observed.map_or(0, |o| o.ready_replicas);
    let programmed = match (problem, ready) {
        (Some(_), _) => condition(
            "Programmed",
            false,
            "Invalid",
            "not deployed: the Gateway is not accepted".to_owned(),
        ),
        (None, 0) => condition(
            "Programmed",
            false,
            "Pending",
            format!("waiting for a ready pod of Deployment {namespace}/{name}"),
        ),
        (None, n) => condition(
            "Programmed",
            true,
            "Programmed",
            format!("Deployment {namespace}/{name} has {n} ready pod(s)"),
        ),
    };
    let addresses = observed
        .and_then(|o| o.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| {
            vec![GatewayStatusAddresses {
                r#type: Some("IPAddress".to_owned()),
                value: ip.to_owned(),
            }]
        });
    GatewayStatus {
        addresses,
        conditions: Some(vec![accepted, programmed]),
        ..GatewayStatus::default()
    }
}

/// `conditions` with the `lastTransitionTime` of each condition whose status is the same in
/// `current` taken from there.
pub fn keep_transition_times(current: Option<&[Condition]>, conditions: &mut [Condition]) {
    for condition in conditions {
        let before = current
            .into_iter()
            .flatten()
            .find(|c| c.type_ == condition.type_ && c.status == condition.status);
        if let Some(before) = before {
            condition.last_transition_time = before.last_transition_time.clone();
        }
    }
}

/// The status to write on `gateway`, or `None` when it already says that.
pub fn gateway_status_update(
    gateway: &Gateway,
    mut desired: GatewayStatus,
) -> Option<GatewayStatus> {
    let current = gateway.status.as_ref();
    let current_conditions = current.and_then(|s| s.conditions.as_deref());
    if let Some(conditions) = desired.conditions.as_mut() {
        keep_transition_times(current_conditions, conditions);
    }
    let unchanged = current
        .is_some_and(|c| c.conditions == desired.conditions && c.addresses == desired.addresses);
    (!unchanged).then_some(desired)
}

/// The status to write on the `ambit-waypoint` GatewayClass: `Accepted` when its
/// controllerName is Ambit's; `None` when the class is not Ambit's or already says so.
pub fn class_status_update(class: &GatewayClass, now: &Time) -> Option<GatewayClassStatus> {
    if class.spec.controller_name != CONTROLLER_NAME {
        return None;
    }
    let mut conditions = vec![Condition {
        type_: "Accepted".to_owned(),
        status: "True".to_owned(),
        reason: "Accepted".to_owned(),
        message: "waypoints of this class are deployed by ambit-controller".to_owned(),
        observed_generation: class.metadata.generation,
        last_transition_time: now.clone(),
    }];
    let current = class.status.as_ref().and_then(|s| s.conditions.as_deref());
    keep_transition_times(current, &mut conditions);
    let already = current.is_some_and(|c| c.iter().any(|c| *c == conditions[0]));
    (!already).then(|| GatewayClassStatus {
        conditions: Some(conditions),
        ..GatewayClassStatus::default()
    })
}
