//! The HBONE client: dial a peer agent over mTLS + HTTP/2, and open CONNECT streams on it.
//!
//! [`super::Pool`] decides when to dial and which connection carries a stream; this module
//! only does the I/O of one dial and one stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::{Connection, SendRequest};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::headers::{forwarded_for, BAGGAGE, FORWARDED};
use super::pool::{PoolKey, PoolSettings, StreamSlot};
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
        source: hyper::Error,
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

pub(super) type Http2Sender = SendRequest<Empty<Bytes>>;
pub(super) type Http2Connection =
    Connection<TokioIo<TlsStream<TcpStream>>, Empty<Bytes>, TokioExecutor>;

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
    let mut http2 = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .keep_alive_while_idle(true)
        // Until the peer's SETTINGS arrive, assume it takes as many streams as we will send.
        .initial_max_send_streams(settings.max_streams_per_connection)
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(super::MAX_FRAME_SIZE);
    http2
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|source| TunnelError::Http2 { peer, source })
}

/// Sends `CONNECT target` on `sender` and waits for the 200 and the upgraded stream.
pub(super) async fn open_stream(
    sender: &mut Http2Sender,
    peer: SocketAddr,
    target: SocketAddr,
    forwarded: SocketAddr,
    baggage: &str,
) -> Result<Upgraded, TunnelError> {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::CONNECT;
    // A SocketAddr always forms a valid authority (IPv6 in brackets).
    *request.uri_mut() =
        http::Uri::try_from(target.to_string()).map_err(|_| TunnelError::Refused {
            peer,
            target,
            status: StatusCode::BAD_REQUEST,
        })?;
    let headers = request.headers_mut();
    if let Ok(value) = forwarded_for(forwarded).parse() {
        headers.insert(FORWARDED, value);
    }
    if !baggage.is_empty() {
        if let Ok(value) = baggage.parse() {
            headers.insert(BAGGAGE, value);
        }
    }
    let http2 = |source| TunnelError::Http2 { peer, source };
    let response = sender.send_request(request).await.map_err(http2)?;
    if response.status() != StatusCode::OK {
        return Err(TunnelError::Refused {
            peer,
            target,
            status: response.status(),
        });
    }
    hyper::upgrade::on(response).await.map_err(http2)
}

/// One tunnelled connection: bytes written here reach the target, and back.
///
/// Shutting down the write half sends END_STREAM (the target sees EOF) while reading goes on.
/// Dropping it ends the stream and frees its slot in the pooled connection.
pub struct HboneStream {
    pub(super) io: TokioIo<Upgraded>,
    pub(super) _slot: StreamSlot,
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
