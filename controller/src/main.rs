//! `ambit-controller`, the control plane: the mesh CA (`init-ca`, `issue-node-cert`, `serve`),
//! the waypoint deployer (in `serve --config-source kube`), and `crds`, which prints the CRDs
//! generated from `ambit_mesh::api`.
//!
//! A process of its own, so that the CA's signing key never sits on a node (see README.md).

mod certs;
mod deployer;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Ambit's control plane: signs workload certificates for node agents.
#[derive(Parser)]
#[command(name = "ambit-controller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a root and an intermediate into a directory (sandbox; keys written 0600).
    InitCa {
        #[arg(long, env = "AMBIT_CA_DIR")]
        dir: PathBuf,
    },
    /// Issue a node agent's client certificate (sandbox stand-in for a Kubernetes token):
    /// writes node.pem, node-key.pem and root.pem into the output directory.
    IssueNodeCert {
        #[arg(long, env = "AMBIT_CA_DIR")]
        ca_dir: PathBuf,
        /// The node's name, as in the mesh config's `nodes`.
        #[arg(long)]
        node: String,
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Serve the CA over TLS. With `--config-source file`, callers present node certificates
    /// and placement comes from the mesh config (followed live); with `kube`, callers may
    /// instead send a service-account token (TokenReview), placement is read from the API, and
    /// each Gateway of class ambit-waypoint gets its waypoint (Deployment, Service, ...).
    Serve {
        #[arg(long, env = "AMBIT_CA_DIR")]
        ca_dir: PathBuf,
        /// Where the CA learns who calls and where pods run.
        #[arg(long, value_enum, default_value = "file")]
        config_source: serve::Source,
        /// Mesh config file (YAML), the one the node agents read (`--config-source file`).
        #[arg(long, env = "AMBIT_CONFIG", required_if_eq("config_source", "file"))]
        config: Option<PathBuf>,
        /// The SPIFFE trust domain (`--config-source kube`; the file names its own).
        #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = ambit_mesh::model::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// The node agents' service account, as namespace/name: its tokens act as the node
        /// their pod runs on (`--config-source kube`).
        #[arg(
            long,
            env = "AMBIT_NODE_AGENT_SERVICE_ACCOUNT",
            default_value = "ambit-system/ambit-node"
        )]
        node_agent_service_account: String,
        /// The waypoints' image (`--config-source kube`).
        #[arg(long, env = "AMBIT_WAYPOINT_IMAGE", default_value = deployer::render::DEFAULT_IMAGE)]
        waypoint_image: String,
        /// The waypoint template: a directory holding the `ambit-waypoint-template` ConfigMap's
        /// entries (the chart mounts it), or, when absent, the template built in with the
        /// chart's defaults (`--config-source kube`).
        #[arg(long, env = "AMBIT_WAYPOINT_TEMPLATE")]
        waypoint_template: Option<PathBuf>,
        #[arg(long, default_value = "0.0.0.0:15012")]
        listen: SocketAddr,
        /// Write this file once the CA serves (a readiness signal for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Print Ambit's CRDs as YAML, or write one file per CRD into each --out-dir
    /// (maintenance: `cargo xtask gen-crds` runs it).
    #[command(hide = true)]
    Crds {
        #[arg(long)]
        out_dir: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambit-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::InitCa { dir } => certs::init_ca(&dir),
        Command::IssueNodeCert {
            ca_dir,
            node,
            out_dir,
            trust_domain,
        } => certs::issue_node_cert(&ca_dir, &trust_domain, &node, &out_dir),
        Command::Serve {
            ca_dir,
            config_source,
            config,
            trust_domain,
            node_agent_service_account,
            waypoint_image,
            waypoint_template,
            listen,
            ready_file,
        } => {
            let source = match config_source {
                serve::Source::File => serve::Placement::File(
                    config.context("--config-source file needs --config <file>")?,
                ),
                serve::Source::Kube => {
                    let (ns, name) = node_agent_service_account
                        .split_once('/')
                        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                        .with_context(|| {
                            format!(
                                "--node-agent-service-account {node_agent_service_account:?} is not namespace/name"
                            )
                        })?;
                    let template = match &waypoint_template {
                        Some(dir) => deployer::render::Template::from_dir(dir),
                        None => deployer::render::Template::builtin(),
                    }
                    .context("loading the waypoint template")?;
                    serve::Placement::Kube {
                        trust_domain,
                        node_agents: (ns.to_owned(), name.to_owned()),
                        waypoints: serve::Waypoints {
                            template,
                            image: waypoint_image,
                        },
                    }
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve::run(serve::Spec {
                ca_dir,
                source,
                listen,
                ready_file,
            }))
        }
        Command::Crds { out_dir } => crds(&out_dir),
    }
}

fn crds(out_dirs: &[PathBuf]) -> Result<()> {
    let files = ambit_mesh::api::crd_files().context("serializing the CRDs")?;
    if out_dirs.is_empty() {
        let docs: Vec<&str> = files.iter().map(|(_, text)| text.as_str()).collect();
        print!("{}", docs.join("---\n"));
    }
    for dir in out_dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in &files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
