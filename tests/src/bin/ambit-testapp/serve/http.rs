//! The HTTP server: HTTP/1.1 and h2c on one port, WebSocket on `/ws`.
//!
//! Waypoint tests need to see what arrived (the echo), count what arrived (`/hits`) and
//! provoke the waypoint's policies: failures to retry (`/flaky`, `/status/<code>`) and
//! slowness to time out (`/sleep/<ms>`). Every response names the server in `x-served-by`,
//! so a client tells backends apart without reading bodies.
//!
//! Each connection's protocol is detected from its first bytes (hyper-util's `auto`): the
//! HTTP/2 preface means h2c with prior knowledge, anything else HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ambit_e2e::testapp::{HitCounts, HttpEcho, SERVED_BY};
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

use super::websocket;

/// What a request asks for, decided from its path alone.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Echo,
    /// 503 on the first and second of every three calls (per server), 200 on the third.
    Flaky,
    /// Echo after this long.
    Sleep(Duration),
    /// Echo with this status (no body for 204 and 304).
    Status(StatusCode),
    Hits,
    WebSocket,
    /// A malformed `/sleep/<ms>` or `/status/<code>`; the reason.
    BadRequest(String),
}

impl Route {
    fn of(path: &str) -> Route {
        match path {
            "/flaky" => return Route::Flaky,
            "/hits" => return Route::Hits,
            "/ws" => return Route::WebSocket,
            _ => {}
        }
        if let Some(ms) = path.strip_prefix("/sleep/") {
            return match ms.parse() {
                Ok(ms) => Route::Sleep(Duration::from_millis(ms)),
                Err(_) => Route::BadRequest(format!("/sleep/<ms>: {ms:?} is not milliseconds")),
            };
        }
        if let Some(code) = path.strip_prefix("/status/") {
            // A 1xx is not a final answer: hyper cannot send it as one.
            return match code.parse().map(StatusCode::from_u16) {
                Ok(Ok(status)) if !status.is_informational() => Route::Status(status),
                _ => Route::BadRequest(format!("/status/<code>: {code:?} is not a final status")),
            };
        }
        Route::Echo
    }
}

/// The status `/flaky` answers on its `call`-th call (1-based).
fn flaky_status(call: u64) -> StatusCode {
    match call % 3 {
        0 => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One server's state, shared by its connections.
pub struct HttpServer {
    name: Arc<str>,
    served_by: HeaderValue,
    flaky_calls: AtomicU64,
    hits: Mutex<HitCounts>,
}

impl HttpServer {
    pub fn new(name: Arc<str>) -> Result<HttpServer> {
        let served_by = HeaderValue::from_str(&name)
            .with_context(|| format!("--name {name:?} cannot be sent in {SERVED_BY}"))?;
        Ok(HttpServer {
            name,
            served_by,
            flaky_calls: AtomicU64::new(0),
            hits: Mutex::new(HitCounts::default()),
        })
    }

    fn hits(&self) -> MutexGuard<'_, HitCounts> {
        // A panic while counting cannot leave the counts inconsistent enough to matter.
        self.hits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        // Whether this connection already counts in `HitCounts::connections`.
        let counted = Arc::new(AtomicBool::new(false));
        let server = Arc::clone(&self);
        let service = service_fn(move |request| {
            let (server, counted) = (Arc::clone(&server), Arc::clone(&counted));
            async move { Ok::<_, Infallible>(server.respond(request, peer, &counted).await) }
        });
        let served = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .await;
        if let Err(e) = served {
            eprintln!("ambit-testapp: HTTP connection from {peer}: {e}");
        }
    }

    async fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        counted: &AtomicBool,
    ) -> Response<Full<Bytes>> {
        let route = Route::of(request.uri().path());
        if route != Route::Hits {
            self.count(request.uri().path(), counted);
        }
        let mut response = match route {
            Route::Hits => json(StatusCode::OK, &*self.hits()),
            Route::WebSocket => websocket::upgrade(request, Arc::clone(&self.name)),
            Route::BadRequest(why) => text(StatusCode::BAD_REQUEST, why),
            route => match self.echo(request, peer).await {
                Err(why) => text(StatusCode::BAD_REQUEST, why),
                Ok(echo) => {
                    let status = match route {
                        Route::Flaky => {
                            flaky_status(self.flaky_calls.fetch_add(1, Ordering::Relaxed) + 1)
                        }
                        Route::Sleep(duration) => {
                            tokio::time::sleep(duration).await;
                            StatusCode::OK
                        }
                        Route::Status(status) => status,
                        _ => StatusCode::OK,
                    };
                    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
                        with_status(status, Response::new(Full::default()))
                    } else {
                        json(status, &echo)
                    }
                }
            },
        };
        response
            .headers_mut()
            .insert(SERVED_BY, self.served_by.clone());
        response
    }

    fn count(&self, path: &str, counted: &AtomicBool) {
        let mut hits = self.hits();
        hits.total += 1;
        *hits.by_path.entry(path.to_string()).or_default() += 1;
        if !counted.swap(true, Ordering::Relaxed) {
            hits.connections += 1;
        }
    }

    /// The request as it arrived; reads (and counts) the whole body.
    async fn echo(&self, request: Request<Incoming>, peer: SocketAddr) -> Result<HttpEcho, String> {
        let (parts, mut body) = request.into_parts();
        let mut body_bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the request body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                body_bytes += data.len() as u64;
            }
        }
        let mut headers = std::collections::BTreeMap::<String, String>::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_string())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| headers.get(header::HOST.as_str()).cloned());
        Ok(HttpEcho {
            server: self.name.to_string(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |pq| pq.to_string()),
            version: format!("{:?}", parts.version),
            headers,
            body_bytes,
            peer: peer.to_string(),
            authority,
        })
    }
}

pub async fn accept_loop(listener: TcpListener, server: Arc<HttpServer>) -> Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // An HTTP/2 answer is several frames; Nagle would hold the last ones back
                // until the client acknowledges the first, which a client waiting for the
                // answer delays.
                if let Err(e) = stream.set_nodelay(true) {
                    eprintln!("ambit-testapp: TCP_NODELAY for {peer}: {e}");
                }
                tokio::spawn(Arc::clone(&server).serve_connection(stream, peer));
            }
            Err(e) => {
                eprintln!("ambit-testapp: accept on HTTP: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn with_status(status: StatusCode, mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = with_status(status, Response::new(Full::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_status(status, Response::new(Full::from(body + "\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pick_their_behaviour() {
        assert_eq!(Route::of("/"), Route::Echo);
        assert_eq!(Route::of("/flaky/more"), Route::Echo);
        assert_eq!(Route::of("/flaky"), Route::Flaky);
        assert_eq!(
            Route::of("/sleep/250"),
            Route::Sleep(Duration::from_millis(250))
        );
        assert_eq!(
            Route::of("/status/418"),
            Route::Status(StatusCode::IM_A_TEAPOT)
        );
        assert_eq!(Route::of("/hits"), Route::Hits);
        assert_eq!(Route::of("/ws"), Route::WebSocket);
        for bad in ["/sleep/soon", "/status/100", "/status/1000", "/status/"] {
            assert!(
                matches!(Route::of(bad), Route::BadRequest(_)),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn flaky_fails_twice_then_succeeds() {
        let statuses: Vec<u16> = (1..=6).map(|n| flaky_status(n).as_u16()).collect();
        assert_eq!(statuses, [503, 503, 200, 503, 503, 200]);
    }
}
