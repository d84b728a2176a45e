//! The HBONE server (port 15008): mTLS, HTTP/2, and one relayed CONNECT per stream.
//!
//! Each failure stays where it happened: a bad handshake drops its TCP connection, a bad
//! stream gets its status, and neither touches other connections or streams.
//! # Invariants
//! - 200 is sent only after [`Inbound::connect`] returned a connected destination.
//! - every refusal bumps one [`ServerStats`] counter and writes one log line.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info, warn};

use super::headers::{parse_forwarded_for, BAGGAGE, FORWARDED};
use super::keepalive;
use super::relay::{deliver, TunnelBytes, Upstream};
use super::stats::{add, bump, drop_one, ServerStats};
use super::stream::H2Stream;
use crate::identity::SpiffeId;
use crate::tls;

/// A caller's request to be connected to `target`, as the destination agent decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The identity the caller proved with its client certificate.
    pub caller: SpiffeId,
    /// The TCP peer of the tunnel (the source node's agent, or a waypoint).
    pub peer: SocketAddr,
    /// The destination the caller asked for (`CONNECT <ip:port>`).
    pub target: SocketAddr,
    /// The original client address from `forwarded: for=…`, if sent (port 0 if only the IP).
    pub forwarded_for: Option<SocketAddr>,
    /// The `baggage` header describing the source workload, if sent.
    pub baggage: Option<String>,
}

/// Why a CONNECT is not relayed; each maps to the status HBONE peers expect.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 401: authorization policy denies the caller.
    #[error("denied by policy: {0}")]
    Denied(String),
    /// 400: the target is not something this agent delivers to (e.g. not on this node).
    #[error("bad target: {0}")]
    BadTarget(String),
    /// 503: the destination refused the connection or could not be reached.
    #[error("destination unreachable")]
    Unreachable(#[source] io::Error),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Denied(_) => StatusCode::UNAUTHORIZED,
            Refusal::BadTarget(_) => StatusCode::BAD_REQUEST,
            Refusal::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The destination agent's decision for each CONNECT: check policy, then connect to the target.
///
/// Any `Fn(ConnectRequest) -> impl Future<Output = Result<Upstream, Refusal>>` is an `Inbound`.
pub trait Inbound: Send + Sync + 'static {
    /// Usually the connected destination socket; see [`Upstream`].
    type Upstream: Upstream;

    /// Decides on `request` and, if allowed, returns the connected destination.
    fn connect(
        &self,
        request: ConnectRequest,
    ) -> impl Future<Output = Result<Self::Upstream, Refusal>> + Send;

    /// Called once a relayed connection is over (metrics, access records).
    fn closed(&self, _request: &ConnectRequest, _bytes: TunnelBytes) {}

    /// The certificate to present to a client that sent no server name, on a connection
    /// addressed to `local`. Istio's ztunnel dials the destination pod's own address on 15008
    /// and names no server: the pod's identity is the one it expects. `None`: the server's
    /// usual resolver decides (and, without a name, usually finds nothing).
    fn certificate_at(&self, _local: std::net::IpAddr) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

impl<F, Fut, U> Inbound for F
where
    F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<U, Refusal>> + Send,
    U: Upstream,
{
    type Upstream = U;

    fn connect(&self, request: ConnectRequest) -> impl Future<Output = Result<U, Refusal>> + Send {
        self(request)
    }
}

/// Tunables of the HBONE server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// A connection that has not finished its TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// HTTP/2 streams (tunnelled connections) one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// HTTP/2 PING interval; a peer silent for `keepalive_timeout` after a PING is dropped.
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// HTTP/2 flow-control windows: bytes in flight per stream and per connection.
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1000,
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_timeout: Duration::from_secs(10),
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
        }
    }
}

/// Serves HBONE on an accepted listener (see the module docs).
pub struct HboneServer<I> {
    shared: Arc<Shared<I>>,
}

