//! Every RBAC grant has a reason.

use std::collections::{BTreeMap, BTreeSet};

use ambit_e2e::deploy::{self, object_key};
use serde_json::Value;

use crate::with_waypoint;

/// Every permission Ambit's ServiceAccounts get, and why. A grant missing here fails
/// `every_rbac_grant_has_a_reason`; so does a line here that nothing grants. A rule limited
/// to some objects names them after the resource: `clusterroles (ambit-waypoint)`.
#[rustfmt::skip]
const GRANTS: &[(&str, &str, &str, &str, &str)] = &[
    // (service account, API group, resource, verbs, reason)
    ("ambit-node", "", "namespaces", "get list watch", "enrollment: the namespace's ambit.dev/dataplane-mode label"),
    ("ambit-node", "", "pods", "get list watch", "the workloads on this node: IPs, service account, opt-out label"),
    ("ambit-node", "", "nodes", "list watch", "each node's address, where its agent answers HBONE on 15008"),
    ("ambit-node", "", "services", "get list watch", "service VIPs and ports to resolve redirected connects"),
    ("ambit-node", "discovery.k8s.io", "endpointslices", "get list watch", "a service's endpoints for load balancing"),
    ("ambit-node", "gateway.networking.k8s.io", "gateways", "get list watch", "which services have a waypoint"),
    ("ambit-node", "gateway.networking.k8s.io", "httproutes", "get list watch", "routes the waypoint applies"),
    ("ambit-node", "gateway.networking.k8s.io", "grpcroutes", "get list watch", "routes the waypoint applies"),
    ("ambit-node", "ambit.dev", "trafficpolicies", "get list watch", "outlier detection, limits, faults for the waypoint"),
    ("ambit-controller", "authentication.k8s.io", "tokenreviews", "create", "authenticate node agents and waypoints by their service-account tokens"),
    ("ambit-controller", "", "pods", "get list", "a node agent's node (its pod), and the pods on a node: sign only for those"),
    ("ambit-controller", "gateway.networking.k8s.io", "gateways", "list watch", "the waypoint deployer: which Gateways are of class ambit-waypoint"),
    ("ambit-controller", "gateway.networking.k8s.io", "gateways/status", "patch", "a waypoint Gateway's Accepted and Programmed conditions and address"),
    ("ambit-controller", "gateway.networking.k8s.io", "gatewayclasses", "get", "whether the ambit-waypoint GatewayClass names Ambit as its controller"),
    ("ambit-controller", "gateway.networking.k8s.io", "gatewayclasses/status", "patch", "accept the ambit-waypoint GatewayClass"),
    ("ambit-controller", "", "serviceaccounts", "create patch", "server-side apply each waypoint's service account (its identity)"),
    ("ambit-controller", "", "services", "create patch", "server-side apply each waypoint's Service (HBONE 15008)"),
    ("ambit-controller", "", "configmaps", "create patch", "server-side apply ambit-root-cert, the mesh root, in each waypoint's namespace"),
    ("ambit-controller", "apps", "deployments", "create patch", "server-side apply each waypoint's Deployment"),
    ("ambit-controller", "", "serviceaccounts", "get delete", "a Gateway that leaves class ambit-waypoint: delete the service account applied for it"),
    ("ambit-controller", "", "services", "get delete", "a Gateway that leaves class ambit-waypoint: delete the Service applied for it"),
    ("ambit-controller", "", "configmaps", "get delete", "ambit-root-cert goes with the last waypoint Gateway of its namespace"),
    ("ambit-controller", "apps", "deployments", "get delete", "a Gateway that leaves class ambit-waypoint: delete its waypoint's Deployment"),
    ("ambit-controller", "rbac.authorization.k8s.io", "clusterrolebindings", "get", "a Gateway that leaves class ambit-waypoint: find its binding at once"),
    ("ambit-controller", "apps", "deployments", "list watch", "a waypoint's readiness (Programmed), and restore a Deployment deleted by hand"),
    ("ambit-controller", "rbac.authorization.k8s.io", "clusterrolebindings", "create patch", "server-side apply each waypoint's binding to ambit-waypoint"),
    ("ambit-controller", "rbac.authorization.k8s.io", "clusterrolebindings", "list delete", "a Gateway cannot own a cluster-scoped binding: delete those of Gateways that are gone"),
    ("ambit-controller", "rbac.authorization.k8s.io", "clusterroles (ambit-waypoint)", "bind", "bind waypoints to ambit-waypoint without holding its permissions"),
    // A waypoint (service account `waypoint` once the template is filled in for shop/waypoint).
    ("waypoint", "", "namespaces", "get list watch", "which namespaces use this waypoint (ambit.dev/use-waypoint)"),
    ("waypoint", "", "pods", "get list watch", "endpoints to route to, and their nodes and identities"),
    ("waypoint", "", "nodes", "list watch", "each node's address, where endpoints are reached over HBONE"),
    ("waypoint", "", "services", "get list watch", "the Services it serves and the backends routes name"),
    ("waypoint", "discovery.k8s.io", "endpointslices", "get list watch", "named target ports of backends"),
    ("waypoint", "gateway.networking.k8s.io", "gateways", "get list watch", "its own Gateway, and which Services use it"),
    ("waypoint", "gateway.networking.k8s.io", "httproutes", "get list watch", "the routes it applies"),
    ("waypoint", "gateway.networking.k8s.io", "grpcroutes", "get list watch", "the routes it applies"),
    ("waypoint", "ambit.dev", "trafficpolicies", "get list watch", "outlier detection, limits and faults"),
    ("waypoint", "gateway.networking.k8s.io", "httproutes/status", "patch", "its verdict on each route it serves, as conditions"),
    ("waypoint", "gateway.networking.k8s.io", "grpcroutes/status", "patch", "its verdict on each route it serves, as conditions"),
    ("waypoint", "ambit.dev", "trafficpolicies/status", "patch", "its verdict on each TrafficPolicy that reaches it (Accepted, Conflicted, TargetNotFound)"),
];

