//! The CA's gRPC service over mTLS: node agents prove their node with a client certificate.
//!
//! tonic is served over our own tokio-rustls acceptor (`serve_with_incoming`), so the node
//! identity is read from the verified client certificate once per connection and reaches the
//! handler as connect info ([`NodePeer`]); nothing the request says can change it.

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
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::authz::authorize;
use super::ca::{Ca, CaError};
use super::node::NodeId;
use super::proto::certificate_authority_server::{
    CertificateAuthority, CertificateAuthorityServer,
};
use super::proto::{SignRequest, SignResponse};
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

/// Who is calling, from the verified client certificate.
#[derive(Debug, Clone)]
pub struct NodePeer {
    pub node: NodeId,
    pub addr: SocketAddr,
}

/// The `ambit.ca.v1.CertificateAuthority` service: signs CSRs the calling node may have.
pub struct CaService {
    ca: Arc<Ca>,
    model: watch::Receiver<Arc<Model>>,
    metrics: Arc<CaMetrics>,
}

impl CaService {
    /// `model` says where workloads run (e.g. `FileSource::subscribe()`); it is read at each
    /// request, so placement changes apply at once.
    pub fn new(ca: Arc<Ca>, model: watch::Receiver<Arc<Model>>) -> Self {
        CaService {
            ca,
            model,
            metrics: Arc::default(),
        }
    }

    pub fn metrics(&self) -> Arc<CaMetrics> {
        self.metrics.clone()
    }

    fn refuse(&self, node: &NodeId, identity: &str, status: Status) -> Status {
        self.metrics.refused_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%node, identity, reason = status.message(), "refused a certificate request");
        status
    }

    fn sign_for(&self, node: &NodeId, req: &SignRequest) -> Result<SignResponse, Status> {
        let id: SpiffeId = req
            .identity
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let model = self.model.borrow().clone();
        authorize(&model, node, &id).map_err(|r| Status::permission_denied(r.to_string()))?;
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
        let Some(peer) = request.extensions().get::<NodePeer>().cloned() else {
            return Err(Status::unauthenticated("no node client certificate"));
        };
        let req = request.into_inner();
        match self.sign_for(&peer.node, &req) {
            Ok(resp) => {
                self.metrics.signed_total.fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %peer.node, identity = req.identity, "signed a workload certificate");
                Ok(Response::new(resp))
            }
            Err(status) => Err(self.refuse(&peer.node, &req.identity, status)),
        }
    }
}

/// The CA's TLS server configuration: a fresh serving certificate from the intermediate, and
/// a client certificate chained to the mesh root required of every caller.
pub fn server_config(ca: &Ca) -> Result<Arc<ServerConfig>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let (chain_pem, key_pem) = ca.issue_server_cert()?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.root().clone()).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls(&e))?;
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
    let leaf = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or("no client certificate")?;
    let node = NodeId::from_cert(leaf).map_err(|e| e.to_string())?;
    if node.trust_domain() != trust_domain {
        return Err(format!(
            "{node} is not in the mesh's trust domain {trust_domain}"
        ));
    }
    Ok(NodeConn {
        tls,
        peer: NodePeer { node, addr },
    })
}

/// An accepted mTLS connection and the node it proved to be.
pub struct NodeConn {
    tls: TlsStream<TcpStream>,
    peer: NodePeer,
}

impl Connected for NodeConn {
    type ConnectInfo = NodePeer;

    fn connect_info(&self) -> NodePeer {
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