impl<I> Clone for HboneServer<I> {
    fn clone(&self) -> Self {
        HboneServer {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<I> {
    tls: Arc<rustls::ServerConfig>,
    inbound: I,
    settings: ServerSettings,
    stats: Arc<ServerStats>,
}

/// First byte of a TLS handshake record; anything else on 15008 is not mTLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

impl<I: Inbound> HboneServer<I> {
    /// `tls` is [`tls::server_config`]; `inbound` decides on each CONNECT.
    pub fn new(tls: Arc<rustls::ServerConfig>, inbound: I, settings: ServerSettings) -> Self {
        HboneServer {
            shared: Arc::new(Shared {
                tls,
                inbound,
                settings,
                stats: Arc::new(ServerStats::default()),
            }),
        }
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.shared.stats.clone()
    }

    /// Accepts connections forever, each served on its own task.
    pub async fn run(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let server = self.clone();
                    tokio::spawn(async move { server.serve_connection(tcp, peer).await });
                }
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning; accepted connections live on.
                    warn!(error = %err, "HBONE accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serves one accepted TCP connection to its end.
    pub async fn serve_connection(&self, tcp: TcpStream, peer: SocketAddr) {
        let stats = &self.shared.stats;
        bump(&stats.connections_accepted);
        bump(&stats.connections_active);
        self.serve_tls(tcp, peer).await;
        drop_one(&stats.connections_active);
    }

    async fn serve_tls(&self, tcp: TcpStream, peer: SocketAddr) {
        let shared = &self.shared;
        let stats = &shared.stats;
        let timeout = shared.settings.handshake_timeout;
        // Nagle would hold back small writes of interactive protocols inside the tunnel.
        let _ = tcp.set_nodelay(true);
        let handshake = async {
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(0) => return Err(Early::Closed),
                Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                    return Err(Early::Plaintext(first[0]))
                }
                Ok(_) => {}
                Err(err) => return Err(Early::Io(err)),
            }
            let local = tcp.local_addr().ok();
            let tcp = BufReader::with_capacity(super::TLS_READ_BUFFER, tcp);
            let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = hello.await.map_err(Early::Tls)?;
            let config = match start.client_hello().server_name() {
                Some(_) => Arc::clone(&shared.tls),
                None => self.config_without_name(local),
            };
            start.into_stream(config).await.map_err(Early::Tls)
        };
        let tls = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Err(_) => {
                bump(&stats.handshake_timeouts);
                warn!(%peer, ?timeout, "HBONE: TLS handshake did not finish in time; connection dropped");
                return;
            }
            Ok(Err(Early::Closed)) => {
                debug!(%peer, "HBONE: connection closed before any byte");
                return;
            }
            Ok(Err(Early::Plaintext(byte))) => {
                bump(&stats.plaintext_refused);
                warn!(%peer, first_byte = byte, "HBONE: plaintext on the mTLS port refused (the peer is not speaking TLS; is it enrolled in the mesh?)");
                return;
            }
            Ok(Err(Early::Io(err))) => {
                bump(&stats.handshakes_failed);
                warn!(%peer, error = %err, "HBONE: connection failed before the TLS handshake");
                return;
            }
            Ok(Err(Early::Tls(err))) => {
                let reason = tls::describe_handshake_error(&err);
                if is_certificate_problem(&err) {
                    bump(&stats.client_certs_rejected);
                    warn!(%peer, %reason, "HBONE: client certificate refused");
                } else {
                    bump(&stats.handshakes_failed);
                    warn!(%peer, %reason, "HBONE: TLS handshake failed");
                }
                return;
            }
        };
        let caller = match tls::peer_identity(tls.get_ref().1) {
            Ok(caller) => caller,
            Err(err) => {
                bump(&stats.client_certs_rejected);
                warn!(%peer, error = %err, "HBONE: client identity unreadable");
                return;
            }
        };
        debug!(%peer, %caller, "HBONE: mTLS connection established");
        self.serve_http2(tls, peer, caller).await;
    }

    /// The TLS config for a client that named no server: the certificate of the workload the
    /// connection is addressed to, when the inbound side has one.
    fn config_without_name(&self, local: Option<SocketAddr>) -> Arc<rustls::ServerConfig> {
        let shared = &self.shared;
        match local.and_then(|local| shared.inbound.certificate_at(local.ip())) {
            Some(key) => {
                let mut config = (*shared.tls).clone();
                config.cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
                Arc::new(config)
            }
            None => Arc::clone(&shared.tls),
        }
    }

    async fn serve_http2<T>(&self, io: T, peer: SocketAddr, caller: SpiffeId)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let settings = &self.shared.settings;
        let handshake = h2::server::Builder::new()
            .max_concurrent_streams(settings.max_concurrent_streams)
            .initial_window_size(settings.stream_window)
            .initial_connection_window_size(settings.connection_window)
            .max_frame_size(super::MAX_FRAME_SIZE)
            .max_send_buffer_size(super::MAX_SEND_BUFFER)
            .handshake::<_, Bytes>(io);
        let mut connection = match handshake.await {
            Ok(connection) => connection,
            Err(err) => return self.http2_failed(peer, &err),
        };
        let silent = keepalive::until_silent(
            connection.ping_pong(),
            settings.keepalive_interval,
            settings.keepalive_timeout,
        );
        let accept = async {
            while let Some(next) = connection.accept().await {
                let (request, respond) = match next {
                    Ok(stream) => stream,
                    Err(err) => return Err(err),
                };
                let server = self.clone();
                let caller = caller.clone();
                tokio::spawn(async move { server.answer(request, respond, peer, caller).await });
            }
            Ok(())
        };
        tokio::select! {
            result = accept => {
                if let Err(err) = result {
                    self.http2_failed(peer, &err);
                }
            }
            () = silent => {
                bump(&self.shared.stats.http2_errors);
                warn!(%peer, "HBONE: peer stopped answering PINGs; connection dropped");
            }
        }
    }

