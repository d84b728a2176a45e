//! The HBONE client: dial a peer agent over mTLS + HTTP/2, and open CONNECT streams on it.
//!
//! [`super::Pool`] decides when to dial and which connection carries a stream; this module
//! only does the I/O of one dial and one stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::headers::{forwarded_for, BAGGAGE, FORWARDED};
use super::pool::{PoolKey, PoolSettings, StreamSlot};
use super::socket_relay;
use super::stream::H2Stream;
use crate::identity::SpiffeId;
use crate::tls::{self, IdentityMismatch, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "no certificate for source identity {source_id}; has the agent obtained its SVID yet?"
    )]
    NoCertificate { source_id: SpiffeId },
    #[error("mTLS setup for {peer}")]
    TlsConfig {
        peer: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("connect to {peer} timed out; does NetworkPolicy allow port 15008?")]
    ConnectTimeout { peer: SocketAddr },
    #[error("connect to {peer}; is its node agent listening on port 15008?")]
    Connect {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {peer} timed out; does NetworkPolicy allow port 15008?")]
    HandshakeTimeout { peer: SocketAddr },
    #[error("peer {peer} presented {presented}, expected {expected}")]
    WrongIdentity {
        peer: SocketAddr,
        expected: SpiffeId,
        presented: SpiffeId,
    },
    #[error("TLS handshake with {peer} failed: {reason}")]
    Tls { peer: SocketAddr, reason: String },
    #[error("{peer} did not negotiate HTTP/2 (ALPN h2); is it an HBONE endpoint?")]
    NoHttp2 { peer: SocketAddr },
    #[error("HTTP/2 with {peer}")]
    Http2 {
        peer: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error("{peer} answered {status} to CONNECT {target}{}", hint(*status))]
    Refused {
        peer: SocketAddr,
        target: SocketAddr,
        status: StatusCode,
    },
}

fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => " (denied by the destination's authorization policy)",
        StatusCode::BAD_REQUEST => " (is the target a workload on that node?)",
        StatusCode::SERVICE_UNAVAILABLE => " (the destination pod refused or is unreachable)",
        _ => "",
    }
}

impl TunnelError {
    /// The status the peer answered, when the tunnel was refused by HTTP status.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            TunnelError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub(super) type Http2Sender = SendRequest<Bytes>;
pub(super) type Http2Connection = Connection<TlsStream<BufReader<TcpStream>>, Bytes>;

/// Opens one mTLS + HTTP/2 connection to `key.dst_node`, proving `key.source` and
/// requiring `key.dst_identity`.
pub(super) async fn dial(
    key: &PoolKey,
    own: std::sync::Arc<rustls::sign::CertifiedKey>,
    roots: std::sync::Arc<rustls::RootCertStore>,
    settings: &PoolSettings,
) -> Result<(Http2Sender, Http2Connection), TunnelError> {
    let peer = key.dst_node;
    let config = tls::client_config(own, roots, key.dst_identity.clone())
        .map_err(|source| TunnelError::TlsConfig { peer, source })?;
    let tcp = match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(peer)).await {
        Err(_) => return Err(TunnelError::ConnectTimeout { peer }),
        Ok(Err(source)) => return Err(TunnelError::Connect { peer, source }),
        Ok(Ok(tcp)) => tcp,
    };
    // Nagle would hold back small writes of interactive protocols inside the tunnel.
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(config);
    let tcp = BufReader::with_capacity(super::TLS_READ_BUFFER, tcp);
    let handshake = connector.connect(tls::sni_for(&key.dst_identity), tcp);
    let tls = match tokio::time::timeout(settings.handshake_timeout, handshake).await {
        Err(_) => return Err(TunnelError::HandshakeTimeout { peer }),
        Ok(Err(err)) => {
            if let Some(m) = tls::mesh_rejection::<IdentityMismatch>(&err) {
                return Err(TunnelError::WrongIdentity {
                    peer,
                    expected: m.expected.clone(),
                    presented: m.presented.clone(),
                });
            }
            let reason = tls::describe_handshake_error(&err);
            return Err(TunnelError::Tls { peer, reason });
        }
        Ok(Ok(tls)) => tls,
    };
    if tls.get_ref().1.alpn_protocol() != Some(tls::ALPN_H2) {
        return Err(TunnelError::NoHttp2 { peer });
    }
    // Keepalive PINGs are sent by the pool's connection task (see `pool::drive`).
    h2::client::Builder::new()
        .enable_push(false)
        // Until the peer's SETTINGS arrive, assume it takes as many streams as we will send.
        .initial_max_send_streams(settings.max_streams_per_connection)
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(super::MAX_FRAME_SIZE)
        .max_send_buffer_size(super::MAX_SEND_BUFFER)
        .handshake(tls)
        .await
        .map_err(|source| TunnelError::Http2 { peer, source })
}

