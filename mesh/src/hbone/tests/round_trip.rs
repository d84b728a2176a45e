use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn connect_carries_data_both_ways_with_half_close() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = shouting_destination().await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());

    let mut stream = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    stream.write_all(b"hello mesh").await.unwrap();
    // The destination answers only after EOF: it must see our half-close, and we must still read.
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"HELLO MESH");

    until(&stats.bytes_from_callers, 10).await;
    until(&stats.bytes_to_callers, 10).await;
    until(&stats.streams_accepted, 1).await;
}

#[tokio::test]
async fn megabytes_flow_both_ways_through_flow_control() {
    let ca = TestCa::new("mesh");
    let settings = ServerSettings {
        stream_window: 64 * 1024,
        ..ServerSettings::default()
    };
    let (node, _) = start_server(&ca, reviews_certs(&ca), forward, settings).await;
    let destination = echo_destination().await;
    let small_windows = PoolSettings {
        stream_window: 64 * 1024,
        connection_window: 128 * 1024,
        ..PoolSettings::default()
    };
    let pool = pool_as(ca.svid(CLIENT), &ca, small_windows);

    let stream = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let writing = tokio::spawn(async move {
        writer.write_all(&sent).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    reader.read_to_end(&mut echoed).await.unwrap();
    writing.await.unwrap();
    assert!(
        echoed == payload,
        "echo differs ({} bytes back)",
        echoed.len()
    );
}

#[tokio::test]
async fn server_sees_the_caller_identity_forwarded_address_and_baggage() {
    let ca = TestCa::new("mesh");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        move |request: ConnectRequest| {
            seen.lock().unwrap().push(request.clone());
            forward(request)
        }
    };
    let (node, _) = start_server(&ca, reviews_certs(&ca), record, ServerSettings::default()).await;
    let destination = shouting_destination().await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());
    let client: SocketAddr = "[fd00::7]:4321".parse().unwrap();
    let baggage = "k8s.namespace.name=shop,k8s.pod.name=client".to_string();

    let mut stream = pool
        .connect(key(node), destination, client, baggage.clone())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let [request] = seen.as_slice() else {
        panic!("want one CONNECT, got {seen:?}");
    };
    assert_eq!(request.caller, id(CLIENT));
    assert_eq!(request.target, destination);
    assert_eq!(request.forwarded_for, Some(client));
    assert_eq!(request.baggage.as_deref(), Some(baggage.as_str()));
}

#[tokio::test]
async fn a_relayed_socket_keeps_half_close_and_counts_both_ways() {
    let ca = TestCa::new("mesh");
    let (node, stats) =
        start_server(&ca, reviews_certs(&ca), forward, ServerSettings::default()).await;
    let destination = shouting_destination().await;
    let pool = pool_as(ca.svid(CLIENT), &ca, PoolSettings::default());
    // The agent's side of a redirected connection, and the application's.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut app = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (redirected, _) = listener.accept().await.unwrap();

    let stream = pool
        .connect(key(node), destination, client_addr(), String::new())
        .await
        .unwrap();
    let relay = tokio::spawn(stream.relay(redirected));
    let payload: Vec<u8> = (0..300 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    app.write_all(&payload).await.unwrap();
    // The destination answers only after EOF, which must cross the tunnel as END_STREAM.
    app.shutdown().await.unwrap();
    let mut answer = Vec::new();
    app.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer == payload.to_ascii_uppercase(),
        "answer differs ({} bytes)",
        answer.len()
    );

    let moved = relay.await.unwrap().unwrap();
    assert_eq!(moved, (payload.len() as u64, payload.len() as u64));
    until(&stats.bytes_from_callers, payload.len() as u64).await;
    until(&stats.bytes_to_callers, payload.len() as u64).await;
}

/// Delivers like [`forward`], and presents `key` on connections to loopback that name no
/// server, as an agent presents the certificate of the pod a connection is addressed to.
struct ByAddress {
    key: Arc<rustls::sign::CertifiedKey>,
}

impl Inbound for ByAddress {
    type Upstream = TcpStream;

    async fn connect(&self, request: ConnectRequest) -> Result<TcpStream, Refusal> {
        forward(request).await
    }

    fn certificate_at(&self, local: std::net::IpAddr) -> Option<Arc<rustls::sign::CertifiedKey>> {
        local.is_loopback().then(|| self.key.clone())
    }
}

/// Dials `node` as Istio's ztunnel does: the server named by address (so no SNI), expecting
/// `SERVER`'s identity. Returns the TLS error, or the echo of one CONNECT.
async fn dial_without_name(ca: &TestCa, node: SocketAddr) -> Result<Vec<u8>, std::io::Error> {
    let config = tls::client_config(ca.svid(CLIENT), ca.roots(), id(SERVER)).unwrap();
    let tcp = TcpStream::connect(node).await?;
    let name = rustls::pki_types::ServerName::IpAddress(node.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    assert_eq!(
        tls::peer_identity(tls.get_ref().1).unwrap(),
        id(SERVER),
        "the certificate of the workload at the dialled address"
    );
    let (mut sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let destination = echo_destination().await;
    let request = http::Request::connect(destination.to_string())
        .body(())
        .unwrap();
    let (response, mut send) = sender.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    send.send_data(bytes::Bytes::from_static(b"no name"), true)
        .unwrap();
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        echoed.extend_from_slice(&chunk);
    }
    Ok(echoed)
}

#[tokio::test]
async fn a_client_that_names_no_server_gets_the_certificate_of_the_address_it_dialled() {
    let ca = TestCa::new("mesh");
    let by_address = ByAddress {
        key: ca.svid(SERVER),
    };
    // No certificate by server name at all: only the address can pick one.
    let (node, stats) = start_server(
        &ca,
        ServerCerts::new(),
        by_address,
        ServerSettings::default(),
    )
    .await;
    assert_eq!(dial_without_name(&ca, node).await.unwrap(), b"no name");
    until(&stats.streams_accepted, 1).await;

    eprintln!("a server that knows no certificate for the address refuses the handshake");
    let (plain, stats) =
        start_server(&ca, ServerCerts::new(), forward, ServerSettings::default()).await;
    assert!(dial_without_name(&ca, plain).await.is_err());
    until(&stats.handshakes_failed, 1).await;
}
