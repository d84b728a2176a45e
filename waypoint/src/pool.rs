//! Circuit breaking from the backend Service's `connectionPool`.
//!
//! `maxConnections` bounds the requests in flight to the Service (with HTTP/1.1, one
//! connection each); a slot is held until the response body ends. Up to
//! `maxPendingRequests` more wait for a slot; beyond that a request gets 503 at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tower::Layer;

use crate::body;
use crate::error::ProxyError;
use crate::policy::ConnectionPool;
use crate::routes::BackendRef;
use crate::stack::{call, step, HttpService, Snapshot};

pub struct Limits {
    slots: Option<Arc<Semaphore>>,
    max_pending: Option<usize>,
    pending: AtomicUsize,
}

impl Limits {
    pub fn new(pool: &ConnectionPool) -> Self {
        Limits {
            slots: pool
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            max_pending: pool.max_pending_requests.map(|n| n as usize),
            pending: AtomicUsize::new(0),
        }
    }
}

pub fn layer() -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(|request, next| {
        let backend = request
            .extensions()
            .get::<BackendRef>()
            .map(|b| b.service.clone());
        let limits = backend.as_ref().and_then(|name| {
            let snapshot = request.extensions().get::<Arc<Snapshot>>()?;
            snapshot.backends.get(name)?.limits.clone()
        });
        Box::pin(async move {
            let (Some(limits), Some(service)) = (limits, backend) else {
                return call(next, request).await;
            };
            let Some(slots) = limits.slots.clone() else {
                return call(next, request).await;
            };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let waiting = limits.pending.fetch_add(1, Ordering::AcqRel);
                    if limits.max_pending.is_some_and(|max| waiting >= max) {
                        limits.pending.fetch_sub(1, Ordering::AcqRel);
                        return Err(ProxyError::Overflow { service });
                    }
                    let permit = slots.acquire_owned().await;
                    limits.pending.fetch_sub(1, Ordering::AcqRel);
                    permit.map_err(|_| ProxyError::Overflow { service })?
                }
            };
            let response = call(next, request).await?;
            Ok(response.map(|b| body::with_guard(b, permit)))
        })
    })
}
