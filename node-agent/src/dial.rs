//! Connecting to destinations: from the agent's own address, or from the caller's.
//!
//! Without the bind, a connection to a pod on this node would leave from the pod gateway
//! address: the pod would see a different agent than pods on other nodes see, and the kernel
//! programs, which recognise the agent by address, would not join its socket to the fast path.
//!
//! With `--client-address preserve`, deliveries to pods leave from the caller's address
//! instead (`IP_TRANSPARENT`), and `return_path` brings the pod's replies back.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::{TcpSocket, TcpStream};

fn socket_for(ip: IpAddr) -> io::Result<TcpSocket> {
    if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Connects to `dst` from `caller`'s address when given (see [`socket_as`]), else from
/// `source`; a caller's address that cannot be bound falls back to `source`, logged.
pub async fn connect(
    caller: Option<IpAddr>,
    source: Option<IpAddr>,
    dst: SocketAddr,
) -> io::Result<TcpStream> {
    if let Some(caller) = caller {
        match socket_as(caller) {
            Ok(socket) => return socket.connect(dst).await,
            Err(e) => tracing::warn!(
                %caller, target = %dst, error = %e,
                "cannot connect from the caller's address; connecting from the agent's"
            ),
        }
    }
    connect_from(source, dst).await
}

/// Connects to `dst`, leaving from `source` when the address families match.
pub async fn connect_from(source: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket_for(dst.ip())?;
    if let Some(source) = source.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(dst).await
}

/// A socket bound to `caller` (any port) although that address is not this node's:
/// `IP_TRANSPARENT`, which needs CAP_NET_ADMIN.
pub fn socket_as(caller: IpAddr) -> io::Result<TcpSocket> {
    let socket = socket_for(caller)?;
    set_transparent(&socket, caller.is_ipv4())?;
    socket.bind(SocketAddr::new(caller, 0))?;
    Ok(socket)
}

/// The HBONE listener, transparent: it also accepts connections addressed to this node's
/// pods, which `capture_hbone` routes to it (see `return_path`).
pub fn transparent_listener(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = socket_for(addr.ip())?;
    socket.set_reuseaddr(true)?;
    set_transparent(&socket, addr.is_ipv4())?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn set_transparent(socket: &TcpSocket, ipv4: bool) -> io::Result<()> {
    let (level, option) = if ipv4 {
        (libc::SOL_IP, libc::IP_TRANSPARENT)
    } else {
        (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on our own socket with a c_int option value of its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
