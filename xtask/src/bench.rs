//! `cargo xtask bench`: data-path benchmarks, reported as ratios to a direct connection
//! measured in the same run on the same machine.
//!
//! A benchmark is a measurement: it exits 0 when a target is missed and says so in its output.
//! Progress goes to stderr, so `--json` leaves exactly one JSON object on stdout.

mod common;
mod cpu_time;
mod memory;
mod redirect;
mod route;
mod summary;
mod table;
mod tunnel;
mod waypoint;

pub use waypoint::install_envoy;

use anyhow::{Context, Result};

#[derive(clap::Subcommand)]
pub enum Which {
    /// Same-node pod-to-pod TCP: direct, through the agent, and through the agent with the
    /// sk_msg fast path (latency p50/p99 and bulk throughput, median of 3 runs).
    Redirect {
        /// Print one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Cross-node pod-to-pod TCP: direct, and through the HBONE tunnel over mTLS (latency
    /// p50/p99 with 1 KB messages, bulk throughput, new connections per second, median of 3
    /// runs), plus the agents' RSS idle and under load and their CPU time per GB in bulk.
    Tunnel {
        /// Print one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// HTTP/1.1 and HTTP/2 through the waypoint's L7 engine (2 rules, retries, timeout) on
    /// 127.0.0.1: p50/p99 at a fixed offered load and max requests/s, direct vs waypoint vs
    /// Envoy (installed from PyPI on demand), as ratios, with RPS per proxy core and RSS.
    Waypoint {
        /// Print one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Redirect { json } => {
            prepare()?;
            report(&redirect::measure()?, json, table::render)
        }
        Which::Tunnel { json } => {
            prepare()?;
            report(&tunnel::measure()?, json, tunnel::table::render)
        }
        Which::Waypoint { json } => {
            // Plain processes on 127.0.0.1: no sandbox, so neither setup nor the agent.
            crate::build::waypoint_binaries()?;
            report(&waypoint::measure()?, json, waypoint::table::render)
        }
    }
}

/// Prints a benchmark's summary: its table, or (`json`) one JSON object on stdout.
fn report<S: serde::Serialize>(summary: &S, json: bool, table: fn(&S) -> String) -> Result<()> {
    if json {
        let line = serde_json::to_string(summary).context("serializing the benchmark summary")?;
        println!("{line}");
    } else {
        print!("{}", table(summary));
    }
    Ok(())
}

/// What every sandbox benchmark needs first: a set-up machine, release binaries, and Ctrl-C
/// tearing the sandbox down.
fn prepare() -> Result<()> {
    crate::setup::ensure()?;
    crate::build::release_binaries()?;
    ambit_e2e::install_interrupt_cleanup()
}
