//! `ambit-node`, the node agent: `run`, `preflight`, `inspect`, `unload`.

mod app;
mod dial;
mod enroll;
mod exclusions;
mod identity;
mod inbound;
mod inspect;
mod kernel_maps;
mod metrics;
mod netns;
mod outbound;
mod preflight;
mod records;
mod redirect;
mod relay;

use std::net::IpAddr;
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
    Run {
        /// This node's name, as in the config's `nodes` (also names the pin directory).
        #[arg(long, env = "AMBIT_NODE_NAME")]
        node: String,
        /// Mesh config file (YAML); reloaded when it changes or on SIGHUP.
        #[arg(long, env = "AMBIT_CONFIG")]
        config: PathBuf,
        /// The pods' cgroup v2 subtree to attach to; it must also contain the agent.
        /// Default: <cgroup2 mount>/kubepods.slice or <cgroup2 mount>/kubepods.
        #[arg(long, env = "AMBIT_CGROUP")]
        cgroup: Option<PathBuf>,
        #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// The agent's address as pods reach it. Default: the node's address in the config.
        #[arg(long, env = "AMBIT_AGENT_IP")]
        agent_ip: Option<IpAddr>,
        #[arg(long, default_value_t = 15001)]
        outbound_port: u16,
        /// Join same-node sockets socket-to-socket with sk_msg (off by default: an application
        /// socket in the SOCKHASH gets the kernel's sockmap receive path, where a blocking
        /// read() can return EAGAIN while another thread writes the same socket; epoll-driven
        /// applications are unaffected). See README, "Same-node fast path".
        #[arg(long)]
        fastpath: bool,
        /// Forward the kernel programs' debug log (costly; for debugging only).
        #[arg(long)]
        kernel_debug_log: bool,
        /// Write this file once the agent serves (a readiness signal for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Bound on redirected connections per node (live plus connecting). Past it, new
        /// connects from enrolled pods fail (EPERM) and `orig_dst_map_full` counts them;
        /// the mesh is never bypassed. Applies when the maps are first created.
        #[arg(long)]
        max_connections: Option<u32>,
        /// Prometheus metrics (GET /metrics); 0 disables.
        #[arg(long, default_value_t = 15020)]
        metrics_port: u16,
        /// Readiness (GET /healthz/ready); 0 disables.
        #[arg(long, default_value_t = 15021)]
        readiness_port: u16,
        /// The mesh CA (ambit-controller serve). With --identity-dir, mesh connections are
        /// carried over mTLS (HBONE); without, they are relayed in plaintext.
        #[arg(long, env = "AMBIT_CA_ADDR", requires = "identity_dir")]
        ca_addr: Option<std::net::SocketAddr>,
        /// This node's credentials for the CA: node.pem, node-key.pem, root.pem
        /// (ambit-controller issue-node-cert).
        #[arg(long, env = "AMBIT_IDENTITY_DIR", requires = "ca_addr")]
        identity_dir: Option<PathBuf>,
        /// HBONE (mTLS HTTP/2 CONNECT) listener for other agents.
        #[arg(long, default_value_t = 15008)]
        hbone_port: u16,
        /// Lifetime of workload certificates to ask the CA for, in seconds (default: the CA's).
        #[arg(long)]
        svid_ttl_secs: Option<u64>,
    },
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
        #[arg(long)]
        json: bool,
    },
    /// Detach the node's programs and remove its pinned maps (uninstall).
    Unload {
        #[arg(long, env = "AMBIT_NODE_NAME")]
        node: String,
        #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
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
        Command::Run {
            node,
            config,
            cgroup,
            bpffs,
            agent_ip,
            outbound_port,
            fastpath,
            kernel_debug_log,
            ready_file,
            max_connections,
            metrics_port,
            readiness_port,
            ca_addr,
            identity_dir,
            hbone_port,
            svid_ttl_secs,
        } => {
            let cgroup = match cgroup {
                Some(c) => c,
                None => default_cgroup()?,
            };
            let spec = app::RunSpec {
                node,
                config,
                cgroup,
                bpffs,
                agent_ip,
                outbound_port,
                fastpath,
                kernel_log_level: if kernel_debug_log { 4 } else { 0 },
                ready_file,
                max_connections,
                metrics_port,
                readiness_port,
                ca_addr,
                identity_dir,
                hbone_port,
                svid_ttl: svid_ttl_secs.map(std::time::Duration::from_secs),
            };
            raise_open_files_limit();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(app::run(spec))?;
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
        Command::Inspect { node, bpffs, json } => {
            let nodes = match node {
                Some(n) => vec![n],
                None => inspect::pinned_nodes(&bpffs),
            };
            if nodes.is_empty() {
                bail!("no Ambit pins under {}/ambit: no agent has run on this machine (or `unload` removed it)", bpffs.display());
            }
            let reports = nodes
                .iter()
                .map(|n| inspect::inspect(&bpffs, n))
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
        Command::Unload { node, bpffs } => {
            let dir = kernel_maps::pin_dir(&bpffs, &node);
            let removed = redirect::unload(&dir)?;
            println!(
                "removed {} pins from {}; programs detached",
                removed.len(),
                dir.display()
            );
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

/// The kubelet's pod cgroup: `kubepods.slice` (systemd driver) or `kubepods` (cgroupfs).
fn default_cgroup() -> Result<PathBuf> {
    let Some(mount) = preflight::cgroup2_mount() else {
        bail!("no cgroup v2 mount found; pass --cgroup (run `ambit-node preflight`)");
    };
    for name in ["kubepods.slice", "kubepods"] {
        let dir = mount.join(name);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!(
        "no kubepods cgroup under {}; pass --cgroup with the pods' cgroup subtree",
        mount.display()
    )
}
