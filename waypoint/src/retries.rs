//! Retries per the rule's `retry` (GEP-1731), bounded by a retry budget.
//!
//! Only replayable requests are retried: a body with a known length up to
//! [`MAX_REPLAY_BYTES`] is buffered once and replayed; larger, streaming (no length) and
//! upgrade requests get a single try.
//! # Invariants
//! - every original request deposits into the rule's [`RetryBudget`]; every retry withdraws,
//!   so in an outage retries add at most `ratio` of the load plus `min_per_second`.
//! - a retry waits at least `backoff`, doubling per retry (capped at 10 × backoff), plus
//!   up to 25 % jitter.
//! - budgets belong to compiled rules: a config swap starts every rule with a fresh one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::Layer;

use crate::body::{self, Body, BoxError};
use crate::metrics::Metrics;
use crate::routes::Routed;
use crate::stack::{call, step, HttpService};

/// Requests with larger bodies are not buffered, hence not retried.
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// A rule's compiled `retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (unset: 2, as Istio).
    pub attempts: u32,
    /// Response codes that are retried. Connect failures and backendRequest timeouts are
    /// always retried (unset: none besides those).
    pub codes: Vec<StatusCode>,
    /// Minimum wait before a retry (unset: 25 ms).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            codes: Vec::new(),
            backoff: Duration::from_millis(25),
        }
    }
}

/// How many retries a rule may add on top of its requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request in the window.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
    /// How far back requests and retries are counted (whole seconds).
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// Sliding-window counts of requests and retries, one bucket per second.
#[derive(Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    buckets: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl RetryBudget {
    pub fn new(config: RetryBudgetConfig) -> Self {
        RetryBudget {
            config,
            buckets: Mutex::new(VecDeque::new()),
        }
    }

    pub fn deposit(&self) {
        self.update(|b| b.1 += 1);
    }

    /// Takes one retry from the budget; false if the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        Self::expire(&mut buckets, self.config.window);
        let (requests, retries) = buckets
            .iter()
            .fold((0u64, 0u64), |(q, r), b| (q + b.1, r + b.2));
        let allowed = self.config.ratio * requests as f64
            + f64::from(self.config.min_per_second) * self.config.window.as_secs_f64();
        if (retries as f64) < allowed {
            Self::current(&mut buckets).2 += 1;
            true
        } else {
            false
        }
    }

    fn update(&self, f: impl FnOnce(&mut (Instant, u64, u64))) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        Self::expire(&mut buckets, self.config.window);
        f(Self::current(&mut buckets));
    }

    fn expire(buckets: &mut VecDeque<(Instant, u64, u64)>, window: Duration) {
        let now = Instant::now();
        while buckets
            .front()
            .is_some_and(|b| now.duration_since(b.0) >= window)
        {
            buckets.pop_front();
        }
    }

    fn current(buckets: &mut VecDeque<(Instant, u64, u64)>) -> &mut (Instant, u64, u64) {
        let now = Instant::now();
        if buckets
            .back()
            .is_none_or(|b| now.duration_since(b.0) >= Duration::from_secs(1))
        {
            buckets.push_back((now, 0, 0));
        }
        buckets.back_mut().expect("a bucket was just pushed")
    }
}

pub fn layer(metrics: Arc<Metrics>) -> impl Layer<HttpService, Service = HttpService> + Clone {
    step(move |request, next| {
        let metrics = metrics.clone();
        Box::pin(async move {
            let Some(routed) = request.extensions().get::<Routed>().cloned() else {
                return call(next, request).await;
            };
            let rule = routed.rule;
            rule.budget.deposit();
            let Some(policy) = rule.retry.clone() else {
                return call(next, request).await;
            };
            if !replayable(&request) {
                return call(next, request).await;
            }
            let (parts, body) = request.into_parts();
            let saved = match Saved::collect(body).await {
                Ok(saved) => saved,
                Err(e) => {
                    tracing::debug!(error = %e, "request body ended early");
                    return Ok(http::Response::builder()
                        .status(StatusCode::BAD_REQUEST)
                        .body(body::empty())
                        .unwrap_or_default());
                }
            };
            let mut backoff = policy.backoff;
            let mut retry = 0;
            loop {
                let attempt = Request::from_parts(parts.clone(), saved.replay());
                let outcome = call(next.clone(), attempt).await;
                let retryable = match &outcome {
                    Ok(response) => policy.codes.contains(&response.status()),
                    Err(e) => e.is_retryable(),
                };
                if !retryable || retry >= policy.attempts {
                    return outcome;
                }
                if !rule.budget.try_withdraw() {
                    metrics.retry_budget_exhausted(&rule.label);
                    return outcome;
                }
                retry += 1;
                metrics.retried(&rule.label);
                let jitter = backoff.mul_f64(fastrand::f64() * 0.25);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(policy.backoff * 10);
            }
        })
    })
}

/// A body of known length within the bound, on a request that is not an upgrade.
fn replayable(request: &Request<Body>) -> bool {
    let hint = request.body().size_hint();
    !request.headers().contains_key(http::header::UPGRADE)
        && (request.body().is_end_stream() || hint.exact().is_some_and(|n| n <= MAX_REPLAY_BYTES))
}

/// A buffered request body: its bytes and trailers.
struct Saved {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Saved {
    async fn collect(body: Body) -> Result<Self, BoxError> {
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(Saved {
            data: collected.to_bytes(),
            trailers,
        })
    }

    fn replay(&self) -> Body {
        match &self.trailers {
            None => body::full(self.data.clone()),
            Some(trailers) => body::boxed(Replay {
                data: Some(self.data.clone()),
                trailers: Some(trailers.clone()),
            }),
        }
    }
}

/// A buffered body with trailers, replayed frame by frame.
struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> RetryBudget {
        RetryBudget::new(RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 1,
            window: Duration::from_secs(10),
        })
    }

    fn withdrawals(budget: &RetryBudget) -> usize {
        std::iter::from_fn(|| budget.try_withdraw().then_some(()))
            .take(10_000)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_ratio_of_requests_plus_a_minimum() {
        let budget = budget();
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(withdrawals(&budget), 30, "20 % of 100 plus 1/s over 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refills_as_the_window_slides() {
        let budget = budget();
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(withdrawals(&budget), 30);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            withdrawals(&budget),
            10,
            "old requests and retries left the window"
        );
    }
}
