//! `http`: N requests over C keep-alive HTTP/1.1 connections, or C streams on one h2c
//! connection, tallied into an `HttpReport`.
//!
//! Without `--rate` the workers send as fast as answers come back (closed loop). With
//! `--rate R`, request n is due at `n / R` seconds after the start (open loop, a fixed offered
//! load). A request whose worker was still busy when it fell due counts its latency from when
//! it was due, so a stalled answer also charges the requests queued behind it; one whose worker
//! was waiting counts from when the timer woke it (tokio's timer is late by up to a
//! millisecond, which is the client's delay, not the server's). C must be large enough to have
//! R × latency requests in flight.
//!
//! A request that fails (connect, protocol, `--timeout-ms`) counts as an error, and the
//! connection it used is dropped: the next request opens a new one. A keep-alive connection
//! the server closed while idle is replaced without counting an error.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ambit_e2e::testapp::{HttpReport, LatencyMs, LAST_BODY_LIMIT, SERVED_BY};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{HeaderArg, StepTimeout};

#[derive(Args)]
pub struct HttpArgs {
    /// `http://<host>:<port>/<path>`.
    #[arg(long)]
    url: Uri,
    #[arg(long, default_value_t = 1)]
    requests: u64,
    /// Connections (HTTP/1.1) or concurrent streams on one connection (`--http2`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// HTTP/2 with prior knowledge (h2c).
    #[arg(long)]
    http2: bool,
    /// `name: value`, repeatable; `host` also sets HTTP/2's `:authority`.
    #[arg(long = "header", value_parser = HeaderArg::parse)]
    headers: Vec<HeaderArg>,
    #[arg(long, default_value = "GET")]
    method: Method,
    #[arg(long)]
    body: Option<String>,
    /// Requests per second offered whatever the answers (open loop); as fast as answered
    /// when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    #[command(flatten)]
    timeout: StepTimeout,
}

