//! `ambit-waypoint`, a local runner for the waypoint engine.
//!
//! Not integrated with HBONE yet: it listens on plain TCP, treats every connection as
//! addressed to one Service port (`--service ns/name --port N`), and reaches backends over
//! plain TCP. The HBONE front end (port 15008, mTLS, CONNECT streams) is the next step.
//! The config file is re-read when its modification time changes; a rejected route keeps
//! its last accepted version. Metrics are served at `/metrics` on `--metrics-listen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ambit_waypoint::body;
use ambit_waypoint::{Caller, Config, Destination, ServiceName, TcpConnector, Waypoint};
use anyhow::{bail, Context};
use clap::Parser;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Ambit's waypoint: HTTPRoute routing, retries, timeouts and splits (local runner).
#[derive(Parser)]
#[command(name = "ambit-waypoint", version)]
struct Cli {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ambit-waypoint: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambit-waypoint: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Some((namespace, name)) = cli.service.split_once('/') else {
        bail!("--service {} is not namespace/name", cli.service);
    };
    let waypoint = Arc::new(Waypoint::new(
        Arc::new(TcpConnector::default()),
        Default::default(),
    ));
    load(&waypoint, &cli.config)?;
    tokio::spawn(reload(waypoint.clone(), cli.config.clone()));
    tokio::spawn(serve_metrics(waypoint.clone(), cli.metrics_listen));
    let destination = Destination {
        service: ServiceName::new(namespace, name),
        port: cli.port,
    };
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    tracing::info!(listen = %cli.listen, service = %destination.service, "serving");
    loop {
        let (stream, peer) = listener.accept().await.context("accepting")?;
        let (waypoint, destination) = (waypoint.clone(), destination.clone());
        tokio::spawn(async move {
            let caller = Caller {
                peer,
                identity: None,
            };
            if let Err(e) = waypoint.serve(stream, destination, caller).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

/// Reads and applies the config file; a file that does not parse changes nothing.
fn load(waypoint: &Waypoint, path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: Config =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let verdicts = waypoint.apply(&config);
    let accepted = verdicts.iter().filter(|v| v.accepted).count();
    tracing::info!(
        accepted,
        rejected = verdicts.len() - accepted,
        "routes loaded"
    );
    Ok(())
}

/// Re-applies the config file whenever its modification time changes.
async fn reload(waypoint: Arc<Waypoint>, path: PathBuf) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
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

async fn serve_metrics(waypoint: Arc<Waypoint>, listen: SocketAddr) {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%listen, error = %e, "metrics listener not started");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let waypoint = waypoint.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let response = if request.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(body::full(waypoint.metrics().render()))
                    } else {
                        http::Response::builder().status(404).body(body::empty())
                    };
                    async move { response }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
