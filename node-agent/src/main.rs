//! `ambit-node`, the node agent: `run`, `preflight`, `inspect`, `unload`.

mod app;
mod cni;
mod dial;
mod enroll;
mod exclusions;
mod identity;
mod inbound;
mod inspect;
mod kernel_maps;
mod metrics;
use ambit_cni::netns;
mod outbound;
mod pod_netns;
mod preflight;
mod records;
mod redirect;
mod relay;
mod return_path;
mod run_dir;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Ambit's node agent: steers enrolled pods' connections into the mesh.
#[derive(Parser)]
#[command(name = "ambit-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and attach the redirect, enroll this node's mesh pods, proxy their connections.
    Run(Box<app::RunArgs>),
    /// Check that this node can run the redirect; print what is missing and how to fix it.
    Preflight {
        #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        #[arg(long, env = "AMBIT_CGROUP")]
        cgroup: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show what the kernel is redirecting, from the pinned maps (works while the agent runs
    /// or after it stopped).
    Inspect {
        /// Node to inspect; default: every node pinned under <bpffs>/ambit.
        #[arg(long, env = "AMBIT_NODE_NAME")]
        node: Option<String>,
        #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// The agent's run directory, where it publishes its view of the node's workloads
        /// (including those it does not enroll, and why).
        #[arg(long, env = "AMBIT_RUN_DIR", default_value = "/run/ambit")]
        run_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Detach the node's programs and remove its pinned maps (uninstall).
    Unload {
        #[arg(long, env = "AMBIT_NODE_NAME")]
        node: String,
        #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// Also take ambit-cni out of the CNI config in this directory (an agent that stops
        /// normally does so itself; this is for one that was killed).
        #[arg(long)]
        cni_conf_dir: Option<PathBuf>,
        #[command(flatten)]
        reply_routing: app::ReplyRouting,
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("ambit-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => {
            raise_open_files_limit();
            let runtime = args.runtime().context("starting the async runtime")?;
            runtime.block_on(app::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Preflight {
            bpffs,
            cgroup,
            json,
        } => {
            let checks = preflight::run(&preflight::PreflightSpec { bpffs, cgroup });
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                print!("{}", preflight::render(&checks));
            }
            Ok(if preflight::failures(&checks).is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Inspect {
            node,
            bpffs,
            run_dir,
            json,
        } => {
            let nodes = match node {
                Some(n) => vec![n],
                None => inspect::pinned_nodes(&bpffs),
            };
            if nodes.is_empty() {
                bail!("no Ambit pins under {}/ambit: no agent has run on this machine (or `unload` removed it)", bpffs.display());
            }
            let reports = nodes
                .iter()
                .map(|n| inspect::inspect(&bpffs, &run_dir, n))
                .collect::<Result<Vec<_>>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    print!("{}", inspect::render(r));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unload {
            node,
            bpffs,
            cni_conf_dir,
            reply_routing,
        } => {
            let dir = kernel_maps::pin_dir(&bpffs, &node);
            let removed = redirect::unload(&dir)?;
            println!(
                "removed {} pins from {}; programs detached",
                removed.len(),
                dir.display()
            );
            let routing = reply_routing.routing();
            return_path::ReturnPath::uninstall(routing)?;
            println!(
                "removed the reply rule (fwmark {:#x} lookup {})",
                routing.mark, routing.table
            );
            if let Some(conf_dir) = cni_conf_dir {
                let files = ambit_cni::chain::uninstall(&conf_dir)?;
                println!(
                    "took ambit-cni out of {} CNI config file(s) in {}",
                    files.len(),
                    conf_dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Each relayed connection holds six descriptors (two sockets, two pipes): lift the soft
/// limit to the hard one so a busy node does not run out at the default 1,024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit to fill in and then pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-files limit to {}", limit.rlim_max);
            }
        }
    }
}
