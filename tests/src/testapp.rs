//! The `ambit-testapp` binary as seen by its callers: command lines and the JSON it prints.
//!
//! One definition of each result type: the binary serializes them, tests and benchmarks
//! parse them. The HTTP, gRPC and WebSocket side is in `testapp/l7.rs`, re-exported here.

mod l7;

pub use l7::{
    GrpcCall, GrpcReport, HitCounts, HttpEcho, HttpOpts, HttpReport, LatencyMs, WsReport,
    GRPC_PORT, HTTP_PORT, LAST_BODY_LIMIT, SERVED_BY,
};

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sandbox::{Node, Pod, Process, Sandbox};

/// Port of the pure byte echo server.
pub const ECHO_PORT: u16 = 8080;
/// Port of the whoami server (`<name> <peer-ip>:<peer-port>`).
pub const WHOAMI_PORT: u16 = 8081;
/// Port of the sink (reads, then answers the byte count after the client's half-close).
pub const SINK_PORT: u16 = 8082;
/// What `serve` prints once every listener is bound; see [`ReadyLine`] for the rest of it.
pub const READY_LINE: &str = "ambit-testapp ready";

/// `echo`'s result; on a mismatch `ok` is false and `first_mismatch` is the offset.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EchoReport {
    pub ok: bool,
    pub bytes: u64,
    pub local: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_mismatch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `concurrent`'s result: how many connections echoed correctly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConcurrentReport {
    pub ok: u64,
    pub failed: u64,
    pub first_error: Option<String>,
}

/// `rr`'s result: latency of one request/response round trip.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RrReport {
    pub size: usize,
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

/// `bulk`'s result: bytes the sink counted, over the sending time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BulkReport {
    pub bytes: u64,
    pub seconds: f64,
    pub gbit_per_s: f64,
}

/// What a whoami server answered: its name and the client address it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoamiLine {
    pub server: String,
    pub peer: SocketAddr,
}

impl WhoamiLine {
    /// Parses `<name> <peer-ip>:<peer-port>`.
    pub fn parse(line: &str) -> Result<WhoamiLine> {
        let (server, peer) = line
            .trim()
            .split_once(' ')
            .with_context(|| format!("whoami line {line:?} is not `<name> <ip:port>`"))?;
        let peer = peer
            .parse()
            .with_context(|| format!("whoami line {line:?}: bad peer address"))?;
        Ok(WhoamiLine {
            server: server.to_string(),
            peer,
        })
    }
}

/// Where `serve` listens. The default is what pods run: every server on its well-known port,
/// on all addresses. Port 0 picks a free port; [`ReadyLine`] tells which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOpts {
    pub bind: Ipv4Addr,
    pub echo_port: u16,
    pub whoami_port: u16,
    /// No sink when `None`.
    pub sink_port: Option<u16>,
    pub http_port: u16,
    pub grpc_port: u16,
}

impl Default for ServeOpts {
    fn default() -> Self {
        ServeOpts {
            bind: Ipv4Addr::UNSPECIFIED,
            echo_port: ECHO_PORT,
            whoami_port: WHOAMI_PORT,
            sink_port: Some(SINK_PORT),
            http_port: HTTP_PORT,
            grpc_port: GRPC_PORT,
        }
    }
}

impl ServeOpts {
    /// Every server on a free port of 127.0.0.1: for tests that need no sandbox.
    pub fn loopback() -> ServeOpts {
        ServeOpts {
            bind: Ipv4Addr::LOCALHOST,
            echo_port: 0,
            whoami_port: 0,
            sink_port: Some(0),
            http_port: 0,
            grpc_port: 0,
        }
    }
}

/// `serve`'s ready line, `ambit-testapp ready name=<name> echo=<addr> whoami=<addr> …`: the
/// addresses actually bound, so ports chosen by the kernel are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyLine {
    pub name: String,
    /// By server: `echo`, `whoami`, `sink`, `http`, `grpc`.
    pub listeners: BTreeMap<String, SocketAddr>,
}

impl ReadyLine {
    pub fn parse(line: &str) -> Result<ReadyLine> {
        let rest = line
            .trim()
            .strip_prefix(READY_LINE)
            .with_context(|| format!("{line:?} is not a ready line"))?;
        let mut name = None;
        let mut listeners = BTreeMap::new();
        for field in rest.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("ready line {line:?}: {field:?} is not key=value"))?;
            if key == "name" {
                name = Some(value.to_string());
            } else {
                let addr = value
                    .parse()
                    .with_context(|| format!("ready line {line:?}: bad address for {key}"))?;
                listeners.insert(key.to_string(), addr);
            }
        }
        Ok(ReadyLine {
            name: name.with_context(|| format!("ready line {line:?} has no name"))?,
            listeners,
        })
    }

    /// The address server `service` (`http`, `grpc`, …) bound.
    pub fn addr(&self, service: &str) -> Result<SocketAddr> {
        self.listeners
            .get(service)
            .copied()
            .with_context(|| format!("{} serves no {service}: {:?}", self.name, self.listeners))
    }
}

/// Builds `ambit-testapp` command lines.
#[derive(Clone, Debug)]
pub struct TestApp {
    path: PathBuf,
}

impl TestApp {
    /// Finds the binary with [`crate::binary`] (for xtask; tests prefer [`TestApp::at`] with
    /// `env!("CARGO_BIN_EXE_ambit-testapp")`).
    pub fn locate() -> Result<TestApp> {
        Ok(TestApp::at(crate::binary("ambit-testapp")?))
    }

