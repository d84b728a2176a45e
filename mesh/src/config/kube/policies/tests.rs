use super::*;
use crate::config::parse;

/// `shop` uses waypoint `waypoint`; `payments` uses `pay-waypoint`; `legacy` uses none.
const BASE: &str = "
namespaces:
  - name: shop
    labels: {ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: waypoint}
services:
  - {name: reviews, namespace: shop}
  - {name: ratings, namespace: shop}
  - {name: payments, namespace: shop, labels: {ambit.dev/use-waypoint: pay-waypoint}}
  - {name: legacy, namespace: shop, labels: {ambit.dev/use-waypoint: none}}
gateways:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: waypoint, namespace: shop}
    spec:
      gatewayClassName: ambit-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: pay-waypoint, namespace: shop}
    spec:
      gatewayClassName: ambit-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
trafficPolicies:
";

fn policy(name: &str, targets: &str) -> String {
    format!(
        "  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {{name: {name}, namespace: shop, generation: 3}}
    spec:
      targetRefs: [{targets}]
      connectionPool: {{maxConnections: 10}}
"
    )
}

fn service(name: &str) -> String {
    format!("{{group: \"\", kind: Service, name: {name}}}")
}

fn gateway(name: &str) -> String {
    format!("{{group: gateway.networking.k8s.io, kind: Gateway, name: {name}}}")
}

/// name -> (reason, message) as the waypoint `shop/waypoint` reports them.
fn verdicts(policies: &[String]) -> Vec<(String, &'static str, String)> {
    let model = parse(&format!("{BASE}{}", policies.concat())).expect("valid config");
    policy_verdicts(&model, "shop", "waypoint")
        .into_iter()
        .map(|v| (v.name, v.reason, v.message))
        .collect()
}

#[test]
fn a_policy_on_a_service_of_this_waypoint_is_accepted() {
    let got = verdicts(&[policy("reviews", &service("reviews"))]);
    assert_eq!(
        got,
        [(
            "reviews".to_string(),
            reason::ACCEPTED,
            "in force for Service reviews".to_string()
        )]
    );
}

#[test]
fn service_and_gateway_policies_layer_without_conflict() {
    let got = verdicts(&[
        policy("a-reviews", &service("reviews")),
        policy("b-waypoint", &gateway("waypoint")),
    ]);
    assert_eq!(got[0].1, reason::ACCEPTED);
    assert_eq!(got[1].1, reason::ACCEPTED, "{got:?}");
    assert_eq!(got[1].2, "in force for the Services of waypoint waypoint");
}

#[test]
fn the_second_policy_on_the_same_target_is_conflicted_and_names_the_first() {
    let got = verdicts(&[
        policy("a-first", &service("reviews")),
        policy("b-second", &service("reviews")),
        policy("c-gw-first", &gateway("waypoint")),
        policy("d-gw-second", &gateway("waypoint")),
    ]);
    let reasons: Vec<&str> = got.iter().map(|v| v.1).collect();
    assert_eq!(
        reasons,
        [
            reason::ACCEPTED,
            reason::CONFLICTED,
            reason::ACCEPTED,
            reason::CONFLICTED
        ]
    );
    assert_eq!(
        got[1].2,
        "TrafficPolicy a-first takes precedence for Service reviews"
    );
    assert_eq!(
        got[3].2,
        "TrafficPolicy c-gw-first takes precedence for Gateway waypoint"
    );
}

#[test]
fn in_force_on_one_target_is_enough_and_the_others_are_explained() {
    let got = verdicts(&[
        policy("a-first", &service("reviews")),
        policy(
            "b-both",
            &format!("{}, {}", service("reviews"), service("ratings")),
        ),
    ]);
    assert_eq!(got[1].1, reason::ACCEPTED);
    assert_eq!(
        got[1].2,
        "TrafficPolicy a-first takes precedence for Service reviews; in force for Service ratings"
    );
}

#[test]
fn targets_that_reach_no_waypoint_are_reported_as_not_found() {
    let got = verdicts(&[
        policy("missing", &service("nope")),
        policy("no-waypoint", &service("legacy")),
        policy("no-gateway", &gateway("nope")),
    ]);
    assert!(
        got.iter().all(|v| v.1 == reason::TARGET_NOT_FOUND),
        "{got:?}"
    );
    // In name order: missing, no-gateway, no-waypoint.
    assert_eq!(got[0].2, "Service nope not found");
    assert_eq!(got[1].2, "waypoint Gateway nope not found");
    assert!(got[2].2.contains("uses no waypoint"), "{}", got[2].2);
}

#[test]
fn another_waypoints_policy_is_left_to_that_waypoint() {
    let got = verdicts(&[
        policy("payments", &service("payments")),
        policy("pay-gw", &gateway("pay-waypoint")),
    ]);
    assert!(got.is_empty(), "{got:?}");
    let model = parse(&format!(
        "{BASE}{}",
        policy("payments", &service("payments"))
    ))
    .expect("config");
    let theirs = policy_verdicts(&model, "shop", "pay-waypoint");
    assert_eq!(theirs.len(), 1);
    assert!(theirs[0].accepted());
}

#[test]
fn a_group_that_does_not_match_the_kind_is_invalid() {
    let got = verdicts(&[policy(
        "bad-group",
        "{group: gateway.networking.k8s.io, kind: Service, name: reviews}",
    )]);
    assert_eq!(got[0].1, reason::INVALID);
    assert!(got[0].2.contains("targetRefs[0]"), "{}", got[0].2);
}

#[test]
fn the_status_carries_both_conditions_and_the_generation() {
    let model = parse(&format!(
        "{BASE}{}{}",
        policy("a-first", &service("reviews")),
        policy("b-second", &service("reviews"))
    ))
    .expect("config");
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let verdicts = policy_verdicts(&model, "shop", "waypoint");
    let accepted = verdicts[0].status(&now);
    let conflicted = verdicts[1].status(&now);
    let summary = |s: &TrafficPolicyStatus| {
        s.conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.observed_generation,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&accepted),
        [
            ("Accepted".into(), "True".into(), "Accepted".into(), Some(3)),
            (
                "Programmed".into(),
                "True".into(),
                "Programmed".into(),
                Some(3)
            ),
        ]
    );
    assert_eq!(
        summary(&conflicted),
        [
            (
                "Accepted".into(),
                "False".into(),
                "Conflicted".into(),
                Some(3)
            ),
            (
                "Programmed".into(),
                "False".into(),
                "NotAccepted".into(),
                Some(3)
            ),
        ]
    );
}
