//! `ambit-waypoint`, the per-namespace L7 proxy. Its HTTP routing arrives with the waypoint
//! issue; the binary exists so the workspace and the install have their final shape.

use std::process::ExitCode;

use clap::Parser;

/// Ambit's waypoint: HTTPRoute routing, retries, timeouts and splits for a namespace.
#[derive(Parser)]
#[command(name = "ambit-waypoint", version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("ambit-waypoint: L7 routing is not available in this version; see README, Limits");
    ExitCode::FAILURE
}
