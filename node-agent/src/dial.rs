//! Connecting to destinations from the agent's own address.
//!
//! Without the bind, a connection to a pod on this node would leave from the pod gateway
//! address: the pod would see a different agent than pods on other nodes see, and the kernel
//! programs, which recognise the agent by address, would not join its socket to the fast path.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

/// Connects to `dst`, leaving from `source` when the address families match.
pub async fn connect_from(source: Option<IpAddr>, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if dst.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(source) = source.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(dst).await
}
