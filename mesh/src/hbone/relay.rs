//! Relaying a tunnelled stream and its destination both ways, counting bytes.
//!
//! `copy_bidirectional` gives backpressure (it only reads what it can write) and half-close
//! (EOF on one side becomes a shutdown of the other's write half); the counting wrapper keeps
//! the byte counts even when the relay ends in an error.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes moved per read/write on each side of a relay.
pub const RELAY_BUFFER: usize = 256 * 1024;

/// Bytes one tunnelled connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelBytes {
    /// From the caller (source workload) to the destination.
    pub from_caller: u64,
    /// From the destination back to the caller.
    pub to_caller: u64,
}

/// Relays `caller` ↔ `destination` until both directions are closed.
pub(super) async fn relay<C, D>(caller: &mut C, destination: D) -> (TunnelBytes, io::Result<()>)
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    D: AsyncRead + AsyncWrite + Unpin,
{
    let counts = Arc::new(Counts::default());
    let mut destination = Counted {
        inner: destination,
        counts: counts.clone(),
    };
    let result = tokio::io::copy_bidirectional_with_sizes(
        caller,
        &mut destination,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await
    .map(|_| ());
    let bytes = TunnelBytes {
        from_caller: counts.written.load(Ordering::Relaxed),
        to_caller: counts.read.load(Ordering::Relaxed),
    };
    (bytes, result)
}

#[derive(Default)]
struct Counts {
    read: AtomicU64,
    written: AtomicU64,
}

struct Counted<T> {
    inner: T,
    counts: Arc<Counts>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        self.counts.read.fetch_add(n, Ordering::Relaxed);
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counts.written.fetch_add(*n as u64, Ordering::Relaxed);
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
