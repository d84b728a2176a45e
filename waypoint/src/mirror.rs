//! RequestMirror: a copy of the request goes to a shadow backend, off the request's path.
//!
//! # Invariants
//! - the mirror runs on its own task; its answer is drained and dropped.
//! - at most `max_in_flight` mirrors run at once; beyond that a mirror is skipped and counted.
//! - the main body is teed into a bounded channel and never waits for the mirror: if the
//!   mirror falls behind, its copy is cut off (its request fails) and the main one goes on.
//! - the mirror's Host gets a `-shadow` suffix, as in Envoy and Istio.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::Request;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, Semaphore};

use crate::body::{self, Body, BoxError};
use crate::metrics::Metrics;
use crate::routes::filters::{request_host, Mirror};
use crate::stack::{call, HttpService, Snapshot};

/// Frames a mirror may lag behind the main request before it is cut off.
const MIRROR_FRAMES: usize = 16;
/// A mirror that has not answered by then is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Mirrors {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Mirrors {
    pub fn new(max_in_flight: usize, metrics: Arc<Metrics>) -> Self {
        Mirrors {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            metrics,
        }
    }

    /// Starts the sampled `mirrors` of `request`, teeing its body if it has one.
    pub fn send(
        &self,
        mirrors: &[Mirror],
        request: &mut Request<Body>,
        snapshot: &Arc<Snapshot>,
        backend: &HttpService,
    ) {
        let mut copies = Vec::new();
        for mirror in mirrors.iter().filter(|m| m.sampled()) {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.metrics.mirror_dropped();
                continue;
            };
            let body = if request.body().is_end_stream() {
                body::empty()
            } else {
                let (tx, rx) = mpsc::channel(MIRROR_FRAMES);
                let done = Arc::new(AtomicBool::new(false));
                copies.push(Copy {
                    tx,
                    done: done.clone(),
                });
                body::boxed(Channel { rx, done })
            };
            let mut copy = Request::new(body);
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.version_mut() = request.version();
            *copy.headers_mut() = request.headers().clone();
            copy.headers_mut().remove(http::header::UPGRADE);
            if let Some(host) = request_host(request)
                .and_then(|h| HeaderValue::from_str(&format!("{h}-shadow")).ok())
            {
                copy.headers_mut().insert(HOST, host);
            }
            copy.extensions_mut().insert(snapshot.clone());
            copy.extensions_mut().insert(mirror.backend.clone());
            if let Some(caller) = request.extensions().get::<crate::model::Caller>() {
                copy.extensions_mut().insert(caller.clone());
            }
            let backend = backend.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(MIRROR_TIMEOUT, call(backend, copy)).await {
                    Ok(Ok(response)) => {
                        let _ = response.into_body().collect().await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "mirror failed"),
                    Err(_) => tracing::debug!("mirror timed out"),
                }
            });
        }
        if !copies.is_empty() {
            let inner = std::mem::replace(request.body_mut(), body::empty());
            *request.body_mut() = body::boxed(Tee { inner, copies });
        }
    }
}

struct Copy {
    tx: mpsc::Sender<Frame<Bytes>>,
    /// Set once the main body ended cleanly, so the mirror's body ends cleanly too.
    done: Arc<AtomicBool>,
}

/// The main body, handing a copy of each frame to the mirrors that keep up.
struct Tee {
    inner: Body,
    copies: Vec<Copy>,
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let clone = || {
                    frame
                        .data_ref()
                        .map(|d| Frame::data(d.clone()))
                        .or_else(|| frame.trailers_ref().map(|t| Frame::trailers(t.clone())))
                };
                // A full or closed channel drops that copy; `done` stays false, so it fails.
                self.copies
                    .retain(|c| clone().is_some_and(|f| c.tx.try_send(f).is_ok()));
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) => self.copies.clear(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Tee {
    fn finish(&mut self) {
        for copy in self.copies.drain(..) {
            copy.done.store(true, Ordering::Release);
        }
    }
}

/// A mirror's body, fed by a [`Tee`].
struct Channel {
    rx: mpsc::Receiver<Frame<Bytes>>,
    done: Arc<AtomicBool>,
}

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) if self.done.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(
                "mirror fell behind the request; copy cut off".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}
