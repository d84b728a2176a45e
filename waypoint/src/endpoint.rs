//! The last step: HTTP/1.1 or HTTP/2 to the chosen endpoint over a [`Connector`] stream.
//!
//! Connections are pooled per endpoint by hyper-util's client. The backend port's
//! `appProtocol` picks HTTP/1.1 (`http`) or HTTP/2 (`http2`, `grpc`, `kubernetes.io/h2c`);
//! without one the backend gets the caller's version, so gRPC stays HTTP/2.
//! An HTTP/1.1 Upgrade (WebSocket) is forwarded, and once both sides answered 101 the two
//! upgraded streams are joined byte for byte.
//!
//! A [`Connector`] whose streams name their caller ([`Connector::per_caller`], HBONE) gets
//! one pool per [`Caller`], so that a connection opened for one caller never carries another
//! caller's requests; a caller's pool is forgotten after [`CALLER_POOL_IDLE`] without requests.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::Service;

use crate::balance::{internal_error, Target};
use crate::body::{self, Body};
use crate::connector::{BoxIo, Connector};
use crate::error::ProxyError;
use crate::model::{Caller, PortProtocol};
use crate::stack::HttpFuture;

/// How long a caller's pool lives without requests; hyper closes idle connections sooner (90 s).
pub const CALLER_POOL_IDLE: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Endpoint {
    connector: Arc<dyn Connector>,
    shared: Arc<Clients>,
    /// `Some` when the connector names callers: the pools by caller, and when each was last used.
    by_caller: Option<Arc<Mutex<CallerPools>>>,
}

/// Pools by caller, with when each was last used; idle ones are swept at most every
/// [`SWEEP_EVERY`], so that opening a pool stays O(1) with many callers.
struct CallerPools {
    pools: HashMap<Caller, (Arc<Clients>, Instant)>,
    swept: Instant,
}

const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Shared behind an `Arc`: a request takes one reference count, not a clone of each client
/// (a hyper client clone is several reference counts and a connector clone).
struct Clients {
    h1: Client<PoolConnector, Body>,
    h2: Client<PoolConnector, Body>,
}

impl Clients {
    fn new(connector: Arc<dyn Connector>, caller: Option<Caller>) -> Arc<Self> {
        let connector = PoolConnector { connector, caller };
        Arc::new(Clients {
            h1: Client::builder(TokioExecutor::new()).build(connector.clone()),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector),
        })
    }
}

impl Endpoint {
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        let by_caller = connector.per_caller().then(|| {
            Arc::new(Mutex::new(CallerPools {
                pools: HashMap::new(),
                swept: Instant::now(),
            }))
        });
        Endpoint {
            shared: Clients::new(connector.clone(), None),
            connector,
            by_caller,
        }
    }

    fn clients(&self, caller: Option<&Caller>) -> Arc<Clients> {
        let (Some(by_caller), Some(caller)) = (&self.by_caller, caller) else {
            return self.shared.clone();
        };
        let mut by_caller = by_caller.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((clients, used)) = by_caller.pools.get_mut(caller) {
            *used = now;
            return clients.clone();
        }
        if now.duration_since(by_caller.swept) >= SWEEP_EVERY {
            by_caller
                .pools
                .retain(|_, (_, used)| now.duration_since(*used) < CALLER_POOL_IDLE);
            by_caller.swept = now;
        }
        let clients = Clients::new(self.connector.clone(), Some(caller.clone()));
        by_caller
            .pools
            .insert(caller.clone(), (clients.clone(), now));
        clients
    }
}

impl Service<Request<Body>> for Endpoint {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> HttpFuture {
        let clients = self.clients(request.extensions().get::<Caller>());
        Box::pin(async move {
            let Some(target) = request.extensions().get::<Target>().cloned() else {
                return Ok(internal_error());
            };
            let upgrade = is_upgrade(request.headers()) && request.version() == Version::HTTP_11;
            let downstream = upgrade.then(|| hyper::upgrade::on(&mut request));
            strip_hop_by_hop(request.headers_mut(), upgrade);
            // An HTTP/2 caller names the host only in `:authority`, which the endpoint
            // address is about to replace: keep it as `Host`.
            if let Some(authority) = request.uri().authority().cloned() {
                if let Ok(host) = header::HeaderValue::from_str(authority.as_str()) {
                    request.headers_mut().entry(header::HOST).or_insert(host);
                }
            }
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            let Ok(uri) = format!("http://{}{path}", target.endpoint).parse::<Uri>() else {
                return Ok(internal_error());
            };
            *request.uri_mut() = uri;
            let h2 = !upgrade
                && match target.protocol {
                    PortProtocol::Http2 => true,
                    PortProtocol::Http1 => false,
                    _ => request.version() == Version::HTTP_2,
                };
            *request.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            let client = if h2 { &clients.h2 } else { &clients.h1 };
            let mut response = client.request(request).await.map_err(|source| {
                if source.is_connect() {
                    ProxyError::Connect {
                        service: target.service.clone(),
                        endpoint: target.endpoint,
                        source: io::Error::other(source),
                    }
                } else {
                    ProxyError::Backend {
                        service: target.service.clone(),
                        endpoint: target.endpoint,
                        source,
                    }
                }
            })?;
            if let (Some(downstream), StatusCode::SWITCHING_PROTOCOLS) =
                (downstream, response.status())
            {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(downstream, upstream) {
                        Ok((down, up)) => {
                            let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                            if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await
                            {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
            } else {
                strip_hop_by_hop(response.headers_mut(), false);
            }
            Ok(response.map(body::boxed))
        })
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), keeping `te: trailers` for gRPC and, on an
/// upgrade, `connection` and `upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection", "transfer-encoding"] {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::TRAILER);
    if !upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    if headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}

/// Adapts a [`Connector`] to the hyper-util client, which asks for `http://<endpoint>/`.
#[derive(Clone)]
struct PoolConnector {
    connector: Arc<dyn Connector>,
    /// Set when the pool belongs to one caller.
    caller: Option<Caller>,
}

impl Service<Uri> for PoolConnector {
    type Response = PooledIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<PooledIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connector, caller) = (self.connector.clone(), self.caller.clone());
        Box::pin(async move {
            let endpoint = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{uri} names no endpoint"),
                    )
                })?;
            Ok(PooledIo(TokioIo::new(
                connector.connect_for(endpoint, caller.as_ref()).await?,
            )))
        })
    }
}

struct PooledIo(TokioIo<BoxIo>);

impl Connection for PooledIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for PooledIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for PooledIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
