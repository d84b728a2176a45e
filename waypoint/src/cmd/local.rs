//! `ambit-waypoint local`: the engine without the mesh.
//!
//! Listens on plain TCP, treats every connection as addressed to one Service port
//! (`--service ns/name --port N`), and reaches backends over plain TCP. The config file is
//! re-read when its modification time changes; a rejected route keeps its last accepted
//! version. Metrics are served at `/metrics` on `--metrics-listen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambit_waypoint::{Caller, Config, Destination, ServiceName, TcpConnector, Waypoint};
use anyhow::{bail, Context};
use tokio::net::TcpListener;

use super::admin;

#[derive(clap::Args)]
pub struct Args {
    /// Address to accept connections on.
    #[arg(long, default_value = "127.0.0.1:15080")]
    listen: SocketAddr,
    /// YAML file with `services`, `httpRoutes` and `tcpRoutes`.
    #[arg(long)]
    config: PathBuf,
    /// The Service every accepted connection is addressed to, as namespace/name.
    #[arg(long)]
    service: String,
    /// The Service port every accepted connection is addressed to.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Address for Prometheus metrics (`GET /metrics`).
    #[arg(long, default_value = "127.0.0.1:15020")]
    metrics_listen: SocketAddr,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let Some((namespace, name)) = args.service.split_once('/') else {
        bail!("--service {} is not namespace/name", args.service);
    };
    let waypoint = Arc::new(Waypoint::new(
        Arc::new(TcpConnector::default()),
        Default::default(),
    ));
    load(&waypoint, &args.config)?;
    tokio::spawn(reload(waypoint.clone(), args.config.clone()));
    tokio::spawn(admin::serve_metrics(
        waypoint.clone(),
        String::new,
        args.metrics_listen,
    ));
    let destination = Destination {
        service: ServiceName::new(namespace, name),
        port: args.port,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, service = %destination.service, "serving");
    loop {
        let (stream, peer) = listener.accept().await.context("accepting")?;
        // Answers go out as several writes (HTTP/2 frames); Nagle would hold the later ones
        // until the client acknowledged the first.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "TCP_NODELAY not set");
        }
        let (waypoint, destination) = (waypoint.clone(), destination.clone());
        tokio::spawn(async move {
            if let Err(e) = waypoint
                .serve(stream, destination, Caller::plain(peer))
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

/// Reads and applies the config file; a file that does not parse changes nothing.
fn load(waypoint: &Waypoint, path: &Path) -> anyhow::Result<()> {
    let config = read_config(path)?;
    let verdicts = waypoint.apply(&config);
    let accepted = verdicts.iter().filter(|v| v.accepted).count();
    tracing::info!(
        accepted,
        rejected = verdicts.len() - accepted,
        "routes loaded"
    );
    Ok(())
}

/// Parses a waypoint config file (`services`, `httpRoutes`, `tcpRoutes`).
pub fn read_config(path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Re-applies the config file whenever its modification time changes.
async fn reload(waypoint: Arc<Waypoint>, path: PathBuf) {
    let mut last = modified(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = modified(&path);
        if now != last {
            last = now;
            if let Err(e) = load(&waypoint, &path) {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "config not reloaded; the previous one stays in force"
                );
            }
        }
    }
}

pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
