//! Test certificates: a mesh root, an intermediate and SVIDs minted with rcgen.

use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::identity::SpiffeId;

/// A mesh CA: self-signed root, one intermediate that signs the SVIDs.
pub(crate) struct TestCa {
    root: CertificateDer<'static>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("{name} root")),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("{name} intermediate")),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        TestCa {
            root: root.der().clone(),
            intermediate,
        }
    }

    pub(crate) fn roots(&self) -> Arc<RootCertStore> {
        super::roots_from_der(std::slice::from_ref(&self.root)).unwrap()
    }

    /// A valid SVID for `id` (a SPIFFE ID string), chain leaf + intermediate.
    pub(crate) fn svid(&self, id: &str) -> Arc<CertifiedKey> {
        self.svid_with(id, |_| {})
    }

    /// An SVID for `id` that expired in 2021.
    pub(crate) fn expired_svid(&self, id: &str) -> Arc<CertifiedKey> {
        self.svid_with(id, |params| {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        })
    }

    fn svid_with(&self, id: &str, edit: impl FnOnce(&mut CertificateParams)) -> Arc<CertifiedKey> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.intermediate).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain = vec![leaf.der().clone(), self.intermediate.der().clone()];
        Arc::new(CertifiedKey::from_der(chain, key_der, &super::provider()).unwrap())
    }
}

pub(crate) fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}
