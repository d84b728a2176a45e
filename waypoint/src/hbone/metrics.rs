//! The waypoint's HBONE counters in Prometheus text, under the node agent's metric names so
//! that one dashboard covers both.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use ambit_mesh::hbone::{PoolStats, ServerStats};

/// `ambit_hbone_inbound_*` (the front end) and `ambit_hbone_outbound_*` (the connector's pool).
pub fn render(server: &ServerStats, pool: &PoolStats) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "ambit_hbone_inbound_connections_total",
        "counter",
        "Connections on the HBONE port (15008), by outcome.",
    );
    for (outcome, v) in [
        ("accepted", &server.connections_accepted),
        ("plaintext_refused", &server.plaintext_refused),
        ("handshake_timeout", &server.handshake_timeouts),
        ("client_cert_rejected", &server.client_certs_rejected),
        ("handshake_failed", &server.handshakes_failed),
    ] {
        let _ = writeln!(
            out,
            "ambit_hbone_inbound_connections_total{{outcome=\"{outcome}\"}} {}",
            v.load(Relaxed)
        );
    }
    family(
        &mut out,
        "ambit_hbone_inbound_streams_total",
        "counter",
        "CONNECT streams received, by HTTP status.",
    );
    for (status, v) in [
        ("200", &server.streams_accepted),
        ("400", &server.streams_bad_request),
        ("401", &server.streams_denied),
        ("503", &server.streams_unreachable),
    ] {
        let _ = writeln!(
            out,
            "ambit_hbone_inbound_streams_total{{status=\"{status}\"}} {}",
            v.load(Relaxed)
        );
    }
    family(
        &mut out,
        "ambit_hbone_outbound_connections_total",
        "counter",
        "Pooled mTLS connections to node agents, by event.",
    );
    for (event, v) in [
        ("opened", &pool.connections_opened),
        ("closed", &pool.connections_closed),
        ("failed", &pool.connect_failures),
    ] {
        let _ = writeln!(
            out,
            "ambit_hbone_outbound_connections_total{{event=\"{event}\"}} {}",
            v.load(Relaxed)
        );
    }
    family(
        &mut out,
        "ambit_hbone_outbound_streams_total",
        "counter",
        "CONNECT streams opened to node agents, by result.",
    );
    for (result, v) in [
        ("opened", &pool.streams_opened),
        ("failed", &pool.streams_failed),
    ] {
        let _ = writeln!(
            out,
            "ambit_hbone_outbound_streams_total{{result=\"{result}\"}} {}",
            v.load(Relaxed)
        );
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
