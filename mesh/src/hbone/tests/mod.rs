//! In-process HBONE over real TLS on loopback: a server, a pool, and plain TCP destinations.

mod pool;
mod refusals;
mod round_trip;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tls::test_pki::{id, TestCa};
use crate::tls::{self, ServerCerts};

pub(super) const CLIENT: &str = "spiffe://cluster.local/ns/shop/sa/client";
pub(super) const SERVER: &str = "spiffe://cluster.local/ns/shop/sa/reviews";

/// Serves HBONE on a loopback port, presenting `certs`.
pub(super) async fn start_server<I: Inbound>(
    ca: &TestCa,
    certs: ServerCerts,
    inbound: I,
    settings: ServerSettings,
) -> (SocketAddr, Arc<ServerStats>) {
    let config = tls::server_config(Arc::new(certs), ca.roots(), "cluster.local").unwrap();
    let server = HboneServer::new(config, inbound, settings);
    let stats = server.stats();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.run(listener));
    (addr, stats)
}

/// The server holds the `reviews` identity.
pub(super) fn reviews_certs(ca: &TestCa) -> ServerCerts {
    let certs = ServerCerts::new();
    certs.insert(id(SERVER), ca.svid(SERVER));
    certs
}

/// Delivers every CONNECT to its target, as a destination agent does.
pub(super) async fn forward(request: ConnectRequest) -> Result<TcpStream, Refusal> {
    TcpStream::connect(request.target)
        .await
        .map_err(Refusal::Unreachable)
}

/// A pool whose sources hold SVIDs for `source` (a SPIFFE ID string).
pub(super) fn pool_as(
    source_svid: Arc<rustls::sign::CertifiedKey>,
    ca: &TestCa,
    settings: PoolSettings,
) -> Pool {
    Pool::new(
        settings,
        ca.roots(),
        Arc::new(move |_: &crate::identity::SpiffeId| Some(source_svid.clone())),
    )
}

pub(super) fn key(node: SocketAddr) -> PoolKey {
    PoolKey {
        source: id(CLIENT),
        dst_node: node,
        dst_identity: id(SERVER),
    }
}

pub(super) fn client_addr() -> SocketAddr {
    "10.0.0.7:4321".parse().unwrap()
}

/// A destination that reads until EOF, then answers with what it read in upper case.
pub(super) async fn shouting_destination() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await.unwrap();
                tcp.write_all(&got.to_ascii_uppercase()).await.unwrap();
            });
        }
    });
    addr
}

/// A destination that echoes bytes as they come.
pub(super) async fn echo_destination() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
pub(super) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Waits (up to 2 s) until `counter` reaches `want`; counters move on other tasks.
pub(super) async fn until(counter: &std::sync::atomic::AtomicU64, want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = counter.load(std::sync::atomic::Ordering::Relaxed);
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counter is {now}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