    fn http2_failed(&self, peer: SocketAddr, err: &h2::Error) {
        // A peer closing its connection (GOAWAY NO_ERROR, or EOF) is no error.
        if err.reason() == Some(h2::Reason::NO_ERROR) || is_eof(err) {
            debug!(%peer, error = %err, "HBONE: HTTP/2 connection closed by the peer");
            return;
        }
        bump(&self.shared.stats.http2_errors);
        warn!(%peer, error = %err, "HBONE: HTTP/2 connection ended with an error");
    }

    /// Answers one stream: decide, connect, and only then 200 and relay.
    async fn answer(
        &self,
        req: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        peer: SocketAddr,
        caller: SpiffeId,
    ) {
        let stats = &self.shared.stats;
        let Some((request, upstream)) = self.decide(&req, peer, caller, &mut respond).await else {
            return;
        };
        let send = match respond.send_response(status(StatusCode::OK), false) {
            Ok(send) => send,
            Err(err) => {
                debug!(%peer, target = %request.target, error = %err, "HBONE: caller left before its 200");
                return;
            }
        };
        bump(&stats.streams_accepted);
        let stream = H2Stream::new(send, req.into_body());
        let (bytes, result) = deliver(stream, upstream).await;
        add(&stats.bytes_from_callers, bytes.from_caller);
        add(&stats.bytes_to_callers, bytes.to_caller);
        let caller = &request.caller;
        let target = request.target;
        match result {
            Ok(()) => {
                info!(%peer, %caller, %target, from_caller = bytes.from_caller, to_caller = bytes.to_caller, "HBONE: connection closed")
            }
            Err(err) => {
                info!(%peer, %caller, %target, from_caller = bytes.from_caller, to_caller = bytes.to_caller, error = %err, "HBONE: connection ended with an error")
            }
        }
        self.shared.inbound.closed(&request, bytes);
    }

    /// Checks the request and asks the [`Inbound`] for its destination; answers refusals.
    async fn decide(
        &self,
        req: &Request<RecvStream>,
        peer: SocketAddr,
        caller: SpiffeId,
        respond: &mut SendResponse<Bytes>,
    ) -> Option<(ConnectRequest, I::Upstream)> {
        let stats = &self.shared.stats;
        let mut refuse = |code: StatusCode| {
            // The caller may already be gone; then nobody is left to tell.
            let _ = respond.send_response(status(code), true);
            None
        };
        if req.method() != Method::CONNECT {
            bump(&stats.streams_bad_request);
            warn!(%peer, %caller, method = %req.method(), "HBONE: refused (400), only CONNECT is tunnelled");
            return refuse(StatusCode::BAD_REQUEST);
        }
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let Some(target) = authority
            .as_deref()
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            bump(&stats.streams_bad_request);
            warn!(%peer, %caller, ?authority, "HBONE: refused (400), CONNECT authority is not ip:port");
            return refuse(StatusCode::BAD_REQUEST);
        };
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request = ConnectRequest {
            caller,
            peer,
            target,
            forwarded_for: header(FORWARDED).as_deref().and_then(parse_forwarded_for),
            baggage: header(BAGGAGE),
        };
        match self.shared.inbound.connect(request.clone()).await {
            Ok(upstream) => Some((request, upstream)),
            Err(refusal) => {
                let code = refusal.status();
                bump(match refusal {
                    Refusal::Denied(_) => &stats.streams_denied,
                    Refusal::BadTarget(_) => &stats.streams_bad_request,
                    Refusal::Unreachable(_) => &stats.streams_unreachable,
                });
                let reason = error_chain(&refusal);
                warn!(%peer, caller = %request.caller, %target, status = code.as_u16(), %reason, "HBONE: CONNECT refused");
                refuse(code)
            }
        }
    }
}

/// Whether the connection ended because the peer's TCP side went away without a GOAWAY.
fn is_eof(err: &h2::Error) -> bool {
    err.get_io().is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        )
    })
}

enum Early {
    Closed,
    Plaintext(u8),
    Io(io::Error),
    Tls(io::Error),
}

fn is_certificate_problem(err: &io::Error) -> bool {
    matches!(
        tls::rustls_error(err),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

fn status(code: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = code;
    response
}

/// `err: source: source…`, for one-line logs.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}
