use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::*;

/// Opens `n` streams at once and keeps them all open; returns them.
async fn open_many(
    pool: &Pool,
    node: SocketAddr,
    destination: SocketAddr,
    n: usize,
) -> Vec<HboneStream> {
    let mut opening = JoinSet::new();
    for _ in 0..n {
        let pool = pool.clone();
        opening.spawn(async move {
            pool.connect(key(node), destination, client_addr(), String::new())
                .await
        });
    }
    let mut streams = Vec::new();
    while let Some(result) = opening.join_next().await {
        streams.push(result.unwrap().unwrap());
    }
    streams
}

async fn echo_through(stream: &mut HboneStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
}

#[tokio::test]
async fn two_hundred_streams_multiplex_on_one_connection() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = echo_destination().await;
    let settings = PoolSettings {
        max_streams_per_connection: 256,
        ..PoolSettings::default()
    };
    let pool = pool_as(ca.svid(CLIENT), &ca, settings);

    let mut streams = open_many(&pool, node, destination, 200).await;
    assert_eq!(pool.stats().connections_opened.load(Ordering::Relaxed), 1);
    assert_eq!(stats.connections_accepted.load(Ordering::Relaxed), 1);
    for (n, stream) in streams.iter_mut().enumerate() {
        echo_through(stream, format!("stream {n}").as_bytes()).await;
    }
    assert_eq!(stats.streams_accepted.load(Ordering::Relaxed), 200);
}

#[tokio::test]
async fn the_default_limit_opens_another_connection_past_100_streams() {
    let ca = TestCa::new("mesh");
    let (node, _) = start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = echo_destination().await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());

    let mut streams = open_many(&pool, node, destination, 200).await;
    assert_eq!(pool.stats().connections_opened.load(Ordering::Relaxed), 2);
    for stream in &mut streams {
        echo_through(stream, b"ping").await;
    }
}

#[tokio::test]
async fn sequential_streams_reuse_the_pooled_connection() {
    let ca = TestCa::new("mesh");
    let (node, _) = start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = echo_destination().await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());
    for _ in 0..5 {
        let mut stream = pool
            .connect(key(node), destination, client_addr(), String::new())
            .await
            .unwrap();
        echo_through(&mut stream, b"again").await;
    }
    assert_eq!(pool.stats().connections_opened.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = echo_destination().await;
    let settings = PoolSettings {
        idle_timeout: Duration::from_millis(300),
        ..PoolSettings::default()
    };
    let pool = pool_as(ca.svid(CLIENT), &ca, settings);

    let mut stream = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    echo_through(&mut stream, b"busy").await;
    // A connection carrying a stream is not idle, however long that takes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.open_connections(), 1);
    drop(stream);

    until(&pool.stats().connections_closed, 1).await;
    assert_eq!(pool.open_connections(), 0);
    until(&stats.connections_active, 0).await;
    assert_eq!(
        stats.http2_errors.load(Ordering::Relaxed),
        0,
        "closing an idle connection is no error"
    );

    let mut stream = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    echo_through(&mut stream, b"fresh").await;
    assert_eq!(pool.stats().connections_opened.load(Ordering::Relaxed), 2);
}

/// A TCP relay to `to` that can be frozen: once frozen, nothing more crosses it either way.
async fn freezable_relay(to: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = frozen.clone();
    tokio::spawn(async move {
        while let Ok((front, _)) = listener.accept().await {
            let back = TcpStream::connect(to).await.unwrap();
            let (front_r, front_w) = front.into_split();
            let (back_r, back_w) = back.into_split();
            tokio::spawn(pump(front_r, back_w, flag.clone()));
            tokio::spawn(pump(back_r, front_w, flag.clone()));
        }
    });
    (addr, frozen)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if frozen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn keepalive_pings_drop_a_connection_whose_peer_went_silent() {
    let ca = TestCa::new("mesh");
    let (node, _) = start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let (relay, frozen) = freezable_relay(node).await;
    let destination = echo_destination().await;
    let settings = PoolSettings {
        keepalive_interval: Some(Duration::from_millis(100)),
        keepalive_timeout: Duration::from_millis(200),
        ..PoolSettings::default()
    };
    let pool = pool_as(ca.svid(CLIENT), &ca, settings);

    let mut stream = pool
        .connect(key(relay), destination, client_addr(), String::new())
        .await
        .unwrap();
    echo_through(&mut stream, b"alive").await;
    // The network path dies silently (no FIN, no RST): only PINGs can tell.
    frozen.store(true, Ordering::Relaxed);
    until(&pool.stats().connections_closed, 1).await;
    assert_eq!(pool.open_connections(), 0);
    let mut rest = Vec::new();
    assert!(
        stream.read_to_end(&mut rest).await.is_err(),
        "the stream outlived its connection"
    );
}
