//! `/ws`: WebSocket over an HTTP/1.1 Upgrade, echoing every message back.
//!
//! Text replies are prefixed with the server's name (`<name>:<text>`), so a test sees
//! which backend the waypoint tied the upgraded connection to; binary messages come back
//! unchanged. HTTP/2's extended CONNECT (RFC 8441) is not offered: such requests get 426.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Answers 101 and echoes on the upgraded connection, or 426 to anything but a WebSocket
/// handshake.
pub fn upgrade(mut request: Request<Incoming>, name: Arc<str>) -> Response<Full<Bytes>> {
    let Some(key) = handshake_key(request.method(), request.headers()) else {
        let mut response = Response::new(Full::from("/ws takes a WebSocket upgrade\n"));
        *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                if let Err(e) = echo(ws, &name).await {
                    eprintln!("ambit-testapp: WebSocket: {e}");
                }
            }
            Err(e) => eprintln!("ambit-testapp: WebSocket upgrade: {e}"),
        }
    });
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // Base64 is always a valid header value.
    if let Ok(accept) = HeaderValue::try_from(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// `Sec-WebSocket-Key` of a well-formed WebSocket handshake (RFC 6455 §4.2.1).
fn handshake_key<'a>(method: &Method, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    (method == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && version_13)
        .then(|| headers.get(header::SEC_WEBSOCKET_KEY))
        .flatten()
}

async fn echo<S>(mut ws: WebSocketStream<S>, name: &str) -> Result<(), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Pings and the closing handshake are answered by tungstenite itself while reading.
    while let Some(message) = ws.next().await {
        let reply = match message? {
            Message::Text(text) => Message::text(format!("{name}:{text}")),
            Message::Binary(data) => Message::Binary(data),
            _ => continue,
        };
        ws.send(reply).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        headers
    }

    #[test]
    fn only_a_complete_handshake_is_upgraded() {
        let headers = handshake();
        assert!(handshake_key(&Method::GET, &headers).is_some());
        assert!(handshake_key(&Method::POST, &headers).is_none());
        for missing in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
        ] {
            let mut headers = handshake();
            headers.remove(&missing);
            assert!(
                handshake_key(&Method::GET, &headers).is_none(),
                "without {missing}"
            );
        }
    }
}
