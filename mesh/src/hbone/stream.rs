//! One CONNECT stream as a byte stream: DATA frames in and out, END_STREAM as EOF.
//!
//! Both ends of a tunnel use it: the caller's [`super::HboneStream`] and the stream the server
//! hands its [`super::Upstream`]. Reads give back HTTP/2 flow-control credit as bytes are
//! consumed, and writes wait for send credit, so neither side buffers more than the windows.
//! Sockets are relayed without this adapter (see `socket_relay`), which moves whole frames
//! instead of copying through `AsyncRead`/`AsyncWrite` buffers.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest single write handed to HTTP/2 at once; larger writes return short.
const MAX_WRITE: usize = 256 * 1024;

/// An open CONNECT stream (either side of the tunnel).
///
/// Shutting down the write half sends END_STREAM; dropping the stream before both halves
/// ended resets it (RST_STREAM CANCEL), as closing a socket early would.
pub struct H2Stream {
    pub(super) send: SendStream<Bytes>,
    pub(super) recv: RecvStream,
    /// Bytes of the last DATA frame not read yet (their credit not yet given back).
    unread: Bytes,
    write_closed: bool,
}

impl H2Stream {
    pub(super) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            unread: Bytes::new(),
            write_closed: false,
        }
    }

    /// The halves, plus bytes already received but not read.
    pub(super) fn into_parts(self) -> (SendStream<Bytes>, RecvStream, Bytes) {
        (self.send, self.recv, self.unread)
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => this.unread = data,
                Some(Err(err)) => return Poll::Ready(read_end(err)),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        // Fails only once the stream is gone, which the next read reports.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let send = &mut self.send;
        let capacity = ready!(poll_send_capacity(send, cx, buf.len().min(MAX_WRITE)))?;
        let n = capacity.min(buf.len());
        send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(write_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task writes frames out as soon as they are queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_closed {
            self.write_closed = true;
            self.send
                .send_data(Bytes::new(), true)
                .map_err(write_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// Send credit for up to `want` bytes: at least one byte, at most what the windows allow now.
///
/// Credit is asked for only when there is something to send, so an idle stream pins no part
/// of the connection window.
pub(super) fn poll_send_capacity(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    if send.capacity() == 0 {
        send.reserve_capacity(want);
    }
    loop {
        let capacity = send.capacity();
        if capacity > 0 {
            return Poll::Ready(Ok(capacity));
        }
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(err)) => return Poll::Ready(Err(write_error(err))),
            // No longer sendable: reset by the peer, or the connection went away.
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// How a failed DATA read ends reading: a peer that reset with NO_ERROR or CANCEL closed
/// normally (EOF); anything else is an error.
pub(super) fn read_end(err: h2::Error) -> io::Result<()> {
    match err.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) => Ok(()),
        Some(Reason::STREAM_CLOSED) => Err(io::Error::new(io::ErrorKind::BrokenPipe, err)),
        _ => Err(io_error(err)),
    }
}

pub(super) fn write_error(err: h2::Error) -> io::Error {
    match err.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL | Reason::STREAM_CLOSED) => {
            io::Error::new(io::ErrorKind::BrokenPipe, err)
        }
        _ => io_error(err),
    }
}

fn io_error(err: h2::Error) -> io::Error {
    if err.is_io() {
        match err.into_io() {
            Some(io) => io,
            None => io::Error::other("HTTP/2 I/O error"),
        }
    } else {
        io::Error::other(err)
    }
}
