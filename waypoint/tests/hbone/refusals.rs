//! What the waypoint's HBONE port refuses: plaintext, other trust domains, unknown targets.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::info;

use crate::support::*;

#[tokio::test]
async fn plaintext_client_is_refused() {
    let ca = MeshCa::new("plaintext");
    let waypoint = WaypointUnderTest::start(&ca, 1).await;

    info!("plain HTTP on the mTLS port gets the connection closed, not an answer");
    let mut tcp = TcpStream::connect(waypoint.addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the waypoint closes the connection");
    assert!(read.is_err() || answer.is_empty(), "got {answer:?}");
    assert_eq!(waypoint.stats.plaintext_refused.load(Relaxed), 1);
}

#[tokio::test]
async fn client_of_another_trust_domain_is_refused() {
    let ca = MeshCa::new("trust-domain");
    let waypoint = WaypointUnderTest::start(&ca, 1).await;
    let other = ca.for_trust_domain("other.local");
    let (stranger, _) = signed(&other, "spiffe://other.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &stranger);

    info!("same root, other trust domain: the handshake fails");
    let refused = connect(&pool, &stranger.id, waypoint.addr, REVIEWS_VIP).await;
    assert!(refused.is_err(), "a stranger was let in");
    assert_eq!(waypoint.stats.client_certs_rejected.load(Relaxed), 1);
    assert_eq!(waypoint.stats.streams_accepted.load(Relaxed), 0);
}

#[tokio::test]
async fn connect_to_an_unknown_address_gets_400() {
    let ca = MeshCa::new("unknown");
    let waypoint = WaypointUnderTest::start(&ca, 1).await;
    let client = ca.svid("spiffe://cluster.local/ns/shop/sa/productpage");
    let pool = client_pool(&ca, &client);

    for target in ["10.99.0.1:80", "10.96.0.10:8080"] {
        info!(target, "neither a reviews VIP port nor an endpoint");
        let Err(refused) = connect(&pool, &client.id, waypoint.addr, target).await else {
            panic!("CONNECT {target} was accepted");
        };
        assert_eq!(
            refused.status(),
            Some(http::StatusCode::BAD_REQUEST),
            "{refused}"
        );
    }
    assert_eq!(waypoint.stats.streams_bad_request.load(Relaxed), 2);
}
