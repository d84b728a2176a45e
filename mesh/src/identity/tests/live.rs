//! Renewal and live connections: a new SVID changes what new handshakes present, never an
//! established connection.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{id, test_ca};
use crate::identity::{Ca, CertStore, PendingSvid, SpiffeId, Svid, CA_SERVER_NAME};

/// Presents whatever the store holds for one identity at handshake time.
#[derive(Debug)]
struct FromStore {
    store: Arc<CertStore>,
    id: SpiffeId,
}

impl ResolvesClientCert for FromStore {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.store.certified_key(&self.id)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn issue(ca: &Ca, id: &SpiffeId) -> Svid {
    let pending = PendingSvid::generate(id).expect("CSR");
    let chain = ca.sign(&pending.csr_pem, id, None).expect("signed");
    pending.complete(&chain.pem).expect("complete")
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.root().clone()).expect("root");
    Arc::new(roots)
}

/// An echo server requiring mesh client certificates; reports each client's leaf.
async fn echo_server(
    ca: &Ca,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<CertificateDer<'static>>,
) {
    let (chain, key) = ca.issue_server_cert().expect("serving cert");
    let chain: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider.clone())
        .build()
        .expect("verifier");
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.expect("handshake");
                let leaf = tls.get_ref().1.peer_certificates().expect("client cert")[0].clone();
                tx.send(leaf).await.expect("report");
                let mut buf = [0u8; 64];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn echo(tls: &mut tokio_rustls::client::TlsStream<TcpStream>, message: &[u8]) {
    tls.write_all(message).await.unwrap();
    let mut buf = vec![0u8; message.len()];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, message);
}

#[tokio::test]
async fn renewal_changes_new_handshakes_and_leaves_live_connections_alone() {
    let ca = test_ca("live");
    let client = id("shop", "client");
    let store = CertStore::new();
    store.insert(issue(&ca, &client)).unwrap();
    let old_leaf = store.get(&client).unwrap().chain[0].clone();

    let (addr, mut seen) = echo_server(&ca).await;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(&ca))
            .with_client_cert_resolver(Arc::new(FromStore {
                store: store.clone(),
                id: client.clone(),
            }));
    // As in tls.rs: a resumed session would re-use the old certificate without a handshake.
    config.resumption = rustls::client::Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(CA_SERVER_NAME).unwrap();
        connector.connect(name, tcp).await.unwrap()
    };

    let mut live = connect().await;
    echo(&mut live, b"before renewal").await;
    assert_eq!(seen.recv().await.unwrap(), old_leaf);

    store.insert(issue(&ca, &client)).unwrap();
    let new_leaf = store.get(&client).unwrap().chain[0].clone();
    assert_ne!(new_leaf, old_leaf);

    echo(&mut live, b"after renewal, same connection").await;
    let mut fresh = connect().await;
    echo(&mut fresh, b"new connection").await;
    assert_eq!(seen.recv().await.unwrap(), new_leaf);
    echo(&mut live, b"still alive").await;
}
