//! Per-Service traffic policy: outlier detection, connection pool limits, fault injection.
//!
//! The engine's own form of Ambit's `TrafficPolicy` (`ambit_mesh::api`): defaults filled in
//! and durations parsed ([`TrafficPolicySpec::from_crd`]). The route file (`--routes`) writes
//! it directly, with the CRD's field names (camelCase) and Gateway API durations (`"10s"`,
//! `"250ms"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The traffic policy attached to one Service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjection>,
}

/// Eject an endpoint after `consecutive_failures` 5xx answers or connect failures in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    pub consecutive_failures: u32,
    /// An endpoint that stays admitted this long has its ejection count reset.
    #[serde(with = "gateway_duration")]
    pub interval: Duration,
    /// The n-th ejection in a row lasts n × this.
    #[serde(with = "gateway_duration")]
    pub base_ejection_time: Duration,
    /// At most this share of a port's endpoints is ejected at once (at least one is allowed).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// Circuit breaking for a Service, counted over all its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// Requests in flight at once (with HTTP/1.1, one connection each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Requests that may wait for a free slot; the next one gets 503 at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Accepted but not enforced yet: the pooled HTTP client has no per-connection cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// Faults injected into requests addressed to the Service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultInjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// Share of requests delayed, 0–100.
    pub percentage: f64,
    #[serde(with = "gateway_duration")]
    pub fixed_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// Share of requests aborted, 0–100.
    pub percentage: f64,
    pub http_status: u16,
    /// What gRPC requests get instead; unset: gRPC's mapping of `http_status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
}

impl TrafficPolicySpec {
    /// The policy a `TrafficPolicy` object (ambit.dev) asks for; fields it leaves out take
    /// the defaults of [`OutlierDetection::default`].
    pub fn from_crd(spec: &ambit_mesh::api::TrafficPolicySpec) -> Self {
        let defaults = OutlierDetection::default();
        TrafficPolicySpec {
            outlier_detection: spec.outlier_detection.as_ref().map(|o| OutlierDetection {
                consecutive_failures: o
                    .consecutive_failures
                    .unwrap_or(defaults.consecutive_failures),
                interval: o.interval.as_ref().map_or(defaults.interval, |d| d.get()),
                base_ejection_time: o
                    .base_ejection_time
                    .as_ref()
                    .map_or(defaults.base_ejection_time, |d| d.get()),
                max_ejection_percent: o
                    .max_ejection_percent
                    .unwrap_or(defaults.max_ejection_percent),
            }),
            connection_pool: spec.connection_pool.as_ref().map(|c| ConnectionPool {
                max_connections: c.max_connections,
                max_pending_requests: c.max_pending_requests,
                max_requests_per_connection: c.max_requests_per_connection,
            }),
            fault_injection: spec.fault_injection.as_ref().map(|f| FaultInjection {
                delay: f.delay.as_ref().map(|d| FaultDelay {
                    percentage: f64::from(d.percentage),
                    fixed_delay: d.fixed_delay.get(),
                }),
                abort: f.abort.as_ref().map(|a| FaultAbort {
                    percentage: f64::from(a.percentage),
                    http_status: a.http_status,
                    grpc_status: a.grpc_status,
                }),
            }),
        }
    }
}

/// Parses a Gateway API (GEP-2257) duration such as `"1h30m"` or `"250ms"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = text
        .parse::<gateway_api::Duration>()
        .map_err(|e| e.to_string())?;
    Ok(Duration::from_nanos(
        u64::try_from(parsed.as_nanos()).map_err(|_| format!("duration {text} is too long"))?,
    ))
}

mod gateway_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reads_camel_case_fields_and_gateway_durations() {
        let yaml = r#"
outlierDetection: {consecutiveFailures: 3, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50}
connectionPool: {maxConnections: 10, maxPendingRequests: 2, maxRequestsPerConnection: 1}
faultInjection:
  delay: {percentage: 5, fixedDelay: 250ms}
  abort: {percentage: 1.5, httpStatus: 503}
"#;
        let spec: TrafficPolicySpec = serde_yaml::from_str(yaml).expect("valid policy");
        let outlier = spec.outlier_detection.expect("outlier");
        assert_eq!(outlier.consecutive_failures, 3);
        assert_eq!(outlier.base_ejection_time, Duration::from_secs(60));
        let pool = spec.connection_pool.expect("pool");
        assert_eq!(pool.max_pending_requests, Some(2));
        let fault = spec.fault_injection.expect("fault");
        assert_eq!(
            fault.delay.expect("delay").fixed_delay,
            Duration::from_millis(250)
        );
        assert_eq!(fault.abort.expect("abort").http_status, 503);
    }

    #[test]
    fn durations_outside_gep_2257_are_refused() {
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_duration("1h1s"), Ok(Duration::from_secs(3601)));
    }
}
