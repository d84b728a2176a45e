//! The mesh of these tests: a CA, SVIDs, a stand-in node agent, and the waypoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ambit_mesh::hbone::{
    ConnectRequest, HboneServer, HboneStream, Pool, PoolKey, PoolSettings, Refusal, ServerSettings,
    ServerStats, TunnelError,
};
use ambit_mesh::identity::{Ca, PendingSvid, SpiffeId, Svid};
use ambit_mesh::model::Model;
use ambit_mesh::tls::{self, ServerCerts};
use ambit_waypoint::body;
use ambit_waypoint::hbone::{self as wp_hbone, Front, HboneConnector, WaypointIdentity};
use ambit_waypoint::{Config, Waypoint};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";
/// The client pod's address as its node agent names it in `forwarded`.
pub const CLIENT_ADDR: &str = "10.10.1.2:40000";
pub const CLIENT_BAGGAGE: &str = "k8s.namespace.name=shop,k8s.pod.name=productpage";
pub const REVIEWS_VIP: &str = "10.96.0.10:80";
pub const V1_POD: &str = "10.10.1.5:9080";
pub const V2_POD: &str = "10.10.1.6:9080";

/// One node (the stand-in agent on 127.0.0.1); reviews v1 and v2 run there with their own
/// service accounts, and so does the waypoint; `reviews` selects both, `reviews-v1`/`reviews-v2` one each.
pub const MESH: &str = "
trustDomain: cluster.local
nodes:
  - {name: n1, address: 127.0.0.1}
namespaces:
  - {name: shop, labels: {ambit.dev/dataplane-mode: ambient}}
workloads:
  - {name: productpage, namespace: shop, serviceAccount: productpage, node: n1, ips: [10.10.1.2]}
  - {name: reviews-v1, namespace: shop, serviceAccount: reviews-v1, node: n1, ips: [10.10.1.5], labels: {app: reviews, version: v1}}
  - {name: reviews-v2, namespace: shop, serviceAccount: reviews-v2, node: n1, ips: [10.10.1.6], labels: {app: reviews, version: v2}}
  - {name: waypoint, namespace: shop, serviceAccount: waypoint, node: n1, ips: [10.10.1.9]}
services:
  - {name: reviews, namespace: shop, vips: [10.96.0.10], ports: [{port: 80, targetPort: 9080}], selector: {app: reviews}}
  - {name: reviews-v1, namespace: shop, vips: [10.96.0.11], ports: [{port: 80, targetPort: 9080}], selector: {app: reviews, version: v1}}
  - {name: reviews-v2, namespace: shop, vips: [10.96.0.12], ports: [{port: 80, targetPort: 9080}], selector: {app: reviews, version: v2}}
";

/// `x-version: v2` goes to reviews-v2, everything else to reviews-v1.
pub const ROUTES: &str = "
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: reviews, namespace: shop}
  spec:
    parentRefs: [{kind: Service, group: \"\", name: reviews, port: 80}]
    rules:
    - matches: [{headers: [{name: x-version, value: v2}]}]
      backendRefs: [{name: reviews-v2, port: 80}]
    - backendRefs: [{name: reviews-v1, port: 80}]
";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub fn id(s: &str) -> SpiffeId {
    s.parse().expect("SPIFFE ID")
}

/// A fresh directory under the system temp dir, unique per call.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("ambit-waypoint-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The mesh CA, made with mesh's own CA code.
pub struct MeshCa {
    pub dir: PathBuf,
    pub ca: Ca,
}

impl MeshCa {
    pub fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        Ca::init(&dir).expect("CA init");
        let ca = Ca::load(&dir, TRUST_DOMAIN).expect("CA load");
        MeshCa { dir, ca }
    }

    /// The same root and intermediate, signing for another trust domain.
    pub fn for_trust_domain(&self, trust_domain: &str) -> Ca {
        Ca::load(&self.dir, trust_domain).expect("CA load")
    }

    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        tls::roots_from_der(std::slice::from_ref(self.ca.root())).expect("roots")
    }

    pub fn svid(&self, id: &str) -> Svid {
        signed(&self.ca, id).0
    }
}

/// An SVID for `id` signed by `ca` (key generated locally, as agents do), and its chain PEM.
pub fn signed(ca: &Ca, id_text: &str) -> (Svid, String) {
    let pending = PendingSvid::generate(&id(id_text)).expect("CSR");
    let chain = ca
        .sign(&pending.csr_pem, &id(id_text), None)
        .expect("CA signs");
    (pending.complete(&chain.pem).expect("SVID"), chain.pem)
}

/// What a stand-in node agent saw of one CONNECT.
pub type Seen = Arc<Mutex<Vec<ConnectRequest>>>;

/// A destination node agent: mesh's HBONE server, presenting the SVIDs of reviews-v1 and
/// reviews-v2, delivering each pod address to a local backend.
pub struct NodeAgent {
    pub addr: SocketAddr,
    pub seen: Seen,
}

