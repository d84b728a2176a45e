//! The first step: find the HTTPRoute rule for a request and apply its rule-level filters.
//!
//! Also the last word on every request: failures from below become responses here
//! ([`ProxyError::status`]), and each answer is counted once, under its rule.
//!
//! A gRPC client reads its outcome from `grpc-status`, not from the HTTP status, so the
//! waypoint's own answers to gRPC requests (no route, timeouts, no endpoint) are gRPC
//! "trailers-only" responses: HTTP 200 with `grpc-status` and `grpc-message`, the HTTP status
//! mapped as gRPC's HTTP-to-gRPC table says (a timeout is `DEADLINE_EXCEEDED`, an injected
//! abort the `grpcStatus` its policy names). Metrics still count the HTTP status the waypoint
//! meant.

use std::sync::{Arc, RwLock};

use http::{HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::Layer;

use crate::body::{self, Body};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::model::Destination;
use crate::routes::{Lookup, Routed, Rule};
use crate::stack::{call, step, HttpService, Snapshot};

pub fn layer(
    store: Arc<RwLock<Arc<Snapshot>>>,
    metrics: Arc<Metrics>,
    mirrors: Mirrors,
    backend: HttpService,
) -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(move |request, next| {
        let snapshot = store.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (metrics, mirrors, backend) = (metrics.clone(), mirrors.clone(), backend.clone());
        Box::pin(async move {
            let start = Instant::now();
            let (rule, response) = route(request, next, snapshot, &mirrors, &backend).await;
            let label = rule.as_deref().map_or(NO_RULE, |rule| rule.label.as_str());
            let counted = response
                .extensions()
                .get::<LocalReply>()
                .map_or(response.status(), |reply| reply.0);
            metrics.observe(label, counted, start.elapsed());
            Ok(response)
        })
    })
}

/// The metrics label of requests no rule took (no destination, no match).
const NO_RULE: &str = "none";

/// Routes one request; returns the rule that took it (for its metrics label) and the answer.
async fn route(
    mut request: Request<Body>,
    next: HttpService,
    snapshot: Arc<Snapshot>,
    mirrors: &Mirrors,
    backend: &HttpService,
) -> (Option<Arc<Rule>>, Response<Body>) {
    let grpc = is_grpc(request.headers());
    let Some(destination) = request.extensions().get::<Destination>().cloned() else {
        return (
            None,
            local_reply(StatusCode::INTERNAL_SERVER_ERROR, grpc, None),
        );
    };
    let lookup = snapshot.table.lookup(
        &destination,
        request.method(),
        request.uri(),
        request.headers(),
    );
    let routed = match lookup {
        Lookup::Matched(routed) => routed,
        Lookup::NotFound => {
            let reply = local_reply(StatusCode::NOT_FOUND, grpc, Some("no route matches"));
            return (None, reply);
        }
        Lookup::NoRoutes => Routed {
            rule: snapshot.passthrough.clone(),
            prefix: None,
            destination,
        },
    };
    let rule = routed.rule.clone();
    let filters = &rule.filters;
    let prefix = routed.prefix.as_deref();
    if let Some(redirect) = &filters.redirect {
        return (Some(rule.clone()), redirect.response(&request, prefix));
    }
    if let Some(modifier) = &filters.request_headers {
        modifier.apply(request.headers_mut());
    }
    if let Some(rewrite) = &filters.rewrite {
        rewrite.apply(&mut request, prefix);
    }
    if !filters.mirrors.is_empty() {
        mirrors.send(&filters.mirrors, &mut request, &snapshot, backend);
    }
    request.extensions_mut().insert(snapshot);
    request.extensions_mut().insert(routed);
    let mut response = match call(next, request).await {
        Ok(response) => response,
        Err(e) => error_response(&e, grpc),
    };
    if let Some(modifier) = &filters.response_headers {
        modifier.apply(response.headers_mut());
    }
    (Some(rule), response)
}

