//! A Service port's endpoints: picking one, and ejecting those that keep failing.
//!
//! Picking is power-of-two-choices on requests in flight among admitted endpoints.
//! # Invariants
//! - `consecutiveFailures` 5xx answers or connect failures in a row eject an endpoint for
//!   n × `baseEjectionTime` (n-th ejection; n resets after `interval` without one).
//! - an ejected endpoint is readmitted once its time is up, on the next pick; it is not probed.
//! - at most `maxEjectionPercent` of the endpoints are ejected at once, but at least one may be.
//! - if every endpoint is ejected, all are used (better a likely failure than a certain one).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::model::PortProtocol;
use crate::policy::OutlierDetection;

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

pub struct EndpointState {
    pub addr: SocketAddr,
    in_flight: AtomicUsize,
    health: Mutex<Health>,
}

pub struct EndpointSet {
    endpoints: Vec<Arc<EndpointState>>,
    policy: Option<OutlierDetection>,
    pub protocol: PortProtocol,
}

/// Counts a request in flight on an endpoint until dropped.
pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EndpointSet {
    pub fn new(
        addrs: &[SocketAddr],
        policy: Option<OutlierDetection>,
        protocol: PortProtocol,
    ) -> Self {
        EndpointSet {
            endpoints: addrs
                .iter()
                .map(|&addr| {
                    Arc::new(EndpointState {
                        addr,
                        in_flight: AtomicUsize::new(0),
                        health: Mutex::new(Health::default()),
                    })
                })
                .collect(),
            policy,
            protocol,
        }
    }

    /// Picks an endpoint and counts the request on it; `None` if the port has no endpoints.
    pub fn pick(&self) -> Option<(usize, InFlight)> {
        let now = Instant::now();
        let admitted: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| !self.is_ejected(i, now))
            .collect();
        let pool: Vec<usize> = if admitted.is_empty() {
            (0..self.endpoints.len()).collect()
        } else {
            admitted
        };
        let index = match pool.len() {
            0 => return None,
            1 => pool[0],
            n => {
                let a = pool[fastrand::usize(0..n)];
                let b = pool[fastrand::usize(0..n)];
                let load = |i: usize| self.endpoints[i].in_flight.load(Ordering::Relaxed);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        let state = self.endpoints[index].clone();
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Some((index, InFlight(state)))
    }

    pub fn addr(&self, index: usize) -> SocketAddr {
        self.endpoints[index].addr
    }

    pub fn is_ejected(&self, index: usize, now: Instant) -> bool {
        let health = self.endpoints[index]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        health.ejected_until.is_some_and(|until| until > now)
    }

    /// Records the outcome of a request to endpoint `index`.
    pub fn report(&self, index: usize, failed: bool) {
        let Some(policy) = &self.policy else { return };
        let now = Instant::now();
        let ejected_now = (0..self.endpoints.len())
            .filter(|&i| i != index && self.is_ejected(i, now))
            .count();
        let mut health = self.endpoints[index]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !failed {
            health.consecutive_failures = 0;
            return;
        }
        health.consecutive_failures += 1;
        let already = health.ejected_until.is_some_and(|until| until > now);
        if already || health.consecutive_failures < policy.consecutive_failures.max(1) {
            return;
        }
        let max = (self.endpoints.len() * policy.max_ejection_percent as usize / 100).max(1);
        if policy.max_ejection_percent == 0 || ejected_now >= max {
            return;
        }
        // The ejection count decays once an endpoint stayed admitted for `interval`.
        if health
            .ejected_until
            .is_some_and(|until| now.duration_since(until) >= policy.interval)
        {
            health.ejections = 0;
        }
        health.ejections += 1;
        health.consecutive_failures = 0;
        health.ejected_until = Some(now + policy.base_ejection_time * health.ejections);
        tracing::info!(endpoint = %self.endpoints[index].addr, ejections = health.ejections, "outlier detection ejected an endpoint");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn set(n: u16, percent: u32) -> EndpointSet {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i)))
            .collect();
        let policy = OutlierDetection {
            consecutive_failures: 2,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: percent,
        };
        EndpointSet::new(&addrs, Some(policy), PortProtocol::Http)
    }

    #[tokio::test(start_paused = true)]
    async fn second_ejection_in_a_row_lasts_twice_as_long() {
        let endpoints = set(2, 50);
        endpoints.report(0, true);
        endpoints.report(0, true);
        assert!(endpoints.is_ejected(0, Instant::now()));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            !endpoints.is_ejected(0, Instant::now()),
            "readmitted after baseEjectionTime"
        );
        endpoints.report(0, true);
        endpoints.report(0, true);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            endpoints.is_ejected(0, Instant::now()),
            "second ejection lasts 60 s"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!endpoints.is_ejected(0, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_keeps_endpoints_admitted() {
        let endpoints = set(2, 50);
        for i in 0..2 {
            endpoints.report(i, true);
            endpoints.report(i, true);
        }
        let now = Instant::now();
        assert!(endpoints.is_ejected(0, now));
        assert!(!endpoints.is_ejected(1, now), "50 % of 2 endpoints is one");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_streak() {
        let endpoints = set(2, 50);
        endpoints.report(0, true);
        endpoints.report(0, false);
        endpoints.report(0, true);
        assert!(!endpoints.is_ejected(0, Instant::now()));
    }
}
