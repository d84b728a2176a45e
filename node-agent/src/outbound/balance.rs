//! Load balancing over a service's endpoints: power of two choices on open connections.
//!
//! Two endpoints are drawn at random and the one with fewer connections open through this
//! agent wins. It needs no global view, and avoids the herding of "least connections" when
//! many agents see the same counts.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::plan::ChooseEndpoint;

/// Open connections per endpoint, counted by the proxy.
#[derive(Default)]
pub struct OpenConnections {
    counts: Mutex<HashMap<SocketAddr, u64>>,
    draws: AtomicU64,
    seed: RandomState,
}

/// Counts one connection to an endpoint while it lives.
pub struct Opened {
    table: Arc<OpenConnections>,
    endpoint: SocketAddr,
}

impl OpenConnections {
    pub fn opened(self: &Arc<Self>, endpoint: SocketAddr) -> Opened {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(endpoint).or_default() += 1;
        }
        Opened {
            table: Arc::clone(self),
            endpoint,
        }
    }

    pub fn open(&self, endpoint: &SocketAddr) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(endpoint).copied())
            .unwrap_or(0)
    }

    /// A uniformly distributed index below `n` (n > 0).
    fn draw(&self, n: usize) -> usize {
        let mut h = self.seed.build_hasher();
        h.write_u64(self.draws.fetch_add(1, Relaxed));
        (h.finish() % n as u64) as usize
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.table.counts.lock() {
            if let Some(n) = counts.get_mut(&self.endpoint) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.endpoint);
                }
            }
        }
    }
}

impl ChooseEndpoint for OpenConnections {
    fn choose(&self, candidates: &[SocketAddr]) -> usize {
        match candidates.len() {
            0 | 1 => 0,
            n => {
                let a = self.draw(n);
                // A second, different candidate.
                let b = (a + 1 + self.draw(n - 1)) % n;
                if self.open(&candidates[b]) < self.open(&candidates[a]) {
                    b
                } else {
                    a
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn the_less_loaded_of_two_endpoints_wins() {
        let table = Arc::new(OpenConnections::default());
        let eps = addrs(2);
        let _busy: Vec<Opened> = (0..5).map(|_| table.opened(eps[0])).collect();
        for _ in 0..20 {
            assert_eq!(table.choose(&eps), 1);
        }
    }

    #[test]
    fn counts_fall_when_connections_close() {
        let table = Arc::new(OpenConnections::default());
        let ep = addrs(1)[0];
        let first = table.opened(ep);
        let second = table.opened(ep);
        assert_eq!(table.open(&ep), 2);
        drop(first);
        drop(second);
        assert_eq!(table.open(&ep), 0);
    }

    #[test]
    fn idle_endpoints_share_new_connections() {
        let table = Arc::new(OpenConnections::default());
        let eps = addrs(3);
        let mut picks = [0u32; 3];
        let mut held = Vec::new();
        for _ in 0..300 {
            let i = table.choose(&eps);
            picks[i] += 1;
            held.push(table.opened(eps[i]));
        }
        // With every connection kept open, P2C keeps the endpoints within a few of each other.
        let (min, max) = (picks.iter().min().unwrap(), picks.iter().max().unwrap());
        assert!(max - min <= 5, "{picks:?}");
    }
}
