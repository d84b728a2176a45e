//! What a waypoint Gateway's status says, and the `ambit-waypoint` GatewayClass's.
//!
//! `Accepted` is `True` when every listener is port 15008 with protocol HBONE (the only thing
//! a waypoint listens for), else `False` with reason `ListenersNotValid` naming each bad
//! listener: such a Gateway is not deployed, and what an earlier version deployed stays.
//! `Programmed` is `True` once the waypoint's Deployment has a ready pod, else `False`
//! (`Pending`, or `Invalid` when not accepted). `addresses` is the waypoint Service's
//! ClusterIP. Each listener has its own entry in `listeners`: `Accepted` (or `PortUnavailable`
//! / `UnsupportedProtocol`), `Programmed` as the Gateway's, `ResolvedRefs` (`False` with
//! `InvalidRouteKinds` when `allowedRoutes.kinds` names any: routes attach to Services in the
//! mesh, never to a waypoint's listener, so `supportedKinds` is empty and `attachedRoutes` 0)
//! and `Conflicted` `False`. Conditions carry the Gateway's generation as `observedGeneration`, and keep
//! their `lastTransitionTime` while their status stays the same, so an unchanged status
//! compares equal and is not written again.

use ambit_mesh::config::kube::routes::CONTROLLER_NAME;
use gateway_api::gatewayclasses::{GatewayClass, GatewayClassStatus};
use gateway_api::gateways::{
    Gateway, GatewayListeners, GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners,
};
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
    let listeners = gateway
        .spec
        .listeners
        .iter()
        .map(|listener| GatewayStatusListeners {
            name: listener.name.clone(),
            attached_routes: 0,
            supported_kinds: Some(Vec::new()),
            conditions: listener_conditions(listener, problem.is_none().then_some(ready > 0))
                .into_iter()
                .map(|(type_, ok, reason, message)| condition(type_, ok, reason, message))
                .collect(),
        })
        .collect();
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
        listeners: Some(listeners),
        ..GatewayStatus::default()
    }
}

/// `(type, status, reason, message)` of one listener's conditions. `ready` is `None` when the
/// Gateway is not deployed, else whether its waypoint has a ready pod.
fn listener_conditions(
    listener: &GatewayListeners,
    ready: Option<bool>,
) -> [(&'static str, bool, &'static str, String); 4] {
    let accepted = if listener.port != HBONE_PORT {
        (
            false,
            "PortUnavailable",
            format!("a waypoint listens on port {HBONE_PORT} only"),
        )
    } else if listener.protocol != HBONE_PROTOCOL {
        (
            false,
            "UnsupportedProtocol",
            format!("a waypoint speaks {HBONE_PROTOCOL} only"),
        )
    } else {
        (
            true,
            "Accepted",
            format!("{HBONE_PROTOCOL} on {HBONE_PORT}"),
        )
    };
    let programmed = match (accepted.0, ready) {
        (false, _) => (false, "Invalid", "the listener is not accepted".to_owned()),
        (true, None) => (
            false,
            "Invalid",
            "not deployed: the Gateway is not accepted".to_owned(),
        ),
        (true, Some(false)) => (false, "Pending", "no ready waypoint pod yet".to_owned()),
        (true, Some(true)) => (true, "Programmed", "served by the waypoint".to_owned()),
    };
    let kinds = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .is_some_and(|k| !k.is_empty());
    let resolved = if kinds {
        (
            false,
            "InvalidRouteKinds",
            "a waypoint's listener takes no routes: HTTPRoutes and GRPCRoutes attach to Services (parentRefs of kind Service)".to_owned(),
        )
    } else {
        (true, "ResolvedRefs", "nothing to resolve".to_owned())
    };
    [
        ("Accepted", accepted.0, accepted.1, accepted.2),
        ("Programmed", programmed.0, programmed.1, programmed.2),
        ("ResolvedRefs", resolved.0, resolved.1, resolved.2),
        (
            "Conflicted",
            false,
            "NoConflicts",
            "no other listener uses this port".to_owned(),
        ),
    ]
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
    for listener in desired.listeners.iter_mut().flatten() {
        let before = current
            .and_then(|c| c.listeners.as_deref())
            .and_then(|l| l.iter().find(|l| l.name == listener.name));
        keep_transition_times(
            before.map(|l| l.conditions.as_slice()),
            &mut listener.conditions,
        );
    }
    let unchanged = current.is_some_and(|c| {
        c.conditions == desired.conditions
            && c.addresses == desired.addresses
            && c.listeners == desired.listeners
    });
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
