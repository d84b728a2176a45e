//! `serve`: the CA over mTLS, with workload placement from the mesh config file (polled, and
//! re-read on SIGHUP).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ambit_mesh::config::FileSource;
use ambit_mesh::identity::{serve, server_config, Ca, CaService};
use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

pub struct Spec {
    pub ca_dir: PathBuf,
    pub config: PathBuf,
    pub listen: SocketAddr,
    pub ready_file: Option<PathBuf>,
}

pub async fn run(spec: Spec) -> Result<()> {
    let source = Arc::new(
        FileSource::start(&spec.config)
            .await
            .with_context(|| format!("loading the mesh config {}", spec.config.display()))?,
    );
    let trust_domain = source.current().trust_domain().to_string();
    let ca = Arc::new(Ca::load(&spec.ca_dir, &trust_domain)?);
    let tls = server_config(&ca)?;
    let listener = TcpListener::bind(spec.listen)
        .await
        .with_context(|| format!("listening on {}", spec.listen))?;
    let service = CaService::new(ca, source.subscribe());
    tracing::info!(listen = %spec.listen, %trust_domain, "serving the mesh CA");
    if let Some(path) = &spec.ready_file {
        std::fs::write(path, b"ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let mut hup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let reloader = source.clone();
    let reloads = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reloader.reload_now();
        }
    });
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let served = serve(listener, service, tls, shutdown).await;
    reloads.abort();
    Ok(served?)
}
