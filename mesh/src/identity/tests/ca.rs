//! The CA's signing logic, without gRPC: what a leaf contains and which CSRs are refused.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};

use super::{id, temp_dir, test_ca, verify_client_chain};
use crate::identity::{Ca, CaError, LeafInfo, PendingSvid, DEFAULT_TTL, MAX_TTL};

#[test]
fn ca_issues_a_p256_leaf_with_exactly_the_requested_uri_san_for_24_hours() {
    let ca = test_ca("leaf");
    let client = id("shop", "client");
    let pending = PendingSvid::generate(&client).unwrap();
    let chain = ca.sign(&pending.csr_pem, &client, None).unwrap();
    assert_eq!(chain.der.len(), 2, "leaf and intermediate");

    let (_, leaf) = x509_parser::parse_x509_certificate(&chain.der[0]).unwrap();
    let sans: Vec<_> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .clone();
    assert_eq!(
        sans,
        [GeneralName::URI("spiffe://cluster.local/ns/shop/sa/client")]
    );
    let spki = leaf.public_key();
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve, OID_EC_P256);
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!leaf.is_ca());

    let info = LeafInfo::parse(&chain.der[0]).unwrap();
    assert_eq!(info.id, client);
    let remaining = info.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(
        remaining > DEFAULT_TTL - Duration::from_secs(10) && remaining <= DEFAULT_TTL,
        "{remaining:?}"
    );
    let svid = pending.complete(&chain.pem).unwrap();
    assert_eq!(svid.chain, chain.der);
    svid.certified_key().unwrap();
}

#[test]
fn issued_chain_verifies_to_the_root() {
    let ca = test_ca("verify");
    let client = id("shop", "client");
    let pending = PendingSvid::generate(&client).unwrap();
    let chain = ca.sign(&pending.csr_pem, &client, None).unwrap();
    verify_client_chain(ca.root(), &chain.der).unwrap();

    let stranger = test_ca("stranger");
    assert!(verify_client_chain(stranger.root(), &chain.der).is_err());
}

#[test]
fn csr_for_another_identity_is_refused() {
    let ca = test_ca("mismatch");
    let pending = PendingSvid::generate(&id("shop", "payments")).unwrap();
    let err = ca
        .sign(&pending.csr_pem, &id("shop", "client"), None)
        .unwrap_err();
    assert!(matches!(err, CaError::CsrIdentity { .. }), "{err}");
    assert!(err.is_invalid_request());
    assert_eq!(
        err.to_string(),
        "the CSR must name exactly the identity asked for \
         (spiffe://cluster.local/ns/shop/sa/client) as its only SAN, \
         it names [\"spiffe://cluster.local/ns/shop/sa/payments\"]"
    );
}

#[test]
fn identity_outside_the_trust_domain_is_refused() {
    let ca = test_ca("td");
    let other = crate::identity::SpiffeId::new("evil.example", "shop", "client").unwrap();
    let pending = PendingSvid::generate(&other).unwrap();
    let err = ca.sign(&pending.csr_pem, &other, None).unwrap_err();
    assert!(matches!(err, CaError::TrustDomain { .. }), "{err}");
}

#[test]
fn garbage_csr_is_refused() {
    let ca = test_ca("garbage");
    let err = ca
        .sign("not a csr", &id("shop", "client"), None)
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
}

#[test]
fn requested_lifetime_is_honoured_up_to_seven_days() {
    let ca = test_ca("ttl");
    let client = id("shop", "client");
    let lifetime = |ttl| {
        let pending = PendingSvid::generate(&client).unwrap();
        let chain = ca.sign(&pending.csr_pem, &client, Some(ttl)).unwrap();
        let info = LeafInfo::parse(&chain.der[0]).unwrap();
        info.not_after.duration_since(SystemTime::now()).unwrap()
    };
    let hour = lifetime(Duration::from_secs(3600));
    assert!(hour > Duration::from_secs(3590) && hour <= Duration::from_secs(3600));
    let capped = lifetime(Duration::from_secs(30 * 24 * 3600));
    assert!(capped > MAX_TTL - Duration::from_secs(10) && capped <= MAX_TTL);
}

#[test]
fn init_writes_keys_readable_only_by_their_owner_and_never_overwrites() {
    let dir = temp_dir("init");
    Ca::init(&dir).unwrap();
    for (file, mode) in [
        ("root-key.pem", 0o600),
        ("intermediate-key.pem", 0o600),
        ("root.pem", 0o644),
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    assert!(matches!(Ca::init(&dir), Err(CaError::Exists { .. })));
}

#[test]
fn node_certificate_names_its_node() {
    let ca = test_ca("node");
    let node = crate::identity::NodeId::new("cluster.local", "n1").unwrap();
    let (chain_pem, _key) = ca.issue_node_cert(&node).unwrap();
    let leaf = rustls::pki_types::pem::PemObject::from_pem_slice(chain_pem.as_bytes()).unwrap();
    assert_eq!(crate::identity::NodeId::from_cert(&leaf).unwrap(), node);
}
