//! SPIFFE IDs of Kubernetes workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A workload identity. Only the Kubernetes form is accepted, so that namespace and service
/// account can always be read back out of it (policy and node authorization need them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{0:?} is not a SPIFFE ID (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)")]
    Shape(String),
    #[error("{value:?}: {part} {found:?} is not allowed (lowercase letters, digits, '-', '.')")]
    Segment {
        value: String,
        part: &'static str,
        found: String,
    },
}

impl SpiffeId {
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        let id = SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        for (part, found) in [
            ("trust domain", trust_domain),
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if !valid_segment(found) {
                return Err(SpiffeIdError::Segment {
                    value: id.to_string(),
                    part,
                    found: found.to_string(),
                });
            }
        }
        Ok(id)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || SpiffeIdError::Shape(s.to_string());
        let rest = s.strip_prefix("spiffe://").ok_or_else(shape)?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) => {
                SpiffeId::new(td, ns, sa)
            }
            _ => Err(shape()),
        }
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_spiffe_ids_round_trip() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/client".parse().unwrap();
        assert_eq!(
            (id.trust_domain(), id.namespace(), id.service_account()),
            ("cluster.local", "shop", "client")
        );
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/client");
    }

    #[test]
    fn other_shapes_are_refused_with_the_expected_form() {
        for bad in [
            "spiffe://cluster.local/ns/shop",
            "https://cluster.local/ns/shop/sa/x",
            "spiffe://cluster.local/ns/shop/sa/x/extra",
            "spiffe://cluster.local/sa/x/ns/shop",
        ] {
            let err = bad.parse::<SpiffeId>().unwrap_err();
            assert!(
                err.to_string().contains("expected spiffe://"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn segments_must_be_kubernetes_names() {
        let err = SpiffeId::new("cluster.local", "Shop", "x").unwrap_err();
        assert!(
            matches!(
                err,
                SpiffeIdError::Segment {
                    part: "namespace",
                    ..
                }
            ),
            "{err}"
        );
    }
}