    pub fn at(path: impl Into<PathBuf>) -> TestApp {
        TestApp { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn command<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.args(args);
        cmd
    }

    /// Starts `serve` (see [`TestApp::serve`]) in a pod and waits for its ready line; its
    /// stderr goes to `<sandbox dir>/testapp-<name>.log`.
    pub fn serve_in_pod(&self, sb: &Sandbox, pod: &Pod, name: &str) -> Result<Process> {
        let cmd = self.prepare_serve(sb, name)?;
        Self::await_ready(sb.spawn_in_pod(pod, cmd)?, name)
    }

    /// Like [`TestApp::serve_in_pod`], in a node's namespace (reachable on the node address).
    pub fn serve_on_node(&self, sb: &Sandbox, node: &Node, name: &str) -> Result<Process> {
        let cmd = self.prepare_serve(sb, name)?;
        Self::await_ready(sb.spawn_in_node_agent(node, cmd)?, name)
    }

    fn prepare_serve(&self, sb: &Sandbox, name: &str) -> Result<Command> {
        let mut cmd = self.serve(name);
        sb.capture_to_log(&mut cmd, &format!("testapp-{name}"))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        Ok(cmd)
    }

    fn await_ready(mut server: Process, name: &str) -> Result<Process> {
        server
            .stdout_lines()?
            .wait_for(READY_LINE, Duration::from_secs(10))
            .with_context(|| format!("test app server {name} did not start; see its log"))?;
        Ok(server)
    }

    /// `serve` on the well-known ports (all addresses): echo, whoami, sink, HTTP and gRPC.
    pub fn serve(&self, name: &str) -> Command {
        self.serve_with(name, &ServeOpts::default())
    }

    /// `serve` where `opts` says.
    pub fn serve_with(&self, name: &str, opts: &ServeOpts) -> Command {
        let mut cmd = self.command([
            "serve",
            "--name",
            name,
            "--bind",
            &opts.bind.to_string(),
            "--echo-port",
            &opts.echo_port.to_string(),
            "--whoami-port",
            &opts.whoami_port.to_string(),
            "--http-port",
            &opts.http_port.to_string(),
            "--grpc-port",
            &opts.grpc_port.to_string(),
        ]);
        if let Some(port) = opts.sink_port {
            cmd.args(["--sink-port", &port.to_string()]);
        }
        cmd
    }

    pub fn whoami(&self, addr: SocketAddrV4) -> Command {
        self.command(["whoami", "--addr", &addr.to_string()])
    }

    pub fn echo(&self, addr: SocketAddrV4, bytes: u64) -> Command {
        self.command([
            "echo",
            "--addr",
            &addr.to_string(),
            "--bytes",
            &bytes.to_string(),
        ])
    }

    /// `hold`: one connection; `ping` lines on stdin each do a round trip and print `ok`.
    pub fn hold(&self, addr: SocketAddrV4) -> Command {
        self.command(["hold", "--addr", &addr.to_string()])
    }

    /// `say`: sends `text` 16 times to an echo server and checks the echo.
    pub fn say(&self, addr: SocketAddrV4, text: &str) -> Command {
        self.command(["say", "--addr", &addr.to_string(), "--text", text])
    }

    pub fn concurrent(&self, addr: SocketAddrV4, connections: u32, bytes: u64) -> Command {
        self.command([
            "concurrent",
            "--addr",
            &addr.to_string(),
            "--connections",
            &connections.to_string(),
            "--bytes",
            &bytes.to_string(),
        ])
    }

    pub fn rr(&self, addr: SocketAddrV4, size: usize, duration: Duration) -> Command {
        self.command([
            "rr",
            "--addr",
            &addr.to_string(),
            "--size",
            &size.to_string(),
            "--duration-ms",
            &duration.as_millis().to_string(),
        ])
    }

    pub fn bulk(&self, sink: SocketAddrV4, duration: Duration) -> Command {
        self.command([
            "bulk",
            "--addr",
            &sink.to_string(),
            "--duration-ms",
            &duration.as_millis().to_string(),
        ])
    }
}

/// Parses the JSON line a successful client command printed last; errors carry stderr.
pub fn parse_report<T: DeserializeOwned>(output: &Output) -> Result<T> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "ambit-testapp failed ({}): stdout {:?}, stderr {:?}",
            output.status,
            stdout.trim(),
            stderr.trim()
        );
    }
    let line = stdout
        .lines()
        .last()
        .with_context(|| format!("ambit-testapp printed nothing; stderr {:?}", stderr.trim()))?;
    serde_json::from_str(line).with_context(|| format!("parsing ambit-testapp output {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_lines_name_the_server_and_the_peer() {
        let line = WhoamiLine::parse("web 10.7.1.2:40312\n").unwrap();
        assert_eq!(line.server, "web");
        assert_eq!(line.peer, "10.7.1.2:40312".parse().unwrap());
        assert!(WhoamiLine::parse("garbage").is_err());
    }

    #[test]
    fn ready_lines_list_the_bound_addresses() {
        let line = ReadyLine::parse(
            "ambit-testapp ready name=web echo=127.0.0.1:4001 http=127.0.0.1:4005\n",
        )
        .unwrap();
        assert_eq!(line.name, "web");
        assert_eq!(
            line.addr("http").unwrap(),
            "127.0.0.1:4005".parse().unwrap()
        );
        assert!(line.addr("grpc").is_err());
        assert!(ReadyLine::parse("ambit-testapp ready echo=127.0.0.1:1").is_err());
        assert!(ReadyLine::parse("hello").is_err());
    }
}
