//! Carrying an accepted tunnel stream to its destination, counting the caller's bytes.
//!
//! A node agent relays the stream into a pod's socket; a waypoint serves HTTP on it directly.
//! Both are an [`Upstream`]: the server hands it the stream once the caller has its 200, and
//! the bytes are counted on the caller's side of the stream, so every kind of delivery keeps
//! the same [`TunnelBytes`] without a copy through a pipe.
//!
//! A pod's socket is relayed frame by frame (`socket_relay`): backpressure (it only reads
//! what it can send), half-close (EOF on one side becomes a shutdown of the other's write
//! half), and counts that survive a relay ending in an error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::socket_relay;
use super::stream::H2Stream;

/// An accepted CONNECT stream, as the HBONE server hands it to its [`Upstream`].
pub type TunnelStream = H2Stream;

/// Bytes one tunnelled connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelBytes {
    /// From the caller (source workload) to the destination.
    pub from_caller: u64,
    /// From the destination back to the caller.
    pub to_caller: u64,
}

/// Where an accepted stream goes: what [`super::Inbound::connect`] returned, given the stream
/// once the caller has its 200. A connected socket (a pod's) is relayed.
pub trait Upstream: Send + 'static {
    /// Carries `stream` until both directions are closed; the server reads the caller's byte
    /// counts off `stream` afterwards, also when this ends in an error.
    fn deliver(
        self,
        stream: CountedCaller<TunnelStream>,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

impl Upstream for TcpStream {
    async fn deliver(self, stream: CountedCaller<TunnelStream>) -> io::Result<()> {
        let CountedCaller { inner, counts } = stream;
        socket_relay::relay(self, inner, &counts.to_caller, &counts.from_caller).await
    }
}

/// Delivers `stream` to `upstream`, counting the caller's bytes.
pub(super) async fn deliver<U: Upstream>(
    stream: TunnelStream,
    upstream: U,
) -> (TunnelBytes, io::Result<()>) {
    let counts = Arc::new(Counts::default());
    let stream = CountedCaller {
        inner: stream,
        counts: counts.clone(),
    };
    let result = upstream.deliver(stream).await;
    (counts.bytes(), result)
}

#[derive(Default)]
struct Counts {
    from_caller: AtomicU64,
    to_caller: AtomicU64,
}

impl Counts {
    fn bytes(&self) -> TunnelBytes {
        TunnelBytes {
            from_caller: self.from_caller.load(Ordering::Relaxed),
            to_caller: self.to_caller.load(Ordering::Relaxed),
        }
    }
}

/// The caller's side of a tunnel: reads are bytes from the caller, writes bytes to it.
pub struct CountedCaller<T> {
    inner: T,
    counts: Arc<Counts>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedCaller<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        self.counts.from_caller.fetch_add(n, Ordering::Relaxed);
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedCaller<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counts
                .to_caller
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
