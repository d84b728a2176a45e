//! The test app's HTTP, gRPC and WebSocket side: ports, command lines and reports.
//!
//! Tests of the waypoint need L7 traffic whose outcome they can read back: which server
//! answered (`x-served-by`), with what status, how often. The servers live in `serve`; the
//! clients (`http`, `grpc`, `ws`) print one of the reports below as a JSON line and exit 0
//! whenever they printed one, so a test reads failures from the report, not the exit code.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::TestApp;

/// Port of the HTTP server: HTTP/1.1 and h2c (prior knowledge) on one port, WebSocket on `/ws`.
pub const HTTP_PORT: u16 = 8090;
/// Port of the gRPC server (`ambit.testapp.v1.Echo`, tests/proto/testapp.proto).
pub const GRPC_PORT: u16 = 8091;
/// Response header (HTTP) and response metadata (gRPC) naming the server that answered.
pub const SERVED_BY: &str = "x-served-by";
/// `last_body` in [`HttpReport`] is cut to this many bytes.
pub const LAST_BODY_LIMIT: usize = 4096;

/// What the HTTP server answers on every path but `/hits`, `/ws` and `/status/<code>`: the
/// request as it arrived, after any proxy in between.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEcho {
    /// The `--name` of the server that answered.
    pub server: String,
    pub method: String,
    /// Path with query, e.g. `/a?b=c`.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Lower-case names; repeated headers joined with `", "`. Over HTTP/2 the authority is
    /// no header: see `authority`.
    pub headers: BTreeMap<String, String>,
    /// HTTP/2's `:authority`, or else HTTP/1.1's `host` header.
    #[serde(default)]
    pub authority: Option<String>,
    /// Length of the request body as received (after de-chunking).
    #[serde(default)]
    pub body_bytes: u64,
    /// The client address the server saw (`ip:port`).
    #[serde(default)]
    pub peer: String,
}

/// `/hits`: what one HTTP server received, `/hits` requests excluded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitCounts {
    pub total: u64,
    /// Keyed by path without the query.
    pub by_path: BTreeMap<String, u64>,
    /// TCP connections that carried at least one counted request: N keep-alive HTTP/1.1
    /// connections count N, one multiplexed HTTP/2 connection counts 1.
    #[serde(default)]
    pub connections: u64,
}

/// Latency of the requests that got a response (any status), in milliseconds, to the end of
/// the response body: from sending the request (connecting not included), or with a `rate`
/// from when the request was due if it had to wait for a busy worker (waiting for a
/// connection included). All zero when no request got a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// `http`'s result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpReport {
    /// Requests attempted (`--requests`).
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses by `x-served-by`; `"-"` counts responses without it.
    pub servers: BTreeMap<String, u64>,
    /// Requests that got no response: connect, protocol or timeout errors.
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency_ms: LatencyMs,
    /// Body of the response that completed last, cut to [`LAST_BODY_LIMIT`] bytes.
    pub last_body: Option<String>,
    /// Wall time of the whole run, from before the first connection to the last answer.
    #[serde(default)]
    pub seconds: f64,
}

impl HttpReport {
    /// Responses (any status) per second of the run; 0 when the run took no time.
    pub fn answered_per_s(&self) -> f64 {
        let answered: u64 = self.statuses.values().sum();
        if self.seconds > 0.0 {
            answered as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The fraction of responses `server` answered (0 when there were none).
    pub fn share_of(&self, server: &str) -> f64 {
        let responses: u64 = self.servers.values().sum();
        if responses == 0 {
            return 0.0;
        }
        self.servers.get(server).copied().unwrap_or(0) as f64 / responses as f64
    }

    /// `last_body` read as the server's [`HttpEcho`].
    pub fn last_echo(&self) -> Result<HttpEcho> {
        let body = self
            .last_body
            .as_deref()
            .with_context(|| format!("no response body in {self:?}"))?;
        serde_json::from_str(body).with_context(|| format!("last body {body:?} is not an echo"))
    }

    /// `last_body` read as the server's [`HitCounts`] (after a request to `/hits`).
    pub fn last_hits(&self) -> Result<HitCounts> {
        let body = self
            .last_body
            .as_deref()
            .with_context(|| format!("no response body in {self:?}"))?;
        serde_json::from_str(body).with_context(|| format!("last body {body:?} is not /hits"))
    }
}

/// `http`'s options beyond the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOpts {
    pub requests: u64,
    /// HTTP/1.1: this many keep-alive connections, one request at a time on each. HTTP/2:
    /// this many streams at a time on one connection.
    pub concurrency: u32,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Extra request headers. `host` sets HTTP/2's `:authority` as well.
    pub headers: Vec<(String, String)>,
    /// `GET` when `None`.
    pub method: Option<String>,
    pub body: Option<String>,
    /// Requests per second offered whatever the answers (open loop); as fast as answered
    /// when `None`.
    pub rate: Option<u32>,
}

impl Default for HttpOpts {
    fn default() -> Self {
        HttpOpts {
            requests: 1,
            concurrency: 1,
            http2: false,
            headers: Vec::new(),
            method: None,
            body: None,
            rate: None,
        }
    }
}

/// Which method of `ambit.testapp.v1.Echo` `grpc` calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrpcCall {
    Unary {
        message: String,
    },
    /// `ServerStream`, asking for `count` replies.
    Stream {
        message: String,
        count: u32,
    },
}

