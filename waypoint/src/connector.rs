//! How the waypoint reaches an endpoint: the [`Connector`] trait and plain TCP.
//!
//! [`crate::hbone::HboneConnector`] tunnels to the endpoint's node agent; tests and the local
//! runner use [`TcpConnector`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::model::Caller;

/// A bidirectional byte stream: a TCP socket, an HBONE stream, a TLS session.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;

/// Opens a byte stream to an endpoint (pod address and target port).
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, endpoint: SocketAddr) -> ConnectFuture;

    /// Opens a stream on behalf of `caller` (the HBONE connector names the caller to the
    /// endpoint's node agent). Defaults to [`Connector::connect`].
    fn connect_for(&self, endpoint: SocketAddr, caller: Option<&Caller>) -> ConnectFuture {
        let _ = caller;
        self.connect(endpoint)
    }

    /// Whether a stream opened for one caller must not carry another caller's requests
    /// (because it names its caller). If so, pooled HTTP connections are kept per caller.
    fn per_caller(&self) -> bool {
        false
    }
}

/// Plain TCP with a connect timeout and `TCP_NODELAY`.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    pub connect_timeout: Duration,
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector {
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, endpoint: SocketAddr) -> ConnectFuture {
        let limit = self.connect_timeout;
        Box::pin(async move {
            let stream = tokio::time::timeout(limit, TcpStream::connect(endpoint))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}
