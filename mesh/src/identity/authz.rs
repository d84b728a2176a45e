//! Node authorization: a node agent may obtain only the identities of pods scheduled on it.
//!
//! As istiod does for ztunnel: a compromised node must not be able to impersonate workloads
//! that never run there. A workload that is not a node agent (a waypoint, asking with its own
//! token) may obtain its own identity only. Pure, so every case is a unit test.

use crate::model::{Model, Workload};

use super::node::NodeId;
use super::token::TokenOwner;
use super::SpiffeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node {node} may not obtain {id}: the mesh's trust domain is {ours}")]
    TrustDomain {
        node: String,
        id: SpiffeId,
        ours: String,
    },
    #[error("{owner} may obtain only its own identity {own}, not {id}")]
    NotOwn {
        owner: String,
        own: String,
        id: SpiffeId,
    },
    #[error("node {node} may not obtain {id}: no workload of service account {sa} in namespace {ns} is scheduled on {node} ({scheduled})", sa = id.service_account(), ns = id.namespace())]
    NotScheduled {
        node: String,
        id: SpiffeId,
        /// What is scheduled on the node, for the operator.
        scheduled: String,
    },
}

/// A pod as node authorization sees it: where it runs is the caller's concern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub host_network: bool,
}

impl From<&Workload> for Scheduled {
    fn from(w: &Workload) -> Self {
        Scheduled {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            service_account: w.service_account.clone(),
            host_network: w.host_network,
        }
    }
}

/// Whether `node` may obtain `id` given where `model` schedules workloads: at least one
/// workload of that namespace and service account must run on the node, outside the host
/// network (host-network pods get no mesh identity).
pub fn authorize(model: &Model, node: &NodeId, id: &SpiffeId) -> Result<(), Refusal> {
    let on_node: Vec<Scheduled> = model
        .workloads()
        .iter()
        .filter(|w| w.node == node.name())
        .map(Scheduled::from)
        .collect();
    authorize_scheduled(model.trust_domain(), &on_node, node, id)
}

/// [`authorize`] with the pods on the node already known (read from the API server).
pub fn authorize_scheduled(
    trust_domain: &str,
    on_node: &[Scheduled],
    node: &NodeId,
    id: &SpiffeId,
) -> Result<(), Refusal> {
    let name = node.name();
    for td in [node.trust_domain(), id.trust_domain()] {
        if td != trust_domain {
            return Err(Refusal::TrustDomain {
                node: node.to_string(),
                id: id.clone(),
                ours: trust_domain.to_string(),
            });
        }
    }
    if on_node.iter().any(|w| {
        !w.host_network
            && w.namespace == id.namespace()
            && w.service_account == id.service_account()
    }) {
        return Ok(());
    }
    let scheduled = if on_node.is_empty() {
        "nothing is scheduled there".to_string()
    } else {
        let listed: Vec<String> = on_node
            .iter()
            .map(|w| {
                let host = if w.host_network { ", host network" } else { "" };
                format!(
                    "{}/{} (sa {}{host})",
                    w.namespace, w.name, w.service_account
                )
            })
            .collect();
        format!("scheduled there: {}", listed.join(", "))
    };
    Err(Refusal::NotScheduled {
        node: name.to_string(),
        id: id.clone(),
        scheduled,
    })
}

/// Whether a workload that is not a node agent may obtain `id`: only its own identity.
pub fn authorize_own(trust_domain: &str, owner: &TokenOwner, id: &SpiffeId) -> Result<(), Refusal> {
    let own = SpiffeId::new(trust_domain, &owner.namespace, &owner.service_account);
    match own {
        Ok(own) if own == *id => Ok(()),
        own => Err(Refusal::NotOwn {
            owner: owner.to_string(),
            own: own.map_or_else(|e| e.to_string(), |own| own.to_string()),
            id: id.clone(),
        }),
    }
}
