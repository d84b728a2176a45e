//! `ambit-controller`, the control plane: the mesh CA (`init-ca`, `issue-node-cert`, `serve`),
//! and `crds`, which prints the CRDs generated from `ambit_mesh::api`.
//!
//! A process of its own, so that the CA's signing key never sits on a node (see README.md).

mod certs;
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
    /// Serve the CA over mTLS; workload placement comes from the mesh config, followed live.
    Serve {
        #[arg(long, env = "AMBIT_CA_DIR")]
        ca_dir: PathBuf,
        /// Mesh config file (YAML), the one the node agents read.
        #[arg(long, env = "AMBIT_CONFIG")]
        config: PathBuf,
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
            config,
            listen,
            ready_file,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve::run(serve::Spec {
                ca_dir,
                config,
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
