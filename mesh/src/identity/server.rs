//! The CA's gRPC service over TLS. A caller proves who it is with a node client certificate
//! (sandbox), or, when the CA runs on a cluster, with a Kubernetes service-account token in
//! the request's `authorization` metadata (see [`super::token`]).
//!
//! tonic is served over our own tokio-rustls acceptor (`serve_with_incoming`), so the node
//! identity is read from the verified client certificate once per connection and reaches the
//! handler as connect info ([`CaPeer`]); nothing the request says can change it. A token is
//! checked with the API server at each request, so a revoked token stops working at once.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::authz::{authorize, authorize_own, authorize_scheduled, Refusal};
use super::ca::{Ca, CaError};
use super::node::NodeId;
use super::proto::certificate_authority_server::{
    CertificateAuthority, CertificateAuthorityServer,
};
use super::proto::{SignRequest, SignResponse};
use super::token::{bearer, KubeAuth, TokenError, TokenOwner};
use super::SpiffeId;
use crate::model::Model;

/// The CA's port, next to istiod's 15012 so operators recognise it.
pub const CA_PORT: u16 = 15012;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not issue the CA's serving certificate: {0}")]
    ServingCert(#[from] CaError),
    #[error("the CA's TLS configuration is invalid: {0}")]
    Tls(String),
    #[error("the gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Counters of the CA, read by tests and (later) the metrics endpoint.
#[derive(Debug, Default)]
pub struct CaMetrics {
    pub signed_total: AtomicU64,
    /// Requests refused: node authorization or an invalid request.
    pub refused_total: AtomicU64,
    /// Connections dropped before gRPC: failed or stalled handshakes, unusable client certs.
    pub handshake_failures_total: AtomicU64,
}

/// Who is connected: the node of the verified client certificate, if one was presented.
#[derive(Debug, Clone)]
pub struct CaPeer {
    /// `None` for a connection without a client certificate, which must then send a token.
    pub node: Option<NodeId>,
    pub addr: SocketAddr,
}

/// Which client credentials the CA's TLS accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A node certificate is required of every connection (sandbox, file mode).
    NodeCertificate,
    /// A node certificate, or none and a service-account token in each request (cluster).
    NodeCertificateOrToken,
}

/// Where the CA learns which pods run on a node.
enum Placement {
    /// The mesh model (e.g. `FileSource::subscribe()`), read at each request.
    Model(watch::Receiver<Arc<Model>>),
    /// The API server, asked at each request; also reviews tokens.
    Kube(KubeAuth),
}

/// Who a request is from, once authenticated.
enum Caller {
    /// A node agent: by its node certificate, or by its service-account token.
    Node(NodeId),
    /// Any other workload, by its service-account token.
    Workload(TokenOwner),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Node(node) => write!(f, "{node}"),
            Caller::Workload(owner) => write!(f, "{owner}"),
        }
    }
}

/// The `ambit.ca.v1.CertificateAuthority` service: signs CSRs the caller may have.
pub struct CaService {
    ca: Arc<Ca>,
    placement: Placement,
    metrics: Arc<CaMetrics>,
}

impl CaService {
    /// `model` says where workloads run (e.g. `FileSource::subscribe()`); it is read at each
    /// request, so placement changes apply at once. Callers need node certificates.
    pub fn new(ca: Arc<Ca>, model: watch::Receiver<Arc<Model>>) -> Self {
        CaService {
            ca,
            placement: Placement::Model(model),
            metrics: Arc::default(),
        }
    }

