//! `TrafficPolicy` (ambit.dev/v1alpha1): what the waypoint does for a Service or a Gateway
//! beyond routing, until Gateway API has an equivalent.
//!
//! Each field's doc comment is its description in the CRD (`kubectl explain trafficpolicy.spec`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// Outlier detection, connection limits and fault injection for the Services or waypoint
/// Gateways named in `targetRefs`. Applied by the waypoint (`ambit-waypoint`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ambit.dev",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    plural = "trafficpolicies",
    category = "ambit",
    doc = "Outlier detection, connection limits and fault injection for Services or waypoints, applied by Ambit's waypoint (ambit.dev).",
    namespaced,
    status = "TrafficPolicyStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicySpec {
    /// The Services or Gateways (waypoints) in this namespace that this policy applies to.
    /// A policy on a Gateway applies to every Service that uses that waypoint.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<TargetRef>,
    /// Eject endpoints that keep failing from load balancing for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Limits on connections and requests to each endpoint of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Delay or fail a share of requests on purpose, to test how clients cope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjection>,
}

/// A Service or a Gateway in the policy's namespace (Gateway API's LocalPolicyTargetReference).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// API group of the target: "" (the core group) for a Service,
    /// "gateway.networking.k8s.io" for a Gateway.
    #[schemars(length(max = 253))]
    pub group: String,
    /// Kind of the target.
    pub kind: TargetKind,
    /// Name of the target, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What a policy can target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetKind {
    /// A Service: the policy applies to traffic to it through its waypoint.
    Service,
    /// A waypoint Gateway (gatewayClassName ambit-waypoint): the policy applies to every
    /// Service that uses it.
    Gateway,
}

impl TargetKind {
    /// The API group a reference to this kind must name.
    pub fn group(self) -> &'static str {
        match self {
            TargetKind::Service => "",
            TargetKind::Gateway => "gateway.networking.k8s.io",
        }
    }
}

/// Passive health checking: an endpoint that fails `consecutiveFailures` times in a row is
/// ejected for `baseEjectionTime` times the number of times it was ejected.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Failures in a row that eject an endpoint: a 5xx response or a failed connect
    /// (refused, reset, timed out). Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consecutive_failures: Option<u32>,
    /// How often ejections are reviewed, e.g. "10s". Default "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long an endpoint stays ejected the first time, e.g. "30s"; each further ejection
    /// multiplies it. Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Most endpoints of the target that may be ejected at once, in percent. Default 10;
    /// at least one endpoint always stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub max_ejection_percent: Option<u32>,
}

/// Limits per endpoint; past them, requests wait (up to `maxPendingRequests`) or fail with 503.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// Most open connections to one endpoint. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
    /// Most requests waiting for a connection to one endpoint. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_pending_requests: Option<u32>,
    /// Requests sent on one connection before it is closed (0 or unset: no limit). Accepted
    /// but not enforced yet: the waypoint logs a warning for a Service that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// Faults applied to requests before they are routed; delay comes before abort.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjection {
    /// Hold a share of requests for a fixed time before forwarding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer a share of requests with an HTTP status instead of forwarding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// A delay fault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Share of requests delayed, in percent (0–100).
    #[schemars(range(max = 100))]
    pub percentage: u32,
    /// How long each of them is held, e.g. "200ms".
    pub fixed_delay: Duration,
}

/// An abort fault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// Share of requests aborted, in percent (0–100).
    #[schemars(range(max = 100))]
    pub percentage: u32,
    /// The status they get, e.g. 503.
    #[schemars(range(min = 200, max = 599))]
    pub http_status: u16,
    /// The gRPC status gRPC requests get instead, e.g. 14 (`UNAVAILABLE`), in a trailers-only
    /// answer. Unset: gRPC's own mapping of `httpStatus` (503 becomes 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 16))]
    pub grpc_status: Option<u16>,
}

/// What the waypoint made of the policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    /// Standard conditions: `Accepted` (in force for at least one target; otherwise reason
    /// `Invalid`, `TargetNotFound` or `Conflicted`, with the reason per target in the message)
    /// and `Programmed` (the waypoint applies it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Why a policy's `targetRefs` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefError {
    #[error("targetRefs[{index}]: kind {kind:?} is in group {expected:?}, not {got:?}")]
    WrongGroup {
        index: usize,
        kind: TargetKind,
        expected: &'static str,
        got: String,
    },
}

impl TrafficPolicySpec {
    /// Checks what the schema cannot: that each target's group matches its kind.
    pub fn check_target_refs(&self) -> Result<(), TargetRefError> {
        for (index, target) in self.target_refs.iter().enumerate() {
            if target.group != target.kind.group() {
                return Err(TargetRefError::WrongGroup {
                    index,
                    kind: target.kind,
                    expected: target.kind.group(),
                    got: target.group.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as Std;

    use super::*;

    const FULL: &str = r#"
targetRefs:
  - {group: "", kind: Service, name: reviews}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
outlierDetection:
  consecutiveFailures: 5
  interval: 10s
  baseEjectionTime: 30s
  maxEjectionPercent: 50
connectionPool: {maxConnections: 100, maxPendingRequests: 10, maxRequestsPerConnection: 0}
faultInjection:
  delay: {percentage: 10, fixedDelay: 200ms}
  abort: {percentage: 1, httpStatus: 503}
"#;

    #[test]
    fn a_full_policy_reads_as_written() {
        let spec: TrafficPolicySpec = serde_yaml::from_str(FULL).expect("valid spec");
        assert_eq!(spec.target_refs[1].kind, TargetKind::Gateway);
        let outlier = spec.outlier_detection.as_ref().expect("set");
        assert_eq!(
            outlier.interval.as_ref().map(Duration::get),
            Some(Std::from_secs(10))
        );
        let fault = spec.fault_injection.as_ref().expect("set");
        assert_eq!(
            fault.delay.as_ref().map(|d| d.fixed_delay.get()),
            Some(Std::from_millis(200))
        );
        assert_eq!(fault.abort.as_ref().map(|a| a.http_status), Some(503));
        spec.check_target_refs().expect("groups match kinds");
    }

    #[test]
    fn a_misspelt_field_is_rejected_not_ignored() {
        let text = FULL.replace("consecutiveFailures", "consecutiveErrors");
        let e = serde_yaml::from_str::<TrafficPolicySpec>(&text).expect_err("unknown field");
        assert!(e.to_string().contains("consecutiveErrors"), "{e}");
    }

    #[test]
    fn a_bad_duration_names_the_value() {
        let text = FULL.replace("fixedDelay: 200ms", "fixedDelay: 0.2s");
        let e = serde_yaml::from_str::<TrafficPolicySpec>(&text).expect_err("bad duration");
        assert!(e.to_string().contains("\"0.2s\""), "{e}");
    }

    #[test]
    fn a_service_in_the_gateway_group_is_refused() {
        let text = FULL.replace(
            r#"{group: "", kind: Service"#,
            "{group: gateway.networking.k8s.io, kind: Service",
        );
        let spec: TrafficPolicySpec = serde_yaml::from_str(&text).expect("schema-valid");
        let e = spec
            .check_target_refs()
            .expect_err("group does not match kind");
        assert_eq!(
            e.to_string(),
            r#"targetRefs[0]: kind Service is in group "", not "gateway.networking.k8s.io""#
        );
    }
}
