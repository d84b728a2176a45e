//! Prometheus metrics (15020) and readiness (15021) over a minimal HTTP/1.1 responder.
//!
//! Both endpoints answer one GET and close: scrapers and kubelet probes need nothing more,
//! and the agent stays free of an HTTP stack until the tunnel brings hyper in.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use ambit_mesh::hbone::{PoolStats, ServerStats};

use crate::enroll::EnrolledNames;
use crate::kernel_maps::KernelMaps;
use crate::outbound::OutboundStats;
use ambit_mesh::config::ConfigSource;

/// What the endpoints read.
pub struct Observed {
    pub maps: Arc<KernelMaps>,
    pub enrolled: Arc<EnrolledNames>,
    pub outbound: Arc<OutboundStats>,
    pub config: Arc<ConfigSource>,
    /// The tunnel's two sides, when a CA is configured.
    pub hbone_server: Option<Arc<ServerStats>>,
    pub hbone_pool: Option<Arc<PoolStats>>,
    /// Pods delivered to from their callers' addresses (`--client-address preserve`).
    pub steered: Option<Arc<crate::return_path::Steered>>,
}

/// The metrics in Prometheus text format (version 0.0.4).
pub fn render(o: &Observed) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "ambit_redirect_events_total",
        "counter",
        "Kernel redirect events, by event (see `ambit-node inspect`).",
    );
    for (counter, value) in o.maps.counter_totals() {
        let _ = writeln!(
            out,
            "ambit_redirect_events_total{{event=\"{}\"}} {value}",
            counter.name()
        );
    }
    let s = &o.outbound;
    family(
        &mut out,
        "ambit_outbound_connections_total",
        "counter",
        "Connections accepted on 15001, by result.",
    );
    for (result, value) in [
        ("relayed", s.relayed.load(Relaxed)),
        ("refused_no_record", s.refused_no_record.load(Relaxed)),
        ("refused_no_route", s.refused_no_route.load(Relaxed)),
        ("upstream_failed", s.upstream_failed.load(Relaxed)),
    ] {
        let _ = writeln!(
            out,
            "ambit_outbound_connections_total{{result=\"{result}\"}} {value}"
        );
    }
    family(
        &mut out,
        "ambit_outbound_tunnelled_total",
        "counter",
        "Relayed connections carried over the mTLS tunnel (HBONE) to another node.",
    );
    let _ = writeln!(
        out,
        "ambit_outbound_tunnelled_total {}",
        s.tunnelled.load(Relaxed)
    );
    family(
        &mut out,
        "ambit_outbound_active_connections",
        "gauge",
        "Connections being relayed now.",
    );
    let _ = writeln!(
        out,
        "ambit_outbound_active_connections {}",
        s.active.load(Relaxed)
    );
    family(
        &mut out,
        "ambit_tcp_sent_bytes_total",
        "counter",
        "Bytes relayed from enrolled pods to their destinations.",
    );
    let _ = writeln!(
        out,
        "ambit_tcp_sent_bytes_total {}",
        s.sent_bytes.load(Relaxed)
    );
    family(
        &mut out,
        "ambit_tcp_received_bytes_total",
        "counter",
        "Bytes relayed from destinations back to enrolled pods.",
    );
    let _ = writeln!(
        out,
        "ambit_tcp_received_bytes_total {}",
        s.received_bytes.load(Relaxed)
    );
    family(
        &mut out,
        "ambit_enrolled_workloads",
        "gauge",
        "Network namespaces enrolled on this node.",
    );
    let enrolled = o.enrolled.len();
    let _ = writeln!(out, "ambit_enrolled_workloads {enrolled}");
    if let Some(steered) = &o.steered {
        family(
            &mut out,
            "ambit_client_address_kept_pods",
            "gauge",
            "Pod addresses on this node whose replies are steered back to the agent, so that connections to them leave from the caller's address.",
        );
        let _ = writeln!(out, "ambit_client_address_kept_pods {}", steered.len());
    }
    if let Some(server) = &o.hbone_server {
        server.render(&mut out);
    }
    if let Some(pool) = &o.hbone_pool {
        pool.render(&mut out);
    }
    family(
        &mut out,
        "ambit_config_rejected_total",
        "counter",
        "Config files rejected (the last good config stayed in force).",
    );
    let _ = writeln!(
        out,
        "ambit_config_rejected_total {}",
        o.config.rejected_total()
    );
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Readiness: the agent serves (it only binds this port once ready). The body says whether
/// the config file is currently rejected or Kubernetes objects have problems, without
/// failing readiness: the last good config, or every other object, is in force.
pub fn readiness(o: &Observed) -> String {
    match o.config.trouble() {
        Some(e) => format!("ready; {e}\n"),
        None => "ready\n".to_string(),
    }
}

pub async fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .await
        .with_context(|| format!("binding port {port}"))
}

/// Serves `path` with `body(observed)`; anything else is 404.
pub async fn serve(
    listener: TcpListener,
    path: &'static str,
    content_type: &'static str,
    observed: Arc<Observed>,
    body: fn(&Observed) -> String,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let observed = Arc::clone(&observed);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                answer(stream, path, content_type, &observed, body),
            )
            .await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    path: &str,
    content_type: &str,
    observed: &Observed,
    body: fn(&Observed) -> String,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = if method == "GET" && target == path {
        ("200 OK", content_type, body(observed))
    } else {
        ("404 Not Found", "text/plain", format!("try GET {path}\n"))
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_families_have_help_and_type_lines() {
        let mut out = String::new();
        family(&mut out, "ambit_x_total", "counter", "An example.");
        assert_eq!(
            out,
            "# HELP ambit_x_total An example.\n# TYPE ambit_x_total counter\n"
        );
    }
}
