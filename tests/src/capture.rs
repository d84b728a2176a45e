//! Packet capture on a sandbox interface (AF_PACKET), to assert what crosses the wire.
//!
//! The capture runs on its own thread inside the interface's network namespace and keeps the
//! raw frames; tests search them for payload markers.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};

/// A running capture; [`Capture::finish`] stops it and returns every frame's bytes.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<u8>>>,
}

impl Capture {
    /// Starts capturing all frames on `interface` in the namespace at `netns_path`; returns
    /// once the socket is bound, so traffic sent afterwards is seen.
    pub fn start(netns_path: &Path, interface: &str) -> Result<Capture> {
        let netns =
            File::open(netns_path).with_context(|| format!("opening {}", netns_path.display()))?;
        let name = CString::new(interface).context("interface name")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || -> Result<Vec<u8>> {
            // SAFETY: setns on an fd we own; only this capture thread changes namespace.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                let _ = ready_tx.send(Err(format!("setns: {e}")));
                bail!("entering the namespace: {e}");
            }
            let sock = match open_packet_socket(&name) {
                Ok(sock) => sock,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65_536];
            while !stopping.load(Ordering::Relaxed) {
                // SAFETY: buf is valid for writes of its length.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n > 0 {
                    frames.extend_from_slice(&buf[..n as usize]);
                }
            }
            Ok(frames)
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Capture { stop, thread }),
            Ok(Err(e)) => bail!("starting a capture on {interface}: {e}"),
            Err(_) => bail!("the capture thread on {interface} died"),
        }
    }

    pub fn finish(self) -> Result<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(frames) => frames,
            Err(_) => bail!("the capture thread panicked"),
        }
    }
}

/// A raw packet socket bound to `interface`, every protocol, 100 ms receive timeout.
fn open_packet_socket(interface: &CString) -> Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        bail!(
            "AF_PACKET socket (needs CAP_NET_RAW): {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: interface is a valid C string.
    let index = unsafe { libc::if_nametoindex(interface.as_ptr()) };
    if index == 0 {
        bail!("no interface {interface:?}");
    }
    // SAFETY: a zeroed sockaddr_ll is valid; the fields set below make it a bind address.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is a sockaddr_ll of the given length.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!(
            "binding to {interface:?}: {}",
            std::io::Error::last_os_error()
        );
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: timeout is a valid timeval of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
