//! The first step: find the HTTPRoute rule for a request and apply its rule-level filters.
//!
//! Also the last word on every request: failures from below become responses here
//! ([`ProxyError::status`]), and each answer is counted once, under its rule.

use std::sync::{Arc, RwLock};

use http::{Request, Response, StatusCode};
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
            metrics.observe(label, response.status(), start.elapsed());
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
    let Some(destination) = request.extensions().get::<Destination>().cloned() else {
        return (None, status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    let lookup = snapshot.table.lookup(
        &destination,
        request.method(),
        request.uri(),
        request.headers(),
    );
    let routed = match lookup {
        Lookup::Matched(routed) => routed,
        Lookup::NotFound => return (None, status(StatusCode::NOT_FOUND)),
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
        Err(e) => error_response(&e),
    };
    if let Some(modifier) = &filters.response_headers {
        modifier.apply(response.headers_mut());
    }
    (Some(rule), response)
}

fn error_response(error: &ProxyError) -> Response<Body> {
    tracing::debug!(error = %error, "request failed in the waypoint");
    status(error.status())
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = code;
    response
}
