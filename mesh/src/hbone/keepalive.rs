//! HTTP/2 PING keepalive for both ends of an HBONE connection.
//!
//! A network path that dies silently (no FIN, no RST) leaves a connection that looks open; a
//! PING every `interval`, unanswered for `timeout`, tells. The caller drops the connection
//! when [`until_silent`] returns, which fails its streams.

use std::time::Duration;

use h2::{Ping, PingPong};

/// Returns once a PING went unanswered for `timeout`; never, without an interval (or when
/// the connection cannot ping, which only happens once it is closing anyway).
pub(super) async fn until_silent(
    ping_pong: Option<PingPong>,
    interval: Option<Duration>,
    timeout: Duration,
) {
    let (Some(mut ping_pong), Some(interval)) = (ping_pong, interval) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection is going away; its own future reports how.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}
