//! How the waypoint reaches an endpoint: the [`Connector`] trait and plain TCP.
//!
//! The HBONE front end will provide a Connector that tunnels to the endpoint's node agent;
//! tests and the local runner use [`TcpConnector`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A bidirectional byte stream: a TCP socket, an HBONE stream, a TLS session.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;

/// Opens a byte stream to an endpoint (pod address and target port).
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, endpoint: SocketAddr) -> ConnectFuture;
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