fn error_response(error: &ProxyError, grpc: bool) -> Response<Body> {
    tracing::debug!(error = %error, "request failed in the waypoint");
    let code = error.status();
    let mut response = local_reply(code, grpc, Some(&error.to_string()));
    let grpc_status = match error {
        ProxyError::RequestTimeout(_) | ProxyError::BackendTimeout(_) => {
            Some(grpc_code::DEADLINE_EXCEEDED)
        }
        ProxyError::FaultAbort { grpc_status, .. } => *grpc_status,
        _ => None,
    };
    if let Some(status) = grpc_status.filter(|_| grpc) {
        response
            .headers_mut()
            .insert(GRPC_STATUS, HeaderValue::from(status));
    }
    response
}

/// The HTTP status the waypoint meant, on a response it wrote itself (for metrics).
#[derive(Debug, Clone, Copy)]
struct LocalReply(StatusCode);

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";

/// gRPC status codes the waypoint's own answers use.
mod grpc_code {
    pub const INTERNAL: u16 = 13;
    pub const UNAUTHENTICATED: u16 = 16;
    pub const PERMISSION_DENIED: u16 = 7;
    pub const UNIMPLEMENTED: u16 = 12;
    pub const UNAVAILABLE: u16 = 14;
    pub const UNKNOWN: u16 = 2;
    pub const DEADLINE_EXCEEDED: u16 = 4;
}

/// gRPC's mapping of an HTTP status it did not get from a gRPC server.
fn grpc_code_for(code: StatusCode) -> u16 {
    match code.as_u16() {
        400 => grpc_code::INTERNAL,
        401 => grpc_code::UNAUTHENTICATED,
        403 => grpc_code::PERMISSION_DENIED,
        404 => grpc_code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => grpc_code::UNAVAILABLE,
        _ => grpc_code::UNKNOWN,
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// An answer the waypoint writes itself: `code`, or for a gRPC request a trailers-only
/// response carrying its gRPC equivalent.
fn local_reply(code: StatusCode, grpc: bool, message: Option<&str>) -> Response<Body> {
    let mut response = Response::new(body::empty());
    response.extensions_mut().insert(LocalReply(code));
    if !grpc {
        *response.status_mut() = code;
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, HeaderValue::from(grpc_code_for(code)));
    let message = message.unwrap_or_else(|| code.canonical_reason().unwrap_or("error"));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, value);
    }
    response
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn grpc_requests_get_trailers_only_answers_with_the_mapped_code() {
        let reply = local_reply(StatusCode::NOT_FOUND, true, Some("no route matches"));
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.headers()["content-type"], "application/grpc");
        assert_eq!(reply.headers()[GRPC_STATUS], "12");
        assert_eq!(reply.headers()[GRPC_MESSAGE], "no route matches");
        assert_eq!(
            reply.extensions().get::<LocalReply>().map(|r| r.0),
            Some(StatusCode::NOT_FOUND)
        );
        let plain = local_reply(StatusCode::NOT_FOUND, false, Some("no route matches"));
        assert_eq!(plain.status(), StatusCode::NOT_FOUND);
        assert!(plain.headers().get(GRPC_STATUS).is_none());
    }

    #[test]
    fn http_statuses_map_as_grpc_specifies() {
        let cases = [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (503, 14),
            (504, 14),
            (500, 2),
        ];
        for (http, grpc) in cases {
            let code = StatusCode::from_u16(http).expect("status");
            assert_eq!(grpc_code_for(code), grpc, "HTTP {http}");
        }
    }

    #[test]
    fn injected_aborts_answer_grpc_with_the_policy_code_or_the_mapped_one() {
        let abort = |grpc_status| ProxyError::FaultAbort {
            status: StatusCode::SERVICE_UNAVAILABLE,
            grpc_status,
        };
        let named = error_response(&abort(Some(8)), true);
        assert_eq!(named.status(), StatusCode::OK);
        assert_eq!(named.headers()[GRPC_STATUS], "8");
        let mapped = error_response(&abort(None), true);
        assert_eq!(mapped.headers()[GRPC_STATUS], "14");
        let plain = error_response(&abort(Some(8)), false);
        assert_eq!(plain.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(plain.headers().get(GRPC_STATUS).is_none());
        assert_eq!(
            named.extensions().get::<LocalReply>().map(|r| r.0),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "metrics count the HTTP status the policy names"
        );
        let timeout = error_response(&ProxyError::RequestTimeout(Duration::from_millis(5)), true);
        assert_eq!(timeout.headers()[GRPC_STATUS], "4");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("50% of ü"), "50%25 of %C3%BC");
    }
}