    /// The CA on a cluster: callers without a node certificate authenticate with a
    /// service-account token, and pod placement is read from the API server.
    pub fn kube(ca: Arc<Ca>, auth: KubeAuth) -> Self {
        CaService {
            ca,
            placement: Placement::Kube(auth),
            metrics: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<CaMetrics> {
        self.metrics.clone()
    }

    fn refuse(&self, caller: &dyn fmt::Display, identity: &str, status: Status) -> Status {
        self.metrics.refused_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%caller, identity, reason = status.message(), "refused a certificate request");
        status
    }

    /// Authenticates the request: the connection's node certificate, else its bearer token.
    async fn caller(&self, peer: &CaPeer, metadata: &MetadataMap) -> Result<Caller, Status> {
        if let Some(node) = &peer.node {
            return Ok(Caller::Node(node.clone()));
        }
        let Placement::Kube(auth) = &self.placement else {
            return Err(Status::unauthenticated("no node client certificate"));
        };
        let token = bearer(metadata).ok_or_else(|| {
            Status::unauthenticated(
                "no node client certificate and no service-account token (authorization: Bearer)",
            )
        })?;
        let token_status = |e: TokenError| {
            if e.is_callers_fault() {
                Status::unauthenticated(e.to_string())
            } else {
                Status::unavailable(e.to_string())
            }
        };
        let owner = auth.review(&token).await.map_err(token_status)?;
        if !auth.is_node_agent(&owner) {
            return Ok(Caller::Workload(owner));
        }
        let node = auth.node_of(&owner).await.map_err(token_status)?;
        NodeId::new(self.ca.trust_domain(), &node)
            .map(Caller::Node)
            .map_err(|e| Status::unauthenticated(e.to_string()))
    }

    async fn sign_for(&self, caller: &Caller, req: &SignRequest) -> Result<SignResponse, Status> {
        let id: SpiffeId = req
            .identity
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let denied = |r: Refusal| Status::permission_denied(r.to_string());
        match (caller, &self.placement) {
            (Caller::Workload(owner), _) => {
                authorize_own(self.ca.trust_domain(), owner, &id).map_err(denied)?;
            }
            (Caller::Node(node), Placement::Model(model)) => {
                let model = model.borrow().clone();
                authorize(&model, node, &id).map_err(denied)?;
            }
            (Caller::Node(node), Placement::Kube(auth)) => {
                let on_node = auth
                    .pods_on_node(node.name())
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                authorize_scheduled(self.ca.trust_domain(), &on_node, node, &id).map_err(denied)?;
            }
        }
        let ttl = (req.ttl_seconds > 0).then(|| Duration::from_secs(req.ttl_seconds));
        let chain = self.ca.sign(&req.csr_pem, &id, ttl).map_err(|e| {
            if e.is_invalid_request() {
                Status::invalid_argument(e.to_string())
            } else {
                Status::internal(e.to_string())
            }
        })?;
        Ok(SignResponse {
            cert_chain_pem: chain.pem,
            trust_bundle_pem: self.ca.root_pem().to_string(),
        })
    }
}

#[tonic::async_trait]
impl CertificateAuthority for CaService {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let Some(peer) = request.extensions().get::<CaPeer>().cloned() else {
            return Err(Status::internal("the connection's peer is unknown"));
        };
        let caller = match self.caller(&peer, request.metadata()).await {
            Ok(caller) => caller,
            Err(status) => {
                let identity = request.get_ref().identity.clone();
                return Err(self.refuse(&peer.addr, &identity, status));
            }
        };
        let req = request.into_inner();
        match self.sign_for(&caller, &req).await {
            Ok(resp) => {
                self.metrics.signed_total.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%caller, identity = req.identity, "signed a workload certificate");
                Ok(Response::new(resp))
            }
            Err(status) => Err(self.refuse(&caller, &req.identity, status)),
        }
    }
}

/// The CA's TLS server configuration: a fresh serving certificate from the intermediate, and
/// client certificates checked against the mesh root (required, or optional for token
/// callers, as `clients` says).
pub fn server_config(ca: &Ca, clients: ClientAuth) -> Result<Arc<ServerConfig>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let (chain_pem, key_pem) = ca.issue_server_cert()?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.root().clone()).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if clients == ClientAuth::NodeCertificateOrToken {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| tls(&e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `service` on `listener` over mTLS until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    service: CaService,
    tls: Arc<ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let trust_domain = service.ca.trust_domain().to_string();
    let metrics = service.metrics();
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept(
        listener,
        TlsAcceptor::from(tls),
        trust_domain,
        metrics,
        tx,
    ));
    let result = tonic::transport::Server::builder()
        .add_service(CertificateAuthorityServer::new(service))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await;
    acceptor.abort();
    Ok(result?)
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    trust_domain: String,
    metrics: Arc<CaMetrics>,
    tx: mpsc::Sender<Result<NodeConn, io::Error>>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, td, metrics, tx) = (
            acceptor.clone(),
            trust_domain.clone(),
            metrics.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            match handshake(&acceptor, tcp, addr, &td).await {
                Ok(conn) => {
                    let _ = tx.send(Ok(conn)).await;
                }
                Err(reason) => {
                    metrics
                        .handshake_failures_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%addr, reason, "refused a CA connection");
                }
            }
        });
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    trust_domain: &str,
) -> Result<NodeConn, String> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| format!("TLS handshake not done within {HANDSHAKE_TIMEOUT:?}"))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, session) = tls.get_ref();
    // Without a certificate the verifier let the connection in only if tokens are accepted;
    // each request must then carry one.
    let Some(leaf) = session.peer_certificates().and_then(|certs| certs.first()) else {
        return Ok(NodeConn {
            tls,
            peer: CaPeer { node: None, addr },
        });
    };
    let node = NodeId::from_cert(leaf).map_err(|e| e.to_string())?;
    if node.trust_domain() != trust_domain {
        return Err(format!(
            "{node} is not in the mesh's trust domain {trust_domain}"
        ));
    }
    Ok(NodeConn {
        tls,
        peer: CaPeer {
            node: Some(node),
            addr,
        },
    })
}

/// An accepted TLS connection and the node it proved to be, if any.
pub struct NodeConn {
    tls: TlsStream<TcpStream>,
    peer: CaPeer,
}

impl Connected for NodeConn {
    type ConnectInfo = CaPeer;

    fn connect_info(&self) -> CaPeer {
        self.peer.clone()
    }
}

impl AsyncRead for NodeConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}
