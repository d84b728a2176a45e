//! `ambit-testapp`: the servers and clients that sandbox pods run in tests, the demo and benchmarks.
//!
//! Every client prints one result line (JSON for the measuring ones, see
//! `ambit_e2e::testapp`) and bounds every connect, read and write by `--timeout-ms`.

mod clients;
mod l7;
mod load;
mod pattern;
mod serve;

/// The generated `ambit.testapp.v1` gRPC code (tests/proto/testapp.proto).
mod proto {
    #![allow(clippy::all, reason = "generated code")]
    #![allow(
        clippy::allow_attributes_without_reason,
        reason = "generated code carries its own allows"
    )]
    tonic::include_proto!("ambit.testapp.v1");
}

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ambit-testapp",
    about = "Test servers and clients for the Ambit sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo, whoami, (optionally) sink, HTTP and gRPC servers on all addresses.
    Serve(serve::ServeArgs),
    /// Connects to a whoami server and prints its line.
    Whoami {
        #[command(flatten)]
        target: Target,
    },
    /// Sends a pseudo-random pattern to an echo server and verifies the echo byte for byte.
    Echo {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        bytes: u64,
    },
    /// Holds one connection; each `ping` line on stdin does a round trip and prints `ok`.
    Hold {
        #[command(flatten)]
        target: Target,
    },
    /// Sends `text` repeatedly (`count` times) to an echo server, checks the echo, prints it
    /// once: a recognisable payload for packet captures.
    Say {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        text: String,
        #[arg(long, default_value_t = 16)]
        count: u32,
    },
    /// Opens all connections first, then echoes on each; prints how many succeeded.
    Concurrent {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        connections: u32,
        #[arg(long, default_value_t = 4096)]
        bytes: u64,
    },
    /// Request/response latency on one connection.
    Rr {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
        #[arg(long, default_value_t = 300)]
        warmup_ms: u64,
    },
    /// Streams to a sink as fast as possible, then reads the sink's byte count.
    Bulk {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
    },
    /// HTTP/1.1 or h2c requests over keep-alive connections; prints an HttpReport.
    Http(l7::http::HttpArgs),
    /// One gRPC call to the Echo service; prints a GrpcReport.
    Grpc(l7::grpc::GrpcArgs),
    /// Text messages over one WebSocket, each answered; prints a WsReport.
    Ws(l7::ws::WsArgs),
}

/// Where a client connects and how long any single step may take.
#[derive(Args, Clone, Copy)]
struct Target {
    #[arg(long)]
    addr: SocketAddr,
    /// Bound on connecting and on each read or write.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

impl Target {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

fn main() -> ExitCode {
    raise_open_files_limit();
    let cli = Cli::parse();
    let ms = Duration::from_millis;
    let result = match cli.command {
        Cmd::Serve(args) => serve::run(args),
        Cmd::Whoami { target } => clients::whoami(target),
        Cmd::Echo { target, bytes } => clients::echo(target, bytes),
        Cmd::Hold { target } => clients::hold(target),
        Cmd::Say {
            target,
            text,
            count,
        } => clients::say(target, &text, count),
        Cmd::Concurrent {
            target,
            connections,
            bytes,
        } => load::concurrent(target, connections, bytes),
        Cmd::Rr {
            target,
            size,
            duration_ms,
            warmup_ms,
        } => load::rr(target, size, ms(duration_ms), ms(warmup_ms)),
        Cmd::Bulk {
            target,
            duration_ms,
        } => load::bulk(target, ms(duration_ms)),
        Cmd::Http(args) => l7::http::run(args),
        Cmd::Grpc(args) => l7::grpc::run(args),
        Cmd::Ws(args) => l7::ws::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ambit-testapp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Thousands of concurrent connections need more than the usual soft limit of 1024 fds.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass; failure leaves the
    // limit as it was, which only matters for very large connection counts.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
