//! TrafficPolicy status: the verdict on each policy, in the terms of Gateway API's policy
//! attachment (GEP-713), so `kubectl get trafficpolicy` says whether a policy is in force.
//!
//! `Accepted` is `True` when the policy is in force for at least one target; otherwise
//! `False` with reason `Invalid` (a target's group does not match its kind), `TargetNotFound`
//! (no target exists, or the Services it names use no waypoint, so nothing applies it), or
//! `Conflicted` (another policy takes precedence on every target: the first in
//! namespace/name order among those naming the same object). A policy on a Service is not in
//! conflict with one on the Service's waypoint: the Service's wins for that Service, and the
//! waypoint's still applies to the others. `Programmed` follows `Accepted`: the waypoint
//! applies what it accepts.
//!
//! The waypoints write it (see `waypoint/src/status.rs`): each reports the policies in its
//! namespace that reach it, plus, so that someone does, those whose targets reach no
//! waypoint. The verdict never names the reporting waypoint, so two waypoints of one
//! namespace write the same status and do not undo each other's writes.

use std::future::Future;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::Api;

use super::routes::ApiRouteStatus;
use crate::api::{TargetKind, TrafficPolicy, TrafficPolicyStatus};
use crate::model::Model;

/// GEP-713's reasons for the `Accepted` condition of a policy.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const CONFLICTED: &str = "Conflicted";
}

/// What one policy's status should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// One of [`reason`]; `Accepted` means in force.
    pub reason: &'static str,
    pub message: String,
}

impl PolicyVerdict {
    pub fn accepted(&self) -> bool {
        self.reason == reason::ACCEPTED
    }

    /// The status object, with `now` as the conditions' transition time.
    pub fn status(&self, now: &Time) -> TrafficPolicyStatus {
        let condition = |type_: &str, reason: &str| Condition {
            type_: type_.to_owned(),
            status: if self.accepted() { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: self.message.clone(),
            observed_generation: self.generation,
            last_transition_time: now.clone(),
        };
        let programmed = if self.accepted() {
            "Programmed"
        } else {
            "NotAccepted"
        };
        TrafficPolicyStatus {
            conditions: vec![
                condition("Accepted", self.reason),
                condition("Programmed", programmed),
            ],
        }
    }
}

/// How one targetRef of a policy resolves.
enum Target {
    /// It reaches a waypoint; `in_force` is false when another policy takes precedence there.
    Reached {
        waypoint: (String, String),
        in_force: bool,
        note: String,
    },
    /// It reaches nothing that applies policies.
    Unreached(String),
}

/// The verdicts the waypoint `namespace/name` reports, in namespace/name order.
pub fn policy_verdicts(model: &Model, namespace: &str, name: &str) -> Vec<PolicyVerdict> {
    let mut policies: Vec<&TrafficPolicy> = model
        .traffic_policies()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    policies.sort_by_key(|p| p.metadata.name.clone());
    policies
        .into_iter()
        .filter_map(|policy| verdict(model, policy, (namespace, name)))
        .collect()
}

/// `None` when the policy is not this waypoint's to report.
fn verdict(model: &Model, policy: &TrafficPolicy, waypoint: (&str, &str)) -> Option<PolicyVerdict> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    let make = |reason: &'static str, message: String| PolicyVerdict {
        namespace: namespace.clone(),
        name: name.clone(),
        generation: policy.metadata.generation,
        reason,
        message,
    };
    if let Err(e) = policy.spec.check_target_refs() {
        return Some(make(reason::INVALID, e.to_string()));
    }
    let targets: Vec<Target> = policy
        .spec
        .target_refs
        .iter()
        .map(|t| resolve(model, policy, &namespace, t.kind, &t.name))
        .collect();
    let reached: Vec<&Target> = targets
        .iter()
        .filter(|t| matches!(t, Target::Reached { .. }))
        .collect();
    let ours = reached.iter().any(|t| {
        matches!(t, Target::Reached { waypoint: (ns, n), .. } if ns == waypoint.0 && n == waypoint.1)
    });
    let notes: Vec<&str> = targets
        .iter()
        .map(|t| match t {
            Target::Reached { note, .. } => note.as_str(),
            Target::Unreached(why) => why.as_str(),
        })
        .collect();
    let message = notes.join("; ");
    if reached.is_empty() {
        return Some(make(reason::TARGET_NOT_FOUND, message));
    }
    if !ours {
        return None;
    }
    let in_force = reached
        .iter()
        .any(|t| matches!(t, Target::Reached { in_force: true, .. }));
    Some(if in_force {
        make(reason::ACCEPTED, message)
    } else {
        make(reason::CONFLICTED, message)
    })
}

fn resolve(
    model: &Model,
    policy: &TrafficPolicy,
    namespace: &str,
    kind: TargetKind,
    target: &str,
) -> Target {
    let key = |g: &gateway_api::gateways::Gateway| {
        (
            g.metadata.namespace.clone().unwrap_or_default(),
            g.metadata.name.clone().unwrap_or_default(),
        )
    };
    match kind {
        TargetKind::Service => {
            let Some(service) = model.service(namespace, target) else {
                return Target::Unreached(format!("Service {target} not found"));
            };
            let Some(gateway) = model.waypoint_for(service) else {
                return Target::Unreached(format!(
                    "Service {target} uses no waypoint, so nothing applies this policy to it"
                ));
            };
            let winner = model.traffic_policy_for(namespace, target);
            let in_force = winner.is_some_and(|w| w.metadata.name == policy.metadata.name);
            let note = match winner {
                Some(w) if !in_force => format!(
                    "TrafficPolicy {} takes precedence for Service {target}",
                    w.metadata.name.as_deref().unwrap_or_default()
                ),
                _ => format!("in force for Service {target}"),
            };
            Target::Reached {
                waypoint: key(gateway),
                in_force,
                note,
            }
        }
        TargetKind::Gateway => {
            let Some(gateway) = model
                .gateway(namespace, target)
                .filter(|g| g.spec.gateway_class_name == crate::model::labels::WAYPOINT_CLASS)
            else {
                return Target::Unreached(format!("waypoint Gateway {target} not found"));
            };
            // The first policy naming this Gateway, in name order, is the Gateway's.
            let first = model
                .traffic_policies()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
                .filter(|p| p.spec.check_target_refs().is_ok())
                .filter(|p| {
                    p.spec
                        .target_refs
                        .iter()
                        .any(|t| t.kind == TargetKind::Gateway && t.name == target)
                })
                .min_by_key(|p| p.metadata.name.clone());
            let in_force = first.is_some_and(|f| f.metadata.name == policy.metadata.name);
            let note = match first {
                Some(f) if !in_force => format!(
                    "TrafficPolicy {} takes precedence for Gateway {target}",
                    f.metadata.name.as_deref().unwrap_or_default()
                ),
                _ => format!("in force for the Services of waypoint {target}"),
            };
            Target::Reached {
                waypoint: key(gateway),
                in_force,
                note,
            }
        }
    }
}

/// Writes a policy's status; a trait so that the decision can be tested without a server.
pub trait PolicyStatusWriter {
    fn write_policy_status(
        &self,
        namespace: &str,
        name: &str,
        status: &TrafficPolicyStatus,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

impl PolicyStatusWriter for ApiRouteStatus {
    async fn write_policy_status(
        &self,
        namespace: &str,
        name: &str,
        status: &TrafficPolicyStatus,
    ) -> Result<(), kube::Error> {
        let api: Api<TrafficPolicy> = Api::namespaced(self.client(), namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
