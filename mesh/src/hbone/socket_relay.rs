//! Relaying a TCP socket and a CONNECT stream into each other, frame by frame.
//!
//! Socket reads become DATA frames without a copy (the read buffer is frozen and handed to
//! HTTP/2), and received DATA frames are written to the socket as they are, their flow-control
//! credit given back only once written. Both directions run in the caller's task.
//! # Invariants
//! - Backpressure: a direction reads only after its last read was handed on (the socket
//!   side waits for send credit), so at most a window's worth is in flight each way.
//! - Half-close: socket EOF becomes END_STREAM, END_STREAM a shutdown of the socket's write
//!   half; the other direction carries on.
//! - An idle connection holds no read buffer: one is taken only when the socket is readable.
//!   It starts at [`FIRST_READ`] and doubles on every read that fills it, up to [`MAX_READ`].

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::stream::{poll_send_capacity, read_end, write_error, H2Stream};

/// The first read of a burst: enough for a request or a response, small when idle.
pub const FIRST_READ: usize = 16 * 1024;
/// The largest read (and DATA frame) under bulk transfer.
pub const MAX_READ: usize = 256 * 1024;

/// Relays `tcp` and `stream` until both directions ended (or one failed), adding the bytes
/// moved each way to the counters as they move (so the counts survive an error).
pub(super) async fn relay(
    tcp: TcpStream,
    stream: H2Stream,
    to_stream: &AtomicU64,
    to_socket: &AtomicU64,
) -> io::Result<()> {
    let (send, recv, unread) = stream.into_parts();
    let (from_socket, into_socket) = tcp.into_split();
    tokio::try_join!(
        socket_to_stream(from_socket, send, to_stream),
        stream_to_socket(recv, unread, into_socket, to_socket),
    )?;
    Ok(())
}

async fn socket_to_stream(
    tcp: OwnedReadHalf,
    mut send: SendStream<Bytes>,
    moved: &AtomicU64,
) -> io::Result<()> {
    let mut size = FIRST_READ;
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            ready = tcp.readable() => ready?,
            // A reset stream takes no more data: end here rather than wait for the socket.
            reset = poll_fn(|cx| send.poll_reset(cx)) => {
                let why = reset.map_err(write_error)?;
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("the peer reset the stream ({why:?})"),
                ));
            }
        }
        buf.reserve(size);
        let n = match tcp.try_read_buf(&mut buf) {
            Ok(0) => {
                send.send_data(Bytes::new(), true).map_err(write_error)?;
                return Ok(());
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        };
        if n >= size {
            size = (size * 2).min(MAX_READ);
        }
        let mut chunk = buf.split().freeze();
        while !chunk.is_empty() {
            let want = chunk.len();
            let credit = poll_fn(|cx| poll_send_capacity(&mut send, cx, want)).await?;
            let frame = chunk.split_to(credit.min(want));
            send.send_data(frame, false).map_err(write_error)?;
        }
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn stream_to_socket(
    mut recv: RecvStream,
    unread: Bytes,
    mut tcp: OwnedWriteHalf,
    moved: &AtomicU64,
) -> io::Result<()> {
    if !unread.is_empty() {
        tcp.write_all(&unread).await?;
        moved.fetch_add(unread.len() as u64, Ordering::Relaxed);
        let _ = recv.flow_control().release_capacity(unread.len());
    }
    loop {
        match poll_fn(|cx| recv.poll_data(cx)).await {
            Some(Ok(data)) => {
                tcp.write_all(&data).await?;
                moved.fetch_add(data.len() as u64, Ordering::Relaxed);
                // Fails only once the stream is gone, which the next poll reports.
                let _ = recv.flow_control().release_capacity(data.len());
            }
            None => break,
            Some(Err(err)) => {
                read_end(err)?;
                break;
            }
        }
    }
    match tcp.shutdown().await {
        // The socket's peer already closed: nothing left to tell it.
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
        done => done,
    }
}