/// (service account, API group, resource, verb) granted by the RBAC objects in `objects`.
fn grants(objects: &BTreeMap<String, Value>) -> BTreeSet<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut granted = BTreeSet::new();
    for binding in objects.values() {
        let kind = text(&binding["kind"]);
        if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
            continue;
        }
        let role_key = format!(
            "{} {}/{}",
            text(&binding["roleRef"]["kind"]),
            if text(&binding["roleRef"]["kind"]) == "Role" {
                text(&binding["metadata"]["namespace"])
            } else {
                String::new()
            },
            text(&binding["roleRef"]["name"])
        );
        let role = objects.get(&role_key).unwrap_or_else(|| {
            panic!(
                "{} binds {role_key}, which is not installed",
                object_key(binding)
            )
        });
        for subject in list(&binding["subjects"]) {
            assert_eq!(
                text(&subject["kind"]),
                "ServiceAccount",
                "{}: only service accounts are bound",
                object_key(binding)
            );
            for rule in list(&role["rules"]) {
                assert!(
                    rule.get("nonResourceURLs").is_none(),
                    "{role_key}: extend this test for {rule}"
                );
                let names: Vec<String> = list(&rule["resourceNames"]).iter().map(text).collect();
                for group in list(&rule["apiGroups"]) {
                    for resource in list(&rule["resources"]) {
                        let resource = match names.is_empty() {
                            true => text(&resource),
                            false => format!("{} ({})", text(&resource), names.join(", ")),
                        };
                        for verb in list(&rule["verbs"]) {
                            granted.insert((
                                text(&subject["name"]),
                                text(&group),
                                resource.clone(),
                                text(&verb),
                            ));
                        }
                    }
                }
            }
        }
    }
    granted
}

#[test]
fn every_rbac_grant_has_a_reason() {
    for overlay in deploy::overlays().expect("listing the overlays") {
        let granted = grants(&with_waypoint(&overlay));
        let explained: BTreeSet<_> = GRANTS
            .iter()
            .flat_map(|(sa, group, resource, verbs, why)| {
                verbs
                    .split(' ')
                    .map(move |verb| (sa, group, resource, verb, why))
            })
            .map(|(sa, group, resource, verb, _)| {
                (
                    sa.to_string(),
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                )
            })
            .collect();
        let unexplained: Vec<_> = granted.difference(&explained).collect();
        assert!(
            unexplained.is_empty(),
            "overlay {overlay} grants (service account, group, resource, verb) with no reason in GRANTS; add one or drop the grant: {unexplained:#?}"
        );
        let unused: Vec<_> = explained.difference(&granted).collect();
        assert!(
            unused.is_empty(),
            "overlay {overlay}: GRANTS explains what nothing grants: {unused:#?}"
        );
    }
}
