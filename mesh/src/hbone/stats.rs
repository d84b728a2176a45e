//! Counters of the HBONE server and client pool, and their Prometheus text: the node agent and
//! the waypoint export them under the same names, so one dashboard covers both.

use std::fmt::Write;
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

impl ServerStats {
    /// `ambit_hbone_inbound_*` in Prometheus text format, appended to `out`.
    pub fn render(&self, out: &mut String) {
        labelled_family(
            out,
            "ambit_hbone_inbound_connections_total",
            "Connections on the HBONE port (15008), by outcome.",
            "outcome",
            &[
                ("accepted", &self.connections_accepted),
                ("plaintext_refused", &self.plaintext_refused),
                ("handshake_timeout", &self.handshake_timeouts),
                ("client_cert_rejected", &self.client_certs_rejected),
                ("handshake_failed", &self.handshakes_failed),
            ],
        );
        labelled_family(
            out,
            "ambit_hbone_inbound_streams_total",
            "CONNECT streams received, by HTTP status.",
            "status",
            &[
                ("200", &self.streams_accepted),
                ("400", &self.streams_bad_request),
                ("401", &self.streams_denied),
                ("503", &self.streams_unreachable),
            ],
        );
    }
}

impl PoolStats {
    /// `ambit_hbone_outbound_*` in Prometheus text format, appended to `out`.
    pub fn render(&self, out: &mut String) {
        labelled_family(
            out,
            "ambit_hbone_outbound_connections_total",
            "Pooled mTLS connections to other Ambit proxies, by event.",
            "event",
            &[
                ("opened", &self.connections_opened),
                ("closed", &self.connections_closed),
                ("failed", &self.connect_failures),
            ],
        );
        labelled_family(
            out,
            "ambit_hbone_outbound_streams_total",
            "CONNECT streams opened to other Ambit proxies, by result.",
            "result",
            &[
                ("opened", &self.streams_opened),
                ("failed", &self.streams_failed),
            ],
        );
    }
}

/// `# HELP`/`# TYPE` of a counter family, then one sample per label value.
fn labelled_family(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, &AtomicU64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (value, counter) in samples {
        let count = counter.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
    }
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