impl NodeAgent {
    pub async fn start(ca: &MeshCa, pods: HashMap<SocketAddr, SocketAddr>) -> NodeAgent {
        let certs = ServerCerts::new();
        for sa in ["reviews-v1", "reviews-v2"] {
            let svid = ca.svid(&format!("spiffe://cluster.local/ns/shop/sa/{sa}"));
            certs.insert(svid.id.clone(), svid.certified_key().expect("key"));
        }
        let config =
            tls::server_config(Arc::new(certs), ca.roots(), TRUST_DOMAIN).expect("server TLS");
        let seen = Seen::default();
        let record = seen.clone();
        let pods = Arc::new(pods);
        let inbound = move |request: ConnectRequest| {
            let (record, pods) = (record.clone(), pods.clone());
            async move {
                record.lock().expect("seen").push(request.clone());
                let Some(backend) = pods.get(&request.target).copied() else {
                    return Err(Refusal::BadTarget(format!(
                        "{} is not here",
                        request.target
                    )));
                };
                TcpStream::connect(backend)
                    .await
                    .map_err(Refusal::Unreachable)
            }
        };
        let server = HboneServer::new(config, inbound, ServerSettings::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
        let addr = listener.local_addr().expect("agent addr");
        tokio::spawn(server.run(listener));
        NodeAgent { addr, seen }
    }
}

/// A backend answering 200 with its name and the `forwarded` header it got (if any).
pub async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_: Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(body::full(name)))
                    },
                );
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The waypoint on a loopback HBONE port, with the model and routes above.
pub struct WaypointUnderTest {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    /// Keeps the model channel open for the waypoint's lifetime.
    _models: watch::Sender<Arc<Model>>,
}

pub fn model() -> Arc<Model> {
    Arc::new(ambit_mesh::config::parse(MESH).expect("the test mesh parses"))
}

impl WaypointUnderTest {
    pub async fn start(ca: &MeshCa, agent_port: u16) -> WaypointUnderTest {
        let identity = WaypointIdentity::new(id(WAYPOINT_ID), ca.roots());
        identity
            .install(&ca.svid(WAYPOINT_ID))
            .expect("waypoint SVID");
        let (models_tx, models) = watch::channel(model());
        let pool = Pool::new(
            PoolSettings::default(),
            identity.roots(),
            identity.cert_source(),
        );
        let connector =
            HboneConnector::new(pool, identity.clone(), models.clone()).with_hbone_port(agent_port);
        let waypoint = Arc::new(Waypoint::new(Arc::new(connector), Default::default()));
        let routes: Vec<_> = serde_yaml::from_str(ROUTES).expect("routes parse");
        let verdicts = waypoint.apply(&wp_hbone::engine_config(
            &model(),
            &routes,
            &Config::default(),
        ));
        assert!(verdicts.iter().all(|v| v.accepted), "{verdicts:?}");
        let front = Front {
            waypoint,
            model: models,
            namespace: "shop".into(),
        };
        let server =
            wp_hbone::server(&identity, front, ServerSettings::default()).expect("server TLS");
        let stats = server.stats();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind waypoint");
        let addr = listener.local_addr().expect("waypoint addr");
        tokio::spawn(server.run(listener));
        WaypointUnderTest {
            addr,
            stats,
            _models: models_tx,
        }
    }
}

/// A source node agent's pool, presenting `svid`.
pub fn client_pool(ca: &MeshCa, svid: &Svid) -> Pool {
    let key = svid.certified_key().expect("key");
    Pool::new(
        PoolSettings::default(),
        ca.roots(),
        Arc::new(move |_: &SpiffeId| Some(key.clone())),
    )
}

/// `CONNECT target` to the waypoint, as the source agent of `source` would for a client at
/// [`CLIENT_ADDR`].
pub async fn connect(
    pool: &Pool,
    source: &SpiffeId,
    waypoint: SocketAddr,
    target: &str,
) -> Result<HboneStream, TunnelError> {
    connect_from(pool, source, waypoint, target, CLIENT_ADDR).await
}

/// `CONNECT target` to the waypoint for a client at `client`.
pub async fn connect_from(
    pool: &Pool,
    source: &SpiffeId,
    waypoint: SocketAddr,
    target: &str,
    client: &str,
) -> Result<HboneStream, TunnelError> {
    let key = PoolKey {
        source: source.clone(),
        dst_node: waypoint,
        dst_identity: id(WAYPOINT_ID),
    };
    pool.connect(key, addr(target), addr(client), CLIENT_BAGGAGE.to_string())
        .await
}

/// An HTTP/1.1 connection over an HBONE stream.
pub async fn http1(
    stream: HboneStream,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

/// `GET /` with `headers`; the status and body.
pub async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = Request::get("/").header("host", "reviews.shop");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Empty::new()).expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes an SVID as the waypoint reads it: chain and key PEM, each file replaced whole.
pub fn write_svid(dir: &std::path::Path, chain_pem: &str, svid: &Svid) {
    use ambit_waypoint::hbone::{SVID_CERT, SVID_KEY};
    let key = rcgen::KeyPair::try_from(&svid.key).expect("key");
    for (name, text) in [
        (SVID_CERT, chain_pem.to_string()),
        (SVID_KEY, key.serialize_pem()),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}
