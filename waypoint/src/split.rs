//! Weighted choice among an HTTPRoute rule's backendRefs.
//!
//! Sits inside the retry layer, so each try picks again: a retry can leave a failing canary.
//! # Invariants
//! - weight 0 is never picked (such backendRefs are dropped when compiling).
//! - a rule without backendRefs sends to the Service the request was addressed to.

use tower::Layer;

use crate::routes::{BackendRef, Routed, WeightedBackend};
use crate::stack::{call, step, HttpService};

pub fn layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|mut request, next| {
        Box::pin(async move {
            let Some(routed) = request.extensions().get::<Routed>().cloned() else {
                return call(next, request).await;
            };
            let backend = pick(&routed.rule.backends)
                .cloned()
                .unwrap_or_else(|| BackendRef {
                    service: routed.destination.service.clone(),
                    port: routed.destination.port,
                    request_headers: None,
                    response_headers: None,
                });
            if let Some(modifier) = &backend.request_headers {
                modifier.apply(request.headers_mut());
            }
            let response_headers = backend.response_headers.clone();
            request.extensions_mut().insert(backend);
            let mut response = call(next, request).await?;
            if let Some(modifier) = response_headers {
                modifier.apply(response.headers_mut());
            }
            Ok(response)
        })
    })
}

/// Picks a backend with probability weight / total; `None` only for an empty list.
pub fn pick(backends: &[WeightedBackend]) -> Option<&BackendRef> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = fastrand::u64(0..total);
    for b in backends {
        let w = u64::from(b.weight);
        if point < w {
            return Some(&b.backend);
        }
        point -= w;
    }
    None
}
