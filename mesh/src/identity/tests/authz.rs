//! Node authorization, case by case.

use super::{id, mesh};
use crate::identity::{authorize, NodeId, Refusal};

fn node(name: &str) -> NodeId {
    NodeId::new("cluster.local", name).expect("valid node")
}

#[test]
fn node_may_obtain_the_identity_of_a_pod_scheduled_on_it() {
    assert_eq!(
        authorize(&mesh(), &node("n1"), &id("shop", "client")),
        Ok(())
    );
}

#[test]
fn node_may_obtain_a_service_account_shared_with_pods_on_other_nodes() {
    assert_eq!(authorize(&mesh(), &node("n1"), &id("shop", "echo")), Ok(()));
    assert_eq!(authorize(&mesh(), &node("n2"), &id("shop", "echo")), Ok(()));
}

#[test]
fn node_is_refused_the_identity_of_a_pod_on_another_node() {
    let refusal = authorize(&mesh(), &node("n1"), &id("shop", "payments")).unwrap_err();
    assert!(matches!(refusal, Refusal::NotScheduled { .. }));
    let message = refusal.to_string();
    assert!(
        message.starts_with(
            "node n1 may not obtain spiffe://cluster.local/ns/shop/sa/payments: \
             no workload of service account payments in namespace shop is scheduled on n1"
        ),
        "{message}"
    );
    assert!(message.contains("shop/client (sa client)"), "{message}");
}

#[test]
fn node_is_refused_an_identity_of_a_namespace_it_does_not_run() {
    let message = authorize(&mesh(), &node("n1"), &id("legacy", "client"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("in namespace legacy"), "{message}");
}

#[test]
fn host_network_pods_do_not_entitle_their_node_to_an_identity() {
    let message = authorize(&mesh(), &node("n1"), &id("shop", "monitor"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("shop/monitor (sa monitor, host network)"),
        "{message}"
    );
}

#[test]
fn unknown_node_is_refused_and_told_nothing_runs_there() {
    let message = authorize(&mesh(), &node("n9"), &id("shop", "client"))
        .unwrap_err()
        .to_string();
    assert!(
        message.ends_with("(nothing is scheduled there)"),
        "{message}"
    );
}

#[test]
fn identity_of_another_trust_domain_is_refused() {
    let other = crate::identity::SpiffeId::new("evil.example", "shop", "client").unwrap();
    let refusal = authorize(&mesh(), &node("n1"), &other).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "node spiffe://cluster.local/ambit/node/n1 may not obtain \
         spiffe://evil.example/ns/shop/sa/client: the mesh's trust domain is cluster.local"
    );
}

#[test]
fn node_of_another_trust_domain_is_refused() {
    let stranger = NodeId::new("evil.example", "n1").unwrap();
    let refusal = authorize(&mesh(), &stranger, &id("shop", "client")).unwrap_err();
    assert!(matches!(refusal, Refusal::TrustDomain { .. }));
}
