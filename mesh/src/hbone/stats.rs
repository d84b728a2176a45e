//! Counters of the HBONE server and client pool, read by the agent's metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the HBONE server accepted and refused since it started.
///
/// Each refusal also writes one log line naming the peer and the reason.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// TCP connections accepted on the HBONE port.
    pub connections_accepted: AtomicU64,
    /// Connections currently open (TLS established or in handshake).
    pub connections_active: AtomicU64,
    /// Connections whose first bytes were not a TLS handshake (plaintext on the mTLS port).
    pub plaintext_refused: AtomicU64,
    /// TLS handshakes that did not finish within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// Client certificates refused: missing, untrusted root, expired, other trust domain.
    pub client_certs_rejected: AtomicU64,
    /// Other failed TLS handshakes (bad records, no common parameters).
    pub handshakes_failed: AtomicU64,
    /// HTTP/2 connections ended by a protocol or I/O error (garbage HTTP/2 included).
    pub http2_errors: AtomicU64,
    /// CONNECT streams answered 200 and relayed.
    pub streams_accepted: AtomicU64,
    /// Streams answered 400: not CONNECT, bad authority, or a target not on this node.
    pub streams_bad_request: AtomicU64,
    /// Streams answered 401: denied by policy.
    pub streams_denied: AtomicU64,
    /// Streams answered 503: the destination refused or could not be reached.
    pub streams_unreachable: AtomicU64,
    /// Bytes relayed from callers to destinations.
    pub bytes_from_callers: AtomicU64,
    /// Bytes relayed from destinations back to callers.
    pub bytes_to_callers: AtomicU64,
}

/// What the client pool did since it was created.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// HTTP/2 connections (TLS handshakes) opened.
    pub connections_opened: AtomicU64,
    /// Pooled connections closed: idle timeout, keepalive failure, or the peer going away.
    pub connections_closed: AtomicU64,
    /// Connections that could not be opened (connect, TLS or HTTP/2 handshake failed).
    pub connect_failures: AtomicU64,
    /// CONNECT streams that got their 200.
    pub streams_opened: AtomicU64,
    /// CONNECT streams answered with another status, or that failed to be sent.
    pub streams_failed: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(super) fn drop_one(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}
