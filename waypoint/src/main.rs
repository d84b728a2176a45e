//! `ambit-waypoint`: the waypoint behind HBONE (`run`), or a local runner over plain TCP
//! (`local`).

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// Every request allocates and frees dozens of small objects (headers, boxed futures, body
/// frames) across worker threads; glibc's malloc spent about 13 % of the waypoint's CPU on
/// them under load (perf), mimalloc's thread-local free lists much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ambit's waypoint: HTTPRoute routing, retries, timeouts and splits.
#[derive(Parser)]
#[command(name = "ambit-waypoint", version)]
struct Cli {
    /// Threads that serve requests; 1 runs everything on one thread, 0 means one per CPU
    /// this process may run on.
    #[arg(long, global = true, env = "AMBIT_WORKERS", default_value_t = 0)]
    workers: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve HBONE on port 15008 for a namespace's Services, as a mesh workload.
    Run(Box<cmd::run::Args>),
    /// Serve one Service port on plain TCP and reach backends over plain TCP (no mesh).
    Local(cmd::local::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let runtime = match ambit_mesh::runtime::build(cli.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ambit-waypoint: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cmd::run::run(*args).await,
            Command::Local(args) => cmd::local::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambit-waypoint: {e:#}");
            ExitCode::FAILURE
        }
    }
}