/// Why opening a stream failed, and whether the peer can have seen the request.
pub(super) struct OpenError {
    pub(super) error: TunnelError,
    /// The request never reached the peer's application (connection closing, GOAWAY, or
    /// REFUSED_STREAM), so another connection may safely carry it.
    pub(super) unprocessed: bool,
}

/// Sends `CONNECT target` on `sender` and waits for the 200.
pub(super) async fn open_stream(
    sender: Http2Sender,
    peer: SocketAddr,
    target: SocketAddr,
    forwarded: SocketAddr,
    baggage: &str,
) -> Result<H2Stream, OpenError> {
    let refused = |status| OpenError {
        error: TunnelError::Refused {
            peer,
            target,
            status,
        },
        unprocessed: false,
    };
    let mut request = Request::new(());
    *request.method_mut() = Method::CONNECT;
    // A SocketAddr always forms a valid authority (IPv6 in brackets).
    *request.uri_mut() =
        http::Uri::try_from(target.to_string()).map_err(|_| refused(StatusCode::BAD_REQUEST))?;
    let headers = request.headers_mut();
    if let Ok(value) = forwarded_for(forwarded).parse() {
        headers.insert(FORWARDED, value);
    }
    if !baggage.is_empty() {
        if let Ok(value) = baggage.parse() {
            headers.insert(BAGGAGE, value);
        }
    }
    // Before the request is queued, any failure means the peer never saw it.
    let before_sent = |source| OpenError {
        error: TunnelError::Http2 { peer, source },
        unprocessed: true,
    };
    let mut sender = sender.ready().await.map_err(before_sent)?;
    let (response, send) = sender.send_request(request, false).map_err(before_sent)?;
    let response = response.await.map_err(|source| OpenError {
        unprocessed: unprocessed(&source),
        error: TunnelError::Http2 { peer, source },
    })?;
    if response.status() != StatusCode::OK {
        return Err(refused(response.status()));
    }
    Ok(H2Stream::new(send, response.into_body()))
}

/// Whether the peer said it did not process the stream: REFUSED_STREAM, or a GOAWAY whose
/// last stream ID is below ours.
fn unprocessed(err: &h2::Error) -> bool {
    err.reason() == Some(h2::Reason::REFUSED_STREAM) || (err.is_go_away() && err.is_remote())
}

/// One tunnelled connection: bytes written here reach the target, and back.
///
/// Shutting down the write half sends END_STREAM (the target sees EOF) while reading goes on.
/// Dropping it ends the stream and frees its slot in the pooled connection.
pub struct HboneStream {
    pub(super) io: H2Stream,
    pub(super) _slot: StreamSlot,
}

impl HboneStream {
    /// Relays `socket` through the tunnel until both directions ended, frame by frame (no
    /// `AsyncRead`/`AsyncWrite` copy). Returns the bytes moved: (socket → target,
    /// target → socket), as `tokio::io::copy_bidirectional` does.
    pub async fn relay(self, socket: TcpStream) -> io::Result<(u64, u64)> {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
        let HboneStream { io, _slot } = self;
        socket_relay::relay(socket, io, &sent, &received).await?;
        Ok((sent.load(Relaxed), received.load(Relaxed)))
    }
}

impl AsyncRead for HboneStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