/// `grpc`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcReport {
    /// The call ended with status OK (for a stream: after every reply).
    pub ok: bool,
    /// The status code's name as tonic spells it (`Unavailable`, `PermissionDenied`,
    /// `DeadlineExceeded`, …) when not ok.
    pub code: Option<String>,
    /// `x-served-by` from the response metadata.
    pub server: Option<String>,
    /// Each reply's `message`, in order (also the replies before a failure).
    pub replies: Vec<String>,
    /// Each reply's `index`, in order.
    pub indices: Vec<u32>,
    /// The status message when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ws`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsReport {
    /// Every message got its reply.
    pub ok: bool,
    /// The replies, in order (text as is, binary read as UTF-8).
    pub replies: Vec<String>,
    pub error: Option<String>,
}

impl TestApp {
    /// `http`: `opts.requests` requests to `url` (`http://ip:port/path`). Every client bounds
    /// each step by `--timeout-ms` (10 s); append it to the command to change that.
    pub fn http(&self, url: &str, opts: &HttpOpts) -> Command {
        let mut cmd = self.command([
            "http",
            "--url",
            url,
            "--requests",
            &opts.requests.to_string(),
            "--concurrency",
            &opts.concurrency.to_string(),
        ]);
        if opts.http2 {
            cmd.arg("--http2");
        }
        for (name, value) in &opts.headers {
            cmd.arg("--header").arg(format!("{name}: {value}"));
        }
        if let Some(method) = &opts.method {
            cmd.args(["--method", method]);
        }
        if let Some(body) = &opts.body {
            cmd.args(["--body", body]);
        }
        if let Some(rate) = opts.rate {
            cmd.args(["--rate", &rate.to_string()]);
        }
        cmd
    }

    /// `grpc`: one call to the Echo service at `addr`, with `headers` as request metadata
    /// (`host` sets the `:authority`).
    pub fn grpc(
        &self,
        addr: SocketAddrV4,
        headers: &[(String, String)],
        call: GrpcCall,
    ) -> Command {
        let mut cmd = self.command(["grpc", "--addr", &addr.to_string()]);
        for (name, value) in headers {
            cmd.arg("--header").arg(format!("{name}: {value}"));
        }
        match call {
            GrpcCall::Unary { message } => cmd.args(["--unary", "--message", &message]),
            GrpcCall::Stream { message, count } => {
                cmd.args(["--stream", &count.to_string(), "--message", &message])
            }
        };
        cmd
    }

    /// `ws`: sends `message` `count` times over one WebSocket to `url` (`ws://ip:port/ws`)
    /// and reads a reply to each.
    pub fn ws(&self, url: &str, message: &str, count: u32) -> Command {
        self.command([
            "ws",
            "--url",
            url,
            "--message",
            message,
            "--count",
            &count.to_string(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_survive_the_json_line() {
        let report = HttpReport {
            requests: 3,
            ok: 1,
            statuses: BTreeMap::from([(200, 1), (503, 2)]),
            servers: BTreeMap::from([("web".to_string(), 3)]),
            errors: 0,
            first_error: None,
            latency_ms: LatencyMs::default(),
            last_body: None,
            seconds: 0.5,
        };
        let line = serde_json::to_string(&report).unwrap();
        let back: HttpReport = serde_json::from_str(&line).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.share_of("web"), 1.0);
        assert_eq!(back.share_of("other"), 0.0);
        assert_eq!(back.answered_per_s(), 6.0);
    }

    #[test]
    fn http_command_lines_carry_every_option() {
        let app = TestApp::at("/bin/ambit-testapp");
        let opts = HttpOpts {
            requests: 5,
            http2: true,
            headers: vec![("x-user".to_string(), "alice".to_string())],
            method: Some("POST".to_string()),
            body: Some("hi".to_string()),
            rate: Some(500),
            ..HttpOpts::default()
        };
        let cmd = app.http("http://10.1.1.2:8090/", &opts);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "http",
                "--url",
                "http://10.1.1.2:8090/",
                "--requests",
                "5",
                "--concurrency",
                "1",
                "--http2",
                "--header",
                "x-user: alice",
                "--method",
                "POST",
                "--body",
                "hi",
                "--rate",
                "500"
            ]
        );
    }
}
