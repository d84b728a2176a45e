//! The node agent's ClusterRole (deploy/, rendered from the chart) grants list and watch on
//! every resource the source asks for. Grants beyond the watches are explained in the deploy
//! tests' RBAC table.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::fake_api::FakeApi;
use super::*;

/// The install's RBAC as the chart renders it (`cargo xtask gen-manifests`).
const RBAC: &str = include_str!("../../../../../deploy/manifests/base/rbac.yaml");

#[derive(Deserialize)]
struct Rule {
    #[serde(rename = "apiGroups")]
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// `group/resource` pairs the ClusterRole lets the agent list and watch.
fn granted() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(RBAC) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        if value["kind"] != "ClusterRole" || value["metadata"]["name"] != "ambit-node" {
            continue;
        }
        let rules: Vec<Rule> = serde_yaml::from_value(value["rules"].clone()).unwrap();
        for rule in rules {
            if !(rule.verbs.contains(&"list".to_owned())
                && rule.verbs.contains(&"watch".to_owned()))
            {
                continue;
            }
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    out.insert(format!("{group}/{resource}"));
                }
            }
        }
    }
    out
}

/// `group/resource` of a request path: `/api/v1/pods` is `/pods`, `/apis/g/v/r` is `g/r`.
fn requested(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts[..] {
        ["api", _, resource] => format!("/{resource}"),
        ["apis", group, _, resource] => format!("{group}/{resource}"),
        _ => panic!("unexpected request path {path}"),
    }
}

#[tokio::test]
async fn cluster_role_covers_every_watch_of_the_source() {
    let api = FakeApi::recorded().await;
    let _source = ready_source(&api).await;
    let asked: BTreeSet<String> = api
        .requests()
        .iter()
        .filter_map(|r| r.strip_prefix("GET "))
        .map(|r| requested(r.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(asked.len(), 9, "{asked:?}");
    let granted = granted();
    let missing: Vec<&String> = asked.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the ambit-node ClusterRole lacks list+watch on {missing:?} (granted: {granted:?})"
    );
}
