//! Tests of identities, by topic: the CA's signing, node authorization, the gRPC service over
//! mTLS, and rotation.

mod authz;
mod ca;
mod grpc;
mod live;
mod rotation;
mod token;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::{Ca, SpiffeId};
use crate::model::Model;

/// Two nodes: n1 runs shop/client and shop/echo (and a host-network monitor), n2 runs
/// shop/echo and shop/payments.
const MESH: &str = "
trustDomain: cluster.local
nodes:
  - {name: n1, address: 192.168.50.1}
  - {name: n2, address: 192.168.50.2}
namespaces:
  - {name: shop, labels: {ambit.dev/dataplane-mode: ambient}}
workloads:
  - {name: client, namespace: shop, serviceAccount: client, node: n1, ips: [10.10.1.2]}
  - {name: echo-1, namespace: shop, serviceAccount: echo, node: n1, ips: [10.10.1.3]}
  - {name: echo-2, namespace: shop, serviceAccount: echo, node: n2, ips: [10.10.2.2]}
  - {name: payments, namespace: shop, serviceAccount: payments, node: n2, ips: [10.10.2.3]}
  - {name: monitor, namespace: shop, serviceAccount: monitor, node: n1, hostNetwork: true}
";

fn mesh() -> Model {
    crate::config::parse(MESH).expect("the test mesh parses")
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).expect("valid id")
}

/// A fresh directory under the system temp dir, unique per call.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ambit-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A CA initialised in its own directory, for trust domain cluster.local.
fn test_ca(name: &str) -> Arc<Ca> {
    let dir = temp_dir(name);
    Ca::init(&dir).expect("init");
    Arc::new(Ca::load(&dir, "cluster.local").expect("load"))
}

/// Checks with rustls-webpki that `chain` (leaf first) verifies to `root` for client auth.
fn verify_client_chain(
    root: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
}
