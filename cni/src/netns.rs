//! Network-namespace cookies: the kernel's stable identity of a netns, read from user space.
//!
//! The redirect programs key enrollment by `bpf_get_netns_cookie()`. User space reads the same
//! number with `SO_NETNS_COOKIE` on a socket created inside the namespace. A short-lived thread
//! enters the namespace for that, so the agent's own threads never leave the node's netns.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path} is gone (the pod was deleted or its sandbox torn down)")]
    Gone { path: PathBuf },
    #[error("opening network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a network namespace, or entering it needs CAP_SYS_ADMIN")]
    Enter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading SO_NETNS_COOKIE (needs Linux ≥ 5.14)")]
    Cookie(#[source] io::Error),
}

/// The cookie of the network namespace at `path` (`/run/netns/<name>`, `/proc/<pid>/ns/net`).
pub fn cookie_of(path: &Path) -> Result<u64, NetnsError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::Gone {
                path: path.to_owned(),
            }
        } else {
            NetnsError::Open {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a valid fd only changes this (short-lived) thread's netns.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Enter {
                        path: path.to_owned(),
                        source: io::Error::last_os_error(),
                    });
                }
                current_cookie()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetnsError::Cookie(io::Error::other(
                    "netns thread panicked",
                )))
            })
    })
}

/// The cookie of the calling thread's network namespace.
pub fn current_cookie() -> Result<u64, NetnsError> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetnsError::Cookie(io::Error::last_os_error()));
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(NetnsError::Cookie(io::Error::last_os_error()));
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_has_the_same_cookie_through_proc() {
        let direct = current_cookie().expect("SO_NETNS_COOKIE");
        let via_path = cookie_of(Path::new("/proc/self/ns/net")).expect("own netns");
        assert_eq!(direct, via_path);
        assert_ne!(direct, 0);
    }

    #[test]
    fn missing_namespace_is_reported_as_gone() {
        let err = cookie_of(Path::new("/run/netns/ambit-does-not-exist")).unwrap_err();
        assert!(matches!(err, NetnsError::Gone { .. }), "{err}");
    }
}
