//! The caller's side of the CA protocol: TLS to the CA, authenticated by a node certificate
//! (sandbox) or a Kubernetes service-account token re-read at each request (a projected token
//! is rotated by the kubelet); CSRs for keys generated here, so private keys never leave the
//! caller.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::ca::CA_SERVER_NAME;
use super::proto::certificate_authority_client::CertificateAuthorityClient;
use super::proto::SignRequest;
use super::rotator::CertificateSource;
use super::svid::{PendingSvid, Svid, SvidError};
use super::SpiffeId;

/// The files `ambit-controller issue-node-cert` writes into a node's directory.
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node-key.pem";
pub const TRUST_BUNDLE: &str = "root.pem";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the node credentials are unusable: {0}")]
    Credentials(String),
    /// The CA refused (PermissionDenied, InvalidArgument) or could not be reached.
    #[error("asking the CA at {addr} for {id} failed: {status}")]
    Call {
        addr: String,
        id: String,
        status: Box<tonic::Status>,
    },
    #[error("the CA returned an unusable certificate for {id}: {source}")]
    BadResponse { id: String, source: SvidError },
    #[error("could not prepare a CSR: {0}")]
    Csr(SvidError),
}

impl CaClientError {
    /// The gRPC status code, when the CA answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CaClientError::Call { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// A connection to the mesh CA, authenticated as a node or by a token. Cheap to clone.
#[derive(Clone)]
pub struct CaClient {
    /// `host:port` or `ip:port`; a host name is resolved at each connect.
    addr: String,
    grpc: CertificateAuthorityClient<Channel>,
    ttl: Option<Duration>,
    /// A service-account token file sent with each request (cluster mode).
    token_file: Option<PathBuf>,
}

impl CaClient {
    /// A client for the CA at `addr` (`host:port`); connects lazily and reconnects as needed.
    pub fn new(addr: impl ToString, tls: Arc<ClientConfig>) -> Self {
        let addr = addr.to_string();
        // The URI only names the :authority; the connector dials `addr`.
        let endpoint = Endpoint::from_static("http://ambit-ca")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let channel = endpoint.connect_with_connector_lazy(Connector {
            addr: addr.clone(),
            tls: TlsConnector::from(tls),
        });
        CaClient {
            addr,
            grpc: CertificateAuthorityClient::new(channel),
            ttl: None,
            token_file: None,
        }
    }

    /// A client using the node credentials in `dir` (see [`NODE_CERT`] and friends).
    pub fn from_dir(addr: impl ToString, dir: &Path) -> Result<Self, CaClientError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaClientError::Read { path, source })
        };
        let config = client_config(&read(NODE_CERT)?, &read(NODE_KEY)?, &read(TRUST_BUNDLE)?)?;
        Ok(CaClient::new(addr, config))
    }

    /// A client that authenticates with the service-account token in `token_file` (re-read
    /// at each request) and trusts the mesh root in `root_file`, with no client certificate.
    pub fn with_token(
        addr: impl ToString,
        root_file: &Path,
        token_file: &Path,
    ) -> Result<Self, CaClientError> {
        let root = std::fs::read_to_string(root_file).map_err(|source| CaClientError::Read {
            path: root_file.to_path_buf(),
            source,
        })?;
        read_token(token_file)?;
        let mut client = CaClient::new(addr, token_client_config(&root)?);
        client.token_file = Some(token_file.to_path_buf());
        Ok(client)
    }

    /// Asks for leaves of this lifetime instead of the CA's default (tests, short rotations).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Generates a key pair here, has the CA sign its CSR for `id`, and returns the SVID.
    pub async fn sign(&self, id: &SpiffeId) -> Result<Svid, CaClientError> {
        let pending = PendingSvid::generate(id).map_err(CaClientError::Csr)?;
        let request = SignRequest {
            csr_pem: pending.csr_pem.clone(),
            identity: id.to_string(),
            ttl_seconds: self.ttl.map_or(0, |t| t.as_secs().max(1)),
        };
        let mut request = tonic::Request::new(request);
        if let Some(path) = &self.token_file {
            let value = format!("Bearer {}", read_token(path)?)
                .parse()
                .map_err(|_| {
                    CaClientError::Credentials(format!(
                        "{} holds characters a header cannot carry",
                        path.display()
                    ))
                })?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = self
            .grpc
            .clone()
            .sign(request)
            .await
            .map_err(|status| CaClientError::Call {
                addr: self.addr.clone(),
                id: id.to_string(),
                status: Box::new(status),
            })?
            .into_inner();
        pending
            .complete(&response.cert_chain_pem)
            .map_err(|source| CaClientError::BadResponse {
                id: id.to_string(),
                source,
            })
    }
}

impl CertificateSource for CaClient {
    type Error = CaClientError;

    async fn sign(&self, id: &SpiffeId) -> Result<Svid, CaClientError> {
        CaClient::sign(self, id).await
    }
}

/// The mesh root(s) from a node directory's [`TRUST_BUNDLE`]: what peers' chains must verify
/// to (e.g. `tls::roots_from_der(&bundle)`).
pub fn load_trust_bundle(dir: &Path) -> Result<Vec<CertificateDer<'static>>, CaClientError> {
    load_roots(&dir.join(TRUST_BUNDLE))
}

/// The mesh root(s) from a PEM file (e.g. the root mounted from a Secret on a cluster).
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaClientError> {
    let pem = std::fs::read(path).map_err(|source| CaClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaClientError::Credentials(format!("{}: {e}", path.display())))?;
    if roots.is_empty() {
        return Err(CaClientError::Credentials(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The token in `path`, trimmed; an empty file is an error.
fn read_token(path: &Path) -> Result<String, CaClientError> {
    let token = std::fs::read_to_string(path).map_err(|source| CaClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(CaClientError::Credentials(format!(
            "{} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// The mesh root(s) in `root_pem` as a rustls trust store.
fn root_store(root_pem: &str) -> Result<RootCertStore, CaClientError> {
    let bad = |e: &dyn std::fmt::Display| CaClientError::Credentials(e.to_string());
    let mut roots = RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(root.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(CaClientError::Credentials(
            "the mesh root file holds no certificate".to_owned(),
        ));
    }
    Ok(roots)
}

/// TLS 1.3 client configuration for a token caller: no client certificate, only the mesh root
/// trusted; the CA must present a certificate for [`CA_SERVER_NAME`].
pub fn token_client_config(root_pem: &str) -> Result<Arc<ClientConfig>, CaClientError> {
    let bad = |e: &dyn std::fmt::Display| CaClientError::Credentials(e.to_string());
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad(&e))?
            .with_root_certificates(root_store(root_pem)?)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// TLS 1.3 client configuration presenting the node certificate and trusting only the mesh
/// root; the CA must present a certificate for [`CA_SERVER_NAME`].
pub fn client_config(
    node_chain_pem: &str,
    node_key_pem: &str,
    root_pem: &str,
) -> Result<Arc<ClientConfig>, CaClientError> {
    let bad = |e: &dyn std::fmt::Display| CaClientError::Credentials(e.to_string());
    let chain = CertificateDer::pem_slice_iter(node_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(node_key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let roots = root_store(root_pem)?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Dials the CA and runs the TLS handshake, for tonic's channel.
#[derive(Clone)]
struct Connector {
    addr: String,
    tls: TlsConnector,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tonic::codegen::Service<http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (addr, tls) = (self.addr.clone(), self.tls.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(CA_SERVER_NAME)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Ok(TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}
