//! Node authorization: a node agent may obtain only the identities of pods scheduled on it.
//!
//! As istiod does for ztunnel: a compromised node must not be able to impersonate workloads
//! that never run there. Pure, so every case is a unit test.

use crate::model::Model;

use super::node::NodeId;
use super::SpiffeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node {node} may not obtain {id}: the mesh's trust domain is {ours}")]
    TrustDomain {
        node: String,
        id: SpiffeId,
        ours: String,
    },
    #[error("node {node} may not obtain {id}: no workload of service account {sa} in namespace {ns} is scheduled on {node} ({scheduled})", sa = id.service_account(), ns = id.namespace())]
    NotScheduled {
        node: String,
        id: SpiffeId,
        /// What is scheduled on the node, for the operator.
        scheduled: String,
    },
}

/// Whether `node` may obtain `id` given where `model` schedules workloads: at least one
/// workload of that namespace and service account must run on the node, outside the host
/// network (host-network pods get no mesh identity).
pub fn authorize(model: &Model, node: &NodeId, id: &SpiffeId) -> Result<(), Refusal> {
    let name = node.name();
    for td in [node.trust_domain(), id.trust_domain()] {
        if td != model.trust_domain() {
            return Err(Refusal::TrustDomain {
                node: node.to_string(),
                id: id.clone(),
                ours: model.trust_domain().to_string(),
            });
        }
    }
    let on_node: Vec<_> = model
        .workloads()
        .iter()
        .filter(|w| w.node == name)
        .collect();
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
