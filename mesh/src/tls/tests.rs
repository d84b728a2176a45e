use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::test_pki::{id, TestCa};
use super::*;

const CLIENT: &str = "spiffe://cluster.local/ns/shop/sa/client";
const SERVER: &str = "spiffe://cluster.local/ns/shop/sa/reviews";

/// Runs one handshake over an in-memory pipe; returns what each side saw.
async fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    sni_of: &str,
) -> (Result<SpiffeId, String>, Result<SpiffeId, String>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = tokio::spawn(async move {
        match TlsAcceptor::from(server).accept(b).await {
            Ok(mut tls) => {
                let caller = peer_identity(tls.get_ref().1).map_err(|e| e.to_string());
                let _ = tls.write_all(b"x").await;
                let _ = tls.shutdown().await;
                caller
            }
            Err(err) => Err(describe_handshake_error(&err)),
        }
    });
    let client_side = match TlsConnector::from(client)
        .connect(sni_for(&id(sni_of)), a)
        .await
    {
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            let _ = tls.read_exact(&mut byte).await;
            peer_identity(tls.get_ref().1).map_err(|e| e.to_string())
        }
        Err(err) => Err(describe_handshake_error(&err)),
    };
    (client_side, server_side.await.unwrap())
}

fn server_for(ca: &TestCa, served: &str) -> Arc<ServerConfig> {
    let certs = Arc::new(ServerCerts::new());
    certs.insert(id(served), ca.svid(served));
    server_config(certs, ca.roots(), "cluster.local").unwrap()
}

#[tokio::test]
async fn both_sides_learn_the_identity_the_other_proved() {
    let ca = TestCa::new("mesh");
    let client = client_config(ca.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let (client_saw, server_saw) = handshake(client, server_for(&ca, SERVER), SERVER).await;
    assert_eq!(client_saw.unwrap(), id(SERVER));
    assert_eq!(server_saw.unwrap(), id(CLIENT));
}

#[tokio::test]
async fn client_refuses_a_server_presenting_another_identity() {
    let ca = TestCa::new("mesh");
    let other = "spiffe://cluster.local/ns/shop/sa/ratings";
    // The server holds only `ratings` but answers for the `reviews` server name.
    let certs = Arc::new(ServerCerts::new());
    let ratings = ca.svid(other);
    certs.insert(id(SERVER), ratings);
    let server = server_config(certs, ca.roots(), "cluster.local").unwrap();
    let client = client_config(ca.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let (client_saw, _) = handshake(client, server, SERVER).await;
    let err = client_saw.unwrap_err();
    assert!(
        err.contains(&format!("server presented {other}, expected {SERVER}")),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_from_another_trust_domain() {
    let ca = TestCa::new("mesh");
    let stranger = "spiffe://other.example/ns/shop/sa/client";
    let client = client_config(ca.svid(stranger), ca.roots(), id(SERVER)).unwrap();
    let (_, server_saw) = handshake(client, server_for(&ca, SERVER), SERVER).await;
    let err = server_saw.unwrap_err();
    assert!(
        err.contains(&format!(
            "client presented {stranger}, outside trust domain cluster.local"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_signed_by_another_root() {
    let ca = TestCa::new("mesh");
    let rogue = TestCa::new("rogue");
    let client = client_config(rogue.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let (_, server_saw) = handshake(client, server_for(&ca, SERVER), SERVER).await;
    let err = server_saw.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn server_refuses_an_expired_client_certificate() {
    let ca = TestCa::new("mesh");
    let client = client_config(ca.expired_svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let (_, server_saw) = handshake(client, server_for(&ca, SERVER), SERVER).await;
    let err = server_saw.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[tokio::test]
async fn server_without_the_asked_identity_fails_the_handshake() {
    let ca = TestCa::new("mesh");
    let client = client_config(ca.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let other = "spiffe://cluster.local/ns/shop/sa/ratings";
    let (client_saw, server_saw) = handshake(client, server_for(&ca, SERVER), other).await;
    assert!(client_saw.is_err() && server_saw.is_err());
}

#[test]
fn server_names_are_short_stable_dns_names() {
    let name = sni_for(&id(SERVER)).to_str().into_owned();
    assert_eq!(name.len(), 32 + SNI_SUFFIX_LEN);
    assert!(name.ends_with(".id.ambit"), "{name}");
    assert_eq!(sni_for(&id(SERVER)), sni_for(&id(SERVER)));
    assert_ne!(sni_for(&id(SERVER)), sni_for(&id(CLIENT)));
}

const SNI_SUFFIX_LEN: usize = ".id.ambit".len();

#[test]
fn an_svid_names_exactly_one_workload() {
    let ca = TestCa::new("mesh");
    let svid = ca.svid(CLIENT);
    assert_eq!(spiffe_id_of(&svid.cert[0]).unwrap(), id(CLIENT));
    // The intermediate has no URI SAN.
    assert!(matches!(spiffe_id_of(&svid.cert[1]), Err(SanError::NoUri)));
}

#[test]
fn mesh_connections_prefer_aes_128_gcm_and_offer_only_tls13() {
    let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        suites.first(),
        Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    assert!(
        provider().cipher_suites.iter().all(|s| s.tls13().is_some()),
        "{suites:?}"
    );
}
