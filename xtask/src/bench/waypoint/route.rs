//! The route under test, written once and rendered for both proxies: an `ambit-waypoint local`
//! config (Services and a Gateway API HTTPRoute) and an Envoy bootstrap that does the same.
//!
//! Two rules: `x-user: tester` goes to v2, every other request to v1. Both rules carry the
//! same request timeout and retry policy. Envoy is given the nearest equivalents of the
//! waypoint's semantics (`retry.attempts` counts retries, like Envoy's `num_retries`; the
//! waypoint's doubling backoff capped at 10× is Envoy's `base_interval`/`max_interval`; its
//! 20 % retry budget is Envoy's `retry_budget`), speaks to the backend in the caller's HTTP
//! version like the waypoint without an `appProtocol`, and has no access log or request id.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

/// The Service every accepted connection is addressed to, as the waypoint names it.
pub const NAMESPACE: &str = "bench";
pub const SERVICE: &str = "web";
pub const SERVICE_PORT: u16 = 80;
/// The header and value rule 1 matches.
pub const MATCH_HEADER: (&str, &str) = ("x-user", "tester");
/// Statuses that are retried.
pub const RETRY_CODES: [u16; 4] = [500, 502, 503, 504];
/// Retries after the first try.
pub const RETRY_ATTEMPTS: u32 = 2;
pub const RETRY_BACKOFF: Duration = Duration::from_millis(25);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The waypoint's retry budget: this share of requests may be retries.
const RETRY_BUDGET_PERCENT: f64 = 20.0;
/// The waypoint caps its backoff at this multiple of the first.
const BACKOFF_CAP: u32 = 10;

/// Where the two backends listen.
#[derive(Clone, Copy, Debug)]
pub struct Backends {
    pub v1: SocketAddr,
    pub v2: SocketAddr,
}

/// One backend's Service name (`web-v1`, `web-v2`).
pub fn backend_name(version: &str) -> String {
    format!("{SERVICE}-{version}")
}

/// `ambit-waypoint local --config` for `--service bench/web --port 80`.
pub fn waypoint_config(backends: &Backends) -> Value {
    let service = |version: &str, addr: SocketAddr| {
        json!({
            "namespace": NAMESPACE,
            "name": backend_name(version),
            "ports": [{"port": SERVICE_PORT, "endpoints": [addr.to_string()]}],
        })
    };
    let backend_ref =
        |version: &str| json!([{"name": backend_name(version), "port": SERVICE_PORT}]);
    let policy = |mut rule: Value| {
        rule["timeouts"] = json!({"request": go_duration(REQUEST_TIMEOUT)});
        rule["retry"] = json!({
            "attempts": RETRY_ATTEMPTS,
            "codes": RETRY_CODES,
            "backoff": go_duration(RETRY_BACKOFF),
        });
        rule
    };
    json!({
        "services": [
            {"namespace": NAMESPACE, "name": SERVICE, "ports": [{"port": SERVICE_PORT}]},
            service("v1", backends.v1),
            service("v2", backends.v2),
        ],
        "httpRoutes": [{
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": SERVICE, "port": SERVICE_PORT}],
                "rules": [
                    policy(json!({
                        "matches": [{"headers": [{"name": MATCH_HEADER.0, "value": MATCH_HEADER.1}]}],
                        "backendRefs": backend_ref("v2"),
                    })),
                    policy(json!({"backendRefs": backend_ref("v1")})),
                ],
            },
        }],
    })
}

/// An Envoy bootstrap: one listener on `listen` with the same two rules, an admin listener on
/// `admin`, and one cluster per backend.
pub fn envoy_config(listen: SocketAddr, admin: SocketAddr, backends: &Backends) -> Value {
    let route = |cluster: String, matches: Value| {
        json!({
            "match": matches,
            "route": {
                "cluster": cluster,
                "timeout": proto_duration(REQUEST_TIMEOUT),
                "retry_policy": {
                    "retry_on": "connect-failure,refused-stream,reset,retriable-status-codes",
                    "retriable_status_codes": RETRY_CODES,
                    "num_retries": RETRY_ATTEMPTS,
                    "retry_back_off": {
                        "base_interval": proto_duration(RETRY_BACKOFF),
                        "max_interval": proto_duration(RETRY_BACKOFF * BACKOFF_CAP),
                    },
                },
            },
        })
    };
    let cluster = |version: &str, addr: SocketAddr| {
        let name = backend_name(version);
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(addr)}}]}],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "use_downstream_protocol_config": {
                        "http_protocol_options": {},
                        "http2_protocol_options": {},
                    },
                },
            },
            "circuit_breakers": {"thresholds": [{
                "retry_budget": {"budget_percent": {"value": RETRY_BUDGET_PERCENT}},
            }]},
        })
    };
    json!({
        "admin": {"address": socket_address(admin)},
        "static_resources": {
            "listeners": [{
                "name": SERVICE,
                "address": socket_address(listen),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": SERVICE,
                        "codec_type": "AUTO",
                        "generate_request_id": false,
                        "route_config": {
                            "name": SERVICE,
                            "virtual_hosts": [{
                                "name": SERVICE,
                                "domains": ["*"],
                                "routes": [
                                    route(backend_name("v2"), json!({
                                        "prefix": "/",
                                        "headers": [{
                                            "name": MATCH_HEADER.0,
                                            "string_match": {"exact": MATCH_HEADER.1},
                                        }],
                                    })),
                                    route(backend_name("v1"), json!({"prefix": "/"})),
                                ],
                            }],
                        },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                            },
                        }],
                    },
                }]}],
            }],
            "clusters": [cluster("v1", backends.v1), cluster("v2", backends.v2)],
        },
    })
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// Gateway API's duration: `2s`, `25ms`.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// protobuf JSON's `google.protobuf.Duration`: seconds with a fraction, `0.025s`.
fn proto_duration(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
