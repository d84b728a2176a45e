//! Moves bytes between a redirected connection and its upstream, both ways, with half-close.
//!
//! The default relay uses splice(2): socket → pipe → socket inside the kernel, so the bytes
//! never cross into the agent. Sockets on the sk_msg fast path cannot be spliced (their bytes
//! wait in the sockmap's queue, which splice does not read) and use a plain copy instead.
//!
//! # Invariants
//! - A direction that reaches EOF shuts down writing on the other socket, after every byte
//!   read before the EOF has been written; the other direction carries on.
//! - Each direction keeps at most one pipe's worth (64 KiB) of bytes in flight.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved in each direction: (client → upstream, upstream → client).
pub type Transferred = (u64, u64);

/// Largest splice per call; the pipe holds 64 KiB by default.
const SPLICE_CHUNK: usize = 64 * 1024;

pub async fn splice_bidirectional(
    client: &TcpStream,
    upstream: &TcpStream,
) -> io::Result<Transferred> {
    let (sent, received) = tokio::try_join!(
        splice_one_way(client, upstream),
        splice_one_way(upstream, client)
    )?;
    Ok((sent, received))
}

/// Moves `from`'s bytes to `to` until EOF, then shuts down writing on `to`.
async fn splice_one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_read, pipe_write) = pipe()?;
    let mut total = 0u64;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe_write.as_raw_fd(), SPLICE_CHUNK)
            })
            .await?;
        if n == 0 {
            shutdown_write(to)?;
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            let moved = to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe_read.as_raw_fd(), to.as_raw_fd(), left)
                })
                .await?;
            left -= moved;
        }
        total += n as u64;
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One non-blocking splice; EAGAIN surfaces as `WouldBlock` for tokio's readiness loop.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets are valid
    // for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    // SAFETY: shutdown(2) on an open socket.
    if unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) } != 0 {
        let err = io::Error::last_os_error();
        // The peer already closed: nothing left to tell it.
        if err.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(err);
        }
    }
    Ok(())
}
