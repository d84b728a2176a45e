//! In-process harness: hyper backends on 127.0.0.1, the waypoint on a listener, hyper clients.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ambit_waypoint::body::{self, Body};
use ambit_waypoint::{Caller, Config, Destination, ServiceName, Settings, TcpConnector, Waypoint};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A backend: an HTTP/1.1 + HTTP/2 server counting the requests it received.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start(handler: Handler) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, counter) = (handler.clone(), counter.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let response = handler(request);
                        async move { Ok::<_, std::convert::Infallible>(response.await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { addr, hits }
    }

    /// A backend that answers 200 with its `name`.
    pub async fn named(name: &'static str) -> Backend {
        Backend::start(Arc::new(move |_| {
            Box::pin(async move { Response::new(body::full(name)) })
        }))
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The waypoint serving every accepted connection as addressed to `destination`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub waypoint: Arc<Waypoint>,
}

impl Proxy {
    pub async fn start(config: &Config) -> Proxy {
        Proxy::with(config, Settings::default(), reviews(80)).await
    }

    pub async fn with(config: &Config, settings: Settings, destination: Destination) -> Proxy {
        let waypoint = Arc::new(Waypoint::new(Arc::new(TcpConnector::default()), settings));
        for verdict in waypoint.apply(config) {
            assert!(verdict.accepted, "test route rejected: {verdict:?}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let served = waypoint.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let (waypoint, destination) = (served.clone(), destination.clone());
                tokio::spawn(async move {
                    let caller = Caller {
                        identity: Some("spiffe://cluster.local/ns/shop/sa/client".into()),
                        ..Caller::plain(peer)
                    };
                    let _ = waypoint.serve(stream, destination, caller).await;
                });
            }
        });
        Proxy { addr, waypoint }
    }
}

pub fn reviews(port: u16) -> Destination {
    Destination {
        service: ServiceName::new("shop", "reviews"),
        port,
    }
}

/// A config from `services` (name, port 80 endpoints) and `routes`, the YAML list of HTTPRoutes.
/// The Service `reviews` routes are attached to is added, with `reviews_endpoints`.
pub fn config(services: &[(&str, Vec<SocketAddr>)], routes: &str) -> Config {
    let mut yaml = String::from("services:\n");
    for (name, endpoints) in services {
        let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        yaml.push_str(&format!(
            "- {{namespace: shop, name: {name}, ports: [{{port: 80, endpoints: [{}]}}]}}\n",
            eps.join(", ")
        ));
    }
    if !services.iter().any(|(n, _)| *n == "reviews") {
        yaml.push_str("- {namespace: shop, name: reviews, ports: [{port: 80, endpoints: []}]}\n");
    }
    yaml.push_str("httpRoutes:\n");
    yaml.push_str(routes);
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("bad test config: {e}\n{yaml}"))
}

/// One HTTPRoute named `name` on Service shop/reviews, with `rules` as YAML (indented 4).
pub fn http_route(name: &str, rules: &str) -> String {
    format!(
        "- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n  metadata: {{name: {name}, namespace: shop}}\n  spec:\n    parentRefs: [{{kind: Service, group: \"\", name: reviews, port: 80}}]\n    rules:\n{rules}"
    )
}

/// An HTTP/1.1 keep-alive client.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    request: Request<Body>,
) -> Answer {
    let response = client.request(request).await.expect("proxy answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes: Bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::get(format!("http://{proxy}{path}")).header("host", "reviews.shop");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    send(client, builder.body(body::empty()).expect("request")).await
}

/// A body fed frame by frame from a channel, ending when the sender is dropped.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<http_body::Frame<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = ambit_waypoint::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}
