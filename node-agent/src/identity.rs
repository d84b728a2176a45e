//! The agent's workload identities: which SVIDs it needs, and the task that gets them from
//! the mesh CA and renews them at half-life.
//!
//! The agent needs one SVID per identity of its enrolled local workloads: outbound it presents
//! the source workload's, inbound the destination workload's. Keys are generated here and never
//! leave the node; the CA only sees CSRs.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ambit_mesh::identity::{
    load_roots, load_trust_bundle, CaClient, CertRotator, CertStore, SpiffeId,
};
use ambit_mesh::model::Model;
use anyhow::{Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio::sync::watch;

/// How the agent proves itself to the CA.
#[derive(Debug, Clone)]
pub enum CaCredentials {
    /// node.pem, node-key.pem and root.pem in a directory (sandbox).
    NodeDir(PathBuf),
    /// A service-account token (re-read at each request) and the mesh root (cluster).
    Token {
        token_file: PathBuf,
        root_file: PathBuf,
    },
}

/// What the tunnel needs from identities: the SVIDs and the mesh root.
pub struct Identities {
    pub store: Arc<CertStore>,
    pub roots: Arc<RootCertStore>,
    pub trust_domain: String,
    wanted: watch::Sender<BTreeSet<SpiffeId>>,
    /// Server name (`tls::sni_for`) -> identity, for the identities this node holds.
    by_sni: RwLock<HashMap<String, SpiffeId>>,
}

impl Identities {
    /// Connects to the CA at `ca` (host:port) with `credentials` and starts the rotator.
    /// `ttl` asks for shorter-lived SVIDs (tests).
    pub fn start(
        ca: &str,
        credentials: &CaCredentials,
        trust_domain: &str,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        let (mut client, bundle) = match credentials {
            CaCredentials::NodeDir(dir) => {
                let client = CaClient::from_dir(ca, dir)
                    .with_context(|| format!("reading node credentials from {}", dir.display()))?;
                let bundle = load_trust_bundle(dir)
                    .with_context(|| format!("reading the mesh root from {}", dir.display()))?;
                (client, bundle)
            }
            CaCredentials::Token {
                token_file,
                root_file,
            } => {
                let client = CaClient::with_token(ca, root_file, token_file)
                    .context("preparing the CA client (--ca-token-file, --ca-root)")?;
                let bundle = load_roots(root_file)
                    .with_context(|| format!("reading the mesh root {}", root_file.display()))?;
                (client, bundle)
            }
        };
        if let Some(ttl) = ttl {
            client = client.with_ttl(ttl);
        }
        let roots = ambit_mesh::tls::roots_from_der(&bundle)
            .context("the mesh root is not a usable trust anchor")?;
        let store = CertStore::new();
        let (wanted, wanted_rx) = watch::channel(BTreeSet::new());
        CertRotator::new(Arc::clone(&store), client, wanted_rx).spawn();
        Ok(Identities {
            store,
            roots,
            trust_domain: trust_domain.to_string(),
            wanted,
            by_sni: RwLock::default(),
        })
    }

    /// Follows the model: SVIDs for identities no local workload uses any more are dropped.
    pub fn follow(&self, model: &Model, node: &str) {
        let want = wanted(model, node);
        let index = want
            .iter()
            .map(|id| {
                (
                    ambit_mesh::tls::sni_for(id).to_str().into_owned(),
                    id.clone(),
                )
            })
            .collect();
        *self.by_sni.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.wanted.send_if_modified(|current| {
            let changed = *current != want;
            *current = want;
            changed
        });
    }

    /// Waits up to `timeout` until every wanted identity has an SVID; false on timeout.
    pub async fn all_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing = self
                .wanted
                .borrow()
                .iter()
                .any(|id| self.store.get(id).is_none());
            if !missing {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` for the SVID of `id` (a workload enrolled a moment ago).
    pub async fn ready(&self, id: &SpiffeId, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.store.get(id).is_none() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// The HBONE server presents the certificate of the local workload a client names by SNI.
impl ResolvesServerCert for Identities {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        let id = self
            .by_sni
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sni)
            .cloned();
        match id {
            Some(id) => self.store.certified_key(&id),
            None => {
                tracing::debug!(
                    sni,
                    "HBONE client asked for an identity this node does not hold"
                );
                None
            }
        }
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("held", &self.store.identities())
            .finish()
    }
}

/// Identities of the workloads enrolled on `node`.
pub fn wanted(model: &Model, node: &str) -> BTreeSet<SpiffeId> {
    model
        .enrolled_on_node(node)
        .filter_map(|w| SpiffeId::new(model.trust_domain(), &w.namespace, &w.service_account).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_wants_the_identities_of_its_enrolled_workloads_once_each() {
        let model = ambit_mesh::config::parse(
            r#"
nodes: [{name: n1, address: 192.168.50.1}, {name: n2, address: 192.168.50.2}]
namespaces: [{name: shop, labels: {ambit.dev/dataplane-mode: ambient}}, {name: legacy}]
workloads:
  - {name: client, namespace: shop, serviceAccount: client, node: n1, ips: [10.1.1.2]}
  - {name: echo-1, namespace: shop, serviceAccount: echo, node: n1, ips: [10.1.1.3]}
  - {name: echo-3, namespace: shop, serviceAccount: echo, node: n1, ips: [10.1.1.4]}
  - {name: batch, namespace: shop, serviceAccount: batch, node: n1, ips: [10.1.1.5], labels: {ambit.dev/dataplane-mode: none}}
  - {name: old, namespace: legacy, node: n1, ips: [10.1.1.6]}
  - {name: echo-2, namespace: shop, serviceAccount: echo2, node: n2, ips: [10.1.2.2]}
"#,
        )
        .unwrap();
        let ids: Vec<String> = wanted(&model, "n1").iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ids,
            [
                "spiffe://cluster.local/ns/shop/sa/client",
                "spiffe://cluster.local/ns/shop/sa/echo"
            ]
        );
    }
}
