//! `ambit-waypoint`, a local runner for the waypoint engine.
//!
//! Not integrated with HBONE yet: it listens on plain TCP, treats every connection as
//! addressed to one Service port (`--service ns/name --port N`), and reaches backends over
//! plain TCP. The HBONE front end (port 15008, mTLS, CONNECT streams) is the next step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ambit_waypoint::{Caller, Config, Destination, ServiceName, TcpConnector, Waypoint};
use anyhow::{bail, Context};
use clap::Parser;
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
    let text = std::fs::read_to_string(&cli.config)
        .with_context(|| format!("reading {}", cli.config.display()))?;
    let config: Config =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", cli.config.display()))?;
    let waypoint = Arc::new(Waypoint::new(
        Arc::new(TcpConnector::default()),
        Default::default(),
    ));
    let verdicts = waypoint.apply(&config);
    let accepted = verdicts.iter().filter(|v| v.accepted).count();
    tracing::info!(
        accepted,
        rejected = verdicts.len() - accepted,
        "routes loaded"
    );
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