pub fn run(args: HttpArgs) -> Result<ExitCode> {
    let plan = Arc::new(Plan::new(&args)?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let tickets = Arc::new(AtomicU64::new(0));
    let shared_h2 = Arc::new(SharedH2::default());
    let started = Instant::now();
    super::runtime()?.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency {
            let worker = Worker {
                plan: Arc::clone(&plan),
                tally: Arc::clone(&tally),
                tickets: Arc::clone(&tickets),
            };
            if args.http2 {
                workers.spawn(worker.run_http2(Arc::clone(&shared_h2)));
            } else {
                workers.spawn(worker.run_http1());
            }
        }
        while let Some(joined) = workers.join_next().await {
            joined.context("an HTTP worker panicked")?;
        }
        anyhow::Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    super::print_report(&tally.into_report(args.requests, seconds))
}

/// The request to repeat and where to send it, checked once before any connection.
struct Plan {
    /// Where to connect: the URL's host and port.
    host: String,
    port: u16,
    /// HTTP/2's `:authority` (the `host` header when given, else the URL's).
    authority: Authority,
    path: PathAndQuery,
    method: Method,
    /// Without `host`: HTTP/1.1 adds it from `authority`.
    headers: HeaderMap,
    body: Bytes,
    requests: u64,
    /// Open loop: when each request is due.
    schedule: Option<Schedule>,
    timeout: Duration,
}

/// `--rate`: request n is due `n / rate` seconds after `start`.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

impl Plan {
    fn new(args: &HttpArgs) -> Result<Plan> {
        let url = &args.url;
        if url.scheme() != Some(&Scheme::HTTP) {
            bail!("--url {url}: only http:// is supported");
        }
        let url_authority = url
            .authority()
            .with_context(|| format!("--url {url} has no host"))?;
        let mut headers = HeaderMap::new();
        for HeaderArg { name, value } in &args.headers {
            headers.append(name.clone(), value.clone());
        }
        let authority = match headers.remove(header::HOST) {
            Some(host) => Authority::try_from(host.as_bytes())
                .with_context(|| format!("--header 'host: {host:?}' is no authority"))?,
            None => url_authority.clone(),
        };
        Ok(Plan {
            host: url_authority.host().trim_matches(['[', ']']).to_string(),
            port: url_authority.port_u16().unwrap_or(80),
            authority,
            path: url
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            method: args.method.clone(),
            headers,
            body: Bytes::from(args.body.clone().unwrap_or_default()),
            requests: args.requests,
            schedule: args.rate.map(|rate| Schedule {
                start: Instant::now(),
                rate: f64::from(rate),
            }),
            timeout: args.timeout.get(),
        })
    }

    /// HTTP/1.1 takes the path (origin form) and a `host` header; HTTP/2 the whole URI,
    /// whose authority becomes `:authority`.
    fn request(&self, http2: bool) -> Result<Request<Full<Bytes>>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.headers_mut() = self.headers.clone();
        if http2 {
            *request.uri_mut() = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(self.authority.clone())
                .path_and_query(self.path.clone())
                .build()?;
        } else {
            *request.uri_mut() = Uri::from(self.path.clone());
            request
                .headers_mut()
                .insert(header::HOST, self.authority.as_str().try_into()?);
        }
        Ok(request)
    }

    async fn connect(&self) -> Result<TokioIo<TcpStream>> {
        let target = (self.host.as_str(), self.port);
        let stream = timeout(self.timeout, TcpStream::connect(target))
            .await
            .map_err(|_| anyhow!("connecting to {}:{} timed out", self.host, self.port))?
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }

    async fn connect_http1(&self) -> Result<http1::SendRequest<Full<Bytes>>> {
        let (sender, connection) = http1::handshake(self.connect().await?).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn connect_http2(&self) -> Result<http2::SendRequest<Full<Bytes>>> {
        let io = self.connect().await?;
        let (sender, connection) =
            timeout(self.timeout, http2::handshake(TokioExecutor::new(), io))
                .await
                .map_err(|_| {
                    anyhow!(
                        "HTTP/2 handshake with {}:{} timed out",
                        self.host,
                        self.port
                    )
                })??;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Waits for the response and its whole body, within the step timeout; the latency
    /// counts from `started`.
    async fn exchange(
        &self,
        started: Instant,
        response: impl std::future::Future<Output = hyper::Result<Response<Incoming>>>,
    ) -> Result<Answer> {
        let read = async {
            let response = response.await?;
            let status = response.status().as_u16();
            let server = response.headers().get(SERVED_BY).map_or_else(
                || "-".to_string(),
                |v| String::from_utf8_lossy(v.as_bytes()).into(),
            );
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(Answer {
                status,
                server,
                body,
                latency: started.elapsed(),
            })
        };
        timeout(self.timeout, read)
            .await
            .map_err(|_| anyhow!("no complete response within {:?}", self.timeout))?
    }
}

struct Answer {
    status: u16,
    server: String,
    body: Bytes,
    latency: Duration,
}

/// One of the C request loops; they share the request tickets and the tally.
struct Worker {
    plan: Arc<Plan>,
    tally: Arc<Mutex<Tally>>,
    tickets: Arc<AtomicU64>,
}

impl Worker {
    /// The next request's start: now (closed loop), or once it is due (open loop: when it was
    /// due if that has passed already, else when the timer woke us); `None` when every request
    /// has been taken.
    async fn take_ticket(&self) -> Option<Instant> {
        let n = self.tickets.fetch_add(1, Ordering::Relaxed);
        if n >= self.plan.requests {
            return None;
        }
        Some(match self.plan.schedule {
            Some(schedule) => {
                let due = schedule.due(n);
                if Instant::now() >= due {
                    return Some(due);
                }
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            None => Instant::now(),
        })
    }

    fn record(&self, outcome: Result<Answer>) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.record(outcome);
    }

    /// Requests one at a time on this worker's own keep-alive connection.
    async fn run_http1(self) {
        let mut connection: Option<http1::SendRequest<Full<Bytes>>> = None;
        while let Some(started) = self.take_ticket().await {
            if let Some(sender) = &mut connection {
                if !matches!(timeout(self.plan.timeout, sender.ready()).await, Ok(Ok(()))) {
                    connection = None;
                }
            }
            let outcome = async {
                let sender = match &mut connection {
                    Some(sender) => sender,
                    None => connection.insert(self.plan.connect_http1().await?),
                };
                let request = self.plan.request(false)?;
                sender.ready().await?;
                self.plan
                    .exchange(started, sender.send_request(request))
                    .await
            }
            .await;
            if outcome.is_err() {
                connection = None;
            }
            self.record(outcome);
        }
    }

    /// One stream at a time on the connection all workers share.
    async fn run_http2(self, shared: Arc<SharedH2>) {
        while let Some(started) = self.take_ticket().await {
            let mut used = None;
            let outcome = async {
                let (generation, mut sender) = shared.get(&self.plan).await?;
                used = Some(generation);
                let request = self.plan.request(true)?;
                sender.ready().await?;
                self.plan
                    .exchange(started, sender.send_request(request))
                    .await
            }
            .await;
            if let (Err(_), Some(generation)) = (&outcome, used) {
                shared.discard(generation).await;
            }
            self.record(outcome);
        }
    }
}

/// The one h2c connection, replaced after a failed request; numbered so that a failure on
/// an old connection does not drop its replacement.
#[derive(Default)]
struct SharedH2 {
    current: tokio::sync::Mutex<Option<(u64, http2::SendRequest<Full<Bytes>>)>>,
    opened: AtomicU64,
}

impl SharedH2 {
    async fn get(&self, plan: &Plan) -> Result<(u64, http2::SendRequest<Full<Bytes>>)> {
        // Connecting under the lock: the other workers wait for this connection rather
        // than open their own.
        let mut current = self.current.lock().await;
        if let Some((generation, sender)) = &*current {
            if !sender.is_closed() {
                return Ok((*generation, sender.clone()));
            }
        }
        *current = None;
        let sender = plan.connect_http2().await?;
        let generation = self.opened.fetch_add(1, Ordering::Relaxed);
        *current = Some((generation, sender.clone()));
        Ok((generation, sender))
    }

    async fn discard(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    servers: BTreeMap<String, u64>,
    errors: u64,
    first_error: Option<String>,
    latencies_ms: Vec<f64>,
    last_body: Option<Bytes>,
}

impl Tally {
    fn record(&mut self, outcome: Result<Answer>) {
        match outcome {
            Ok(answer) => {
                if (200..300).contains(&answer.status) {
                    self.ok += 1;
                }
                *self.statuses.entry(answer.status).or_default() += 1;
                *self.servers.entry(answer.server).or_default() += 1;
                self.latencies_ms
                    .push(answer.latency.as_secs_f64() * 1000.0);
                self.last_body = Some(answer.body);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn into_report(mut self, requests: u64, seconds: f64) -> HttpReport {
        self.latencies_ms.sort_by(f64::total_cmp);
        HttpReport {
            requests,
            ok: self.ok,
            statuses: self.statuses,
            servers: self.servers,
            errors: self.errors,
            first_error: self.first_error,
            latency_ms: LatencyMs {
                p50: percentile(&self.latencies_ms, 50),
                p99: percentile(&self.latencies_ms, 99),
                max: self.latencies_ms.last().copied().unwrap_or(0.0),
            },
            last_body: self.last_body.map(|body| truncated(&body)),
            seconds,
        }
    }
}

/// Nearest-rank percentile of sorted samples; 0 without samples.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The body as text, cut to at most `LAST_BODY_LIMIT` bytes on a character boundary.
fn truncated(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let mut end = text.len().min(LAST_BODY_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests;
