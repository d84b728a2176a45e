//! The CA's gRPC service end to end over loopback, with real mTLS.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{id, mesh, test_ca, verify_client_chain};
use crate::identity::{
    client_config, serve, server_config, Ca, CaClient, CaMetrics, CaService, ClientAuth, NodeId,
    CA_SERVER_NAME,
};

/// A CA serving on loopback, for as long as the returned value lives.
struct RunningCa {
    addr: SocketAddr,
    ca: Arc<Ca>,
    metrics: Arc<CaMetrics>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RunningCa {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start_ca(name: &str) -> RunningCa {
    let ca = test_ca(name);
    let (_tx, model) = watch::channel(Arc::new(mesh()));
    let service = CaService::new(ca.clone(), model);
    let metrics = service.metrics();
    let tls = server_config(&ca, ClientAuth::NodeCertificate).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _keep_model = _tx;
        serve(listener, service, tls, std::future::pending())
            .await
            .unwrap();
    });
    RunningCa {
        addr,
        ca,
        metrics,
        server,
    }
}

/// A client holding node `node`'s certificate from `ca`.
fn node_client(running: &RunningCa, ca: &Ca, node: &str) -> CaClient {
    let node = NodeId::new("cluster.local", node).unwrap();
    let (chain, key) = ca.issue_node_cert(&node).unwrap();
    let tls = client_config(&chain, &key, running.ca.root_pem()).unwrap();
    CaClient::new(running.addr, tls)
}

#[tokio::test]
async fn node_obtains_the_identity_of_a_pod_scheduled_on_it() {
    let running = start_ca("grpc-ok").await;
    let client = node_client(&running, &running.ca, "n1");
    let svid = client.sign(&id("shop", "client")).await.unwrap();
    assert_eq!(svid.id, id("shop", "client"));
    verify_client_chain(running.ca.root(), &svid.chain).unwrap();
    svid.certified_key().unwrap();
    assert_eq!(running.metrics.signed_total.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn node_is_refused_the_identity_of_a_pod_on_another_node_with_the_reason() {
    let running = start_ca("grpc-refused").await;
    let client = node_client(&running, &running.ca, "n1");
    let err = client.sign(&id("shop", "payments")).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(
            "node n1 may not obtain spiffe://cluster.local/ns/shop/sa/payments: \
             no workload of service account payments in namespace shop is scheduled on n1"
        ),
        "{message}"
    );
    assert_eq!(running.metrics.refused_total.load(Ordering::Relaxed), 1);

    // The same node is still served for its own pods.
    client.sign(&id("shop", "client")).await.unwrap();
}

#[tokio::test]
async fn node_certificate_from_another_ca_fails_the_handshake() {
    let running = start_ca("grpc-stranger").await;
    let stranger = test_ca("grpc-stranger-ca");
    let client = node_client(&running, &stranger, "n1");
    let err = client.sign(&id("shop", "client")).await.unwrap_err();
    assert!(err.to_string().contains("transport error"), "{err}");
    assert_eq!(running.metrics.signed_total.load(Ordering::Relaxed), 0);
    assert!(
        running
            .metrics
            .handshake_failures_total
            .load(Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn connection_without_a_client_certificate_fails_the_handshake() {
    let running = start_ca("grpc-anonymous").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(running.ca.root().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let name = ServerName::try_from(CA_SERVER_NAME).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // In TLS 1.3 the client finishes first; the server's refusal arrives as an alert.
    let outcome = async {
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    };
    let result = tokio::time::timeout(Duration::from_secs(3), outcome)
        .await
        .unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    for _ in 0..50 {
        if running
            .metrics
            .handshake_failures_total
            .load(Ordering::Relaxed)
            == 1
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the refused handshake was not counted");
}
