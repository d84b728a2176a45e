//! Route status on a cluster: the verdict on each route this waypoint serves, written back
//! to the route, so `kubectl get httproute -o yaml` says whether it is in force and why not.
//!
//! A route is this waypoint's to report when one of its parentRefs is a Service whose
//! traffic this waypoint carries (the Service's or its namespace's `ambit.dev/use-waypoint`).
//! Each of those parents gets two conditions: `Accepted` (`True`, or `False` with reason
//! `UnsupportedValue` and the engine's reason: the last good version stays in force) and
//! `ResolvedRefs` (`False`/`BackendNotFound` naming each missing Service). Other parents are
//! not Ambit's and are left out.
//!
//! A status is written only when it differs from the one last written for that route, so a
//! model rebuild that changes nothing costs no API call; a failed write is logged and tried
//! again at the next rebuild. Each condition carries the route's `metadata.generation` as
//! `observedGeneration`, so a reader can tell a verdict on the current spec from a stale one.
//!
//! TrafficPolicies get the same treatment: the verdicts `ambit_mesh::config::kube::policies`
//! decides for the policies that reach this waypoint (`Accepted`, `Programmed`).

use std::collections::HashMap;

use ambit_mesh::config::kube::policies::{policy_verdicts, PolicyStatusWriter, PolicyVerdict};
use ambit_mesh::config::kube::routes::{
    grpc_route_missing_backends, grpc_route_parents, http_route_missing_backends,
    http_route_parents, resolved_refs, route_status, MissingBackend, RouteKind, RouteStatusWriter,
};
use ambit_mesh::model::Model;
use gateway_api::experimental::httproutes::HttpRouteStatusParentsParentRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};

use crate::routes::{RouteId, RouteVerdict};

/// The `Accepted=False` reason Ambit uses for a route the engine refused.
const REFUSED_REASON: &str = "UnsupportedValue";

/// What one route's status should say.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: RouteKind,
    pub route: RouteId,
    /// The route's `metadata.generation`, reported as each condition's `observedGeneration`.
    pub generation: Option<i64>,
    /// The parents this waypoint serves, in the route's order.
    pub parents: Vec<HttpRouteStatusParentsParentRef>,
    /// `Err(reason)` when the engine refused the route.
    pub accepted: Result<(), String>,
    pub missing: Vec<MissingBackend>,
}

impl Desired {
    /// The status object, with `now` as the conditions' transition time.
    pub fn status(&self, now: &Time) -> gateway_api::experimental::httproutes::HttpRouteStatus {
        let accepted = match &self.accepted {
            Ok(()) => Condition {
                type_: "Accepted".to_owned(),
                status: "True".to_owned(),
                reason: "Accepted".to_owned(),
                message: "in force in the waypoint".to_owned(),
                observed_generation: self.generation,
                last_transition_time: now.clone(),
            },
            Err(reason) => Condition {
                type_: "Accepted".to_owned(),
                status: "False".to_owned(),
                reason: REFUSED_REASON.to_owned(),
                message: format!("{reason}; the last accepted version stays in force"),
                observed_generation: self.generation,
                last_transition_time: now.clone(),
            },
        };
        let resolved = resolved_refs(&self.missing, self.generation, now.clone());
        route_status(self.parents.clone(), &[accepted, resolved])
    }
}

/// The statuses the waypoint `namespace/name` owes, from the model and the engine's verdicts.
pub fn desired(
    model: &Model,
    namespace: &str,
    name: &str,
    verdicts: &[RouteVerdict],
) -> Vec<Desired> {
    let verdict = |kind: RouteKind, route: &RouteId| {
        verdicts
            .iter()
            .find(|v| v.kind == kind.as_str() && v.route == *route)
            .map(|v| {
                if v.accepted {
                    Ok(())
                } else {
                    Err(v.reason.clone())
                }
            })
    };
    let mut out = Vec::new();
    for route in model.http_routes() {
        let parents = served(
            model,
            namespace,
            name,
            &route.metadata,
            http_route_parents(route),
        );
        let id = RouteId::of(&route.metadata);
        if let (false, Some(accepted)) = (parents.is_empty(), verdict(RouteKind::Http, &id)) {
            out.push(Desired {
                kind: RouteKind::Http,
                route: id,
                generation: route.metadata.generation,
                parents,
                accepted,
                missing: http_route_missing_backends(model, route),
            });
        }
    }
    for route in model.grpc_routes() {
        let parents = served(
            model,
            namespace,
            name,
            &route.metadata,
            grpc_route_parents(route),
        );
        let id = RouteId::of(&route.metadata);
        if let (false, Some(accepted)) = (parents.is_empty(), verdict(RouteKind::Grpc, &id)) {
            out.push(Desired {
                kind: RouteKind::Grpc,
                route: id,
                generation: route.metadata.generation,
                parents,
                accepted,
                missing: grpc_route_missing_backends(model, route),
            });
        }
    }
    out
}

/// The parents among `parents` that are Services carried by the waypoint `namespace/name`.
fn served(
    model: &Model,
    namespace: &str,
    name: &str,
    route: &ObjectMeta,
    parents: Vec<HttpRouteStatusParentsParentRef>,
) -> Vec<HttpRouteStatusParentsParentRef> {
    let route_ns = route.namespace.as_deref().unwrap_or("default");
    parents
        .into_iter()
        .filter(|p| {
            let is_service = p.group.as_deref().unwrap_or_default().is_empty()
                && p.kind.as_deref() == Some("Service");
            let service_ns = p.namespace.as_deref().unwrap_or(route_ns);
            is_service
                && model
                    .service(service_ns, &p.name)
                    .and_then(|service| model.waypoint_for(service))
                    .is_some_and(|gateway| {
                        gateway.metadata.namespace.as_deref() == Some(namespace)
                            && gateway.metadata.name.as_deref() == Some(name)
                    })
        })
        .collect()
}

/// Writes what [`desired`] says, skipping routes whose status has not changed.
pub struct StatusReporter<W> {
    writer: W,
    namespace: String,
    name: String,
    written: HashMap<(RouteKind, RouteId), Desired>,
    written_policies: HashMap<(String, String), PolicyVerdict>,
}

impl<W: RouteStatusWriter + PolicyStatusWriter> StatusReporter<W> {
    /// A reporter for the waypoint `namespace/name`.
    pub fn new(writer: W, namespace: &str, name: &str) -> Self {
        StatusReporter {
            writer,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            written: HashMap::new(),
            written_policies: HashMap::new(),
        }
    }

    /// Writes the status of every route whose verdict changed since it was last written.
    pub async fn report(&mut self, model: &Model, verdicts: &[RouteVerdict]) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        for want in desired(model, &self.namespace, &self.name, verdicts) {
            let key = (want.kind, want.route.clone());
            if self.written.get(&key) == Some(&want) {
                continue;
            }
            let status = want.status(&now);
            match self
                .writer
                .write_route_status(want.kind, &want.route.namespace, &want.route.name, &status)
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        kind = want.kind.as_str(),
                        route = %want.route,
                        accepted = want.accepted.is_ok(),
                        "route status written"
                    );
                    self.written.insert(key, want);
                }
                Err(e) => tracing::warn!(
                    kind = want.kind.as_str(),
                    route = %want.route,
                    error = %e,
                    "writing the route status failed; retried at the next change"
                ),
            }
        }
        self.report_policies(model, &now).await;
    }

    /// Writes the status of every TrafficPolicy whose verdict changed since it was written.
    async fn report_policies(&mut self, model: &Model, now: &Time) {
        for want in policy_verdicts(model, &self.namespace, &self.name) {
            let key = (want.namespace.clone(), want.name.clone());
            if self.written_policies.get(&key) == Some(&want) {
                continue;
            }
            let policy = format!("{}/{}", want.namespace, want.name);
            match self
                .writer
                .write_policy_status(&want.namespace, &want.name, &want.status(now))
                .await
            {
                Ok(()) => {
                    tracing::info!(%policy, reason = want.reason, message = %want.message, "TrafficPolicy status written");
                    self.written_policies.insert(key, want);
                }
                Err(e) => tracing::warn!(
                    %policy,
                    error = %e,
                    "writing the TrafficPolicy status failed; retried at the next change"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ambit_mesh::api::TrafficPolicyStatus;
    use gateway_api::experimental::httproutes::HttpRouteStatus;

    use super::*;

    /// `shop` uses waypoint `wp`; `reviews` and `ratings` are its Services, `legacy` opts out
    /// (`use-waypoint: none`). Route `reviews` also names a Service in `elsewhere` (not ours)
    /// and a missing backend.
    const MESH: &str = "
namespaces:
  - {name: shop, labels: {ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: wp}}
  - {name: elsewhere, labels: {ambit.dev/dataplane-mode: ambient}}
services:
  - {name: reviews, namespace: shop, vips: [10.96.0.10], ports: [{port: 9080}]}
  - {name: reviews-v1, namespace: shop, vips: [10.96.0.11], ports: [{port: 9080}]}
  - {name: ratings, namespace: shop, vips: [10.96.0.12], ports: [{port: 9090}]}
  - {name: legacy, namespace: shop, vips: [10.96.0.13], ports: [{port: 80}], labels: {ambit.dev/use-waypoint: none}}
  - {name: front, namespace: elsewhere, vips: [10.96.0.14], ports: [{port: 80}]}
gateways:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: wp, namespace: shop}
    spec:
      gatewayClassName: ambit-waypoint
      listeners: [{name: mesh, port: 15008, protocol: HBONE}]
httpRoutes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: reviews, namespace: shop, generation: 3}
    spec:
      parentRefs:
        - {group: \"\", kind: Service, name: reviews}
        - {group: \"\", kind: Service, name: front, namespace: elsewhere}
      rules:
        - backendRefs: [{name: reviews-v1, port: 9080}, {name: reviews-v9, port: 9080}]
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: legacy, namespace: shop}
    spec:
      parentRefs: [{group: \"\", kind: Service, name: legacy}]
      rules: [{backendRefs: [{name: legacy, port: 80}]}]
grpcRoutes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: ratings, namespace: shop, generation: 7}
    spec:
      parentRefs: [{group: \"\", kind: Service, name: ratings}]
      rules: [{backendRefs: [{name: ratings, port: 9090}]}]
";

    fn model() -> Model {
        ambit_mesh::config::parse(MESH).expect("the test mesh parses")
    }

    fn verdict(kind: &'static str, name: &str, refused: Option<&str>) -> RouteVerdict {
        RouteVerdict {
            kind,
            route: RouteId {
                namespace: "shop".into(),
                name: name.into(),
            },
            accepted: refused.is_none(),
            reason: refused.unwrap_or_default().into(),
        }
    }

    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<(RouteKind, String, HttpRouteStatus)>>>,
        policies: Arc<Mutex<Vec<(String, TrafficPolicyStatus)>>>,
        fail: Arc<Mutex<bool>>,
    }

    impl PolicyStatusWriter for Recorder {
        async fn write_policy_status(
            &self,
            namespace: &str,
            name: &str,
            status: &TrafficPolicyStatus,
        ) -> Result<(), kube::Error> {
            if *self.fail.lock().unwrap() {
                return Err(kube::Error::LinesCodecMaxLineLengthExceeded);
            }
            self.policies
                .lock()
                .unwrap()
                .push((format!("{namespace}/{name}"), status.clone()));
            Ok(())
        }
    }

    impl RouteStatusWriter for Recorder {
        async fn write_route_status(
            &self,
            kind: RouteKind,
            namespace: &str,
            name: &str,
            status: &HttpRouteStatus,
        ) -> Result<(), kube::Error> {
            if *self.fail.lock().unwrap() {
                return Err(kube::Error::LinesCodecMaxLineLengthExceeded);
            }
            self.writes
                .lock()
                .unwrap()
                .push((kind, format!("{namespace}/{name}"), status.clone()));
            Ok(())
        }
    }

    /// `(type, status, reason, observedGeneration)` of the first parent's conditions.
    fn conditions(status: &HttpRouteStatus) -> Vec<(String, String, String, Option<i64>)> {
        status.parents[0]
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.observed_generation,
                )
            })
            .collect()
    }

    #[test]
    fn routes_on_services_this_waypoint_carries_are_reported_on_those_parents_only() {
        let m = model();
        let verdicts = [
            verdict("HTTPRoute", "reviews", None),
            verdict("HTTPRoute", "legacy", None),
            verdict("GRPCRoute", "ratings", Some("rules[0]: bad method")),
        ];
        let want = desired(&m, "shop", "wp", &verdicts);
        let names: Vec<_> = want
            .iter()
            .map(|d| (d.kind, d.route.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [(RouteKind::Http, "reviews"), (RouteKind::Grpc, "ratings")]
        );
        let reviews = &want[0];
        let parents: Vec<_> = reviews.parents.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            parents,
            ["reviews"],
            "the elsewhere/front parent is not ours"
        );
        assert_eq!(reviews.missing.len(), 1);
        assert_eq!(reviews.missing[0].name, "reviews-v9");
        assert_eq!(want[1].accepted, Err("rules[0]: bad method".to_owned()));

        // Another waypoint owes nothing here.
        assert!(desired(&m, "shop", "other", &verdicts).is_empty());
    }

    #[tokio::test]
    async fn verdicts_are_written_as_conditions_once_per_change() {
        let m = model();
        let recorder = Recorder::default();
        let mut reporter = StatusReporter::new(recorder.clone(), "shop", "wp");
        let good = [
            verdict("HTTPRoute", "reviews", None),
            verdict("GRPCRoute", "ratings", None),
        ];
        reporter.report(&m, &good).await;
        {
            let writes = recorder.writes.lock().unwrap();
            assert_eq!(writes.len(), 2);
            let (kind, route, status) = &writes[0];
            assert_eq!((*kind, route.as_str()), (RouteKind::Http, "shop/reviews"));
            assert_eq!(
                conditions(status),
                [
                    ("Accepted".into(), "True".into(), "Accepted".into(), Some(3)),
                    (
                        "ResolvedRefs".into(),
                        "False".into(),
                        "BackendNotFound".into(),
                        Some(3)
                    ),
                ]
            );
            assert_eq!(status.parents[0].controller_name, "ambit.dev/waypoint");
        }

        // Nothing changed: nothing written.
        reporter.report(&m, &good).await;
        assert_eq!(recorder.writes.lock().unwrap().len(), 2);

        // The GRPCRoute is refused: only it is written again, with the reason.
        let refused = [
            verdict("HTTPRoute", "reviews", None),
            verdict(
                "GRPCRoute",
                "ratings",
                Some("rules[0].matches[0]: unknown method type"),
            ),
        ];
        reporter.report(&m, &refused).await;
        let writes = recorder.writes.lock().unwrap().clone();
        assert_eq!(writes.len(), 3);
        let (kind, route, status) = &writes[2];
        assert_eq!((*kind, route.as_str()), (RouteKind::Grpc, "shop/ratings"));
        let accepted = &status.parents[0].conditions[0];
        assert_eq!(
            (
                accepted.status.as_str(),
                accepted.reason.as_str(),
                accepted.observed_generation
            ),
            ("False", "UnsupportedValue", Some(7))
        );
        assert_eq!(
            accepted.message,
            "rules[0].matches[0]: unknown method type; the last accepted version stays in force"
        );
    }

    #[tokio::test]
    async fn a_new_generation_with_the_same_verdict_is_written_again() {
        let recorder = Recorder::default();
        let mut reporter = StatusReporter::new(recorder.clone(), "shop", "wp");
        let verdicts = [verdict("HTTPRoute", "reviews", None)];
        reporter.report(&model(), &verdicts).await;
        let edited = ambit_mesh::config::parse(&MESH.replace("generation: 3", "generation: 4"))
            .expect("the edited mesh parses");
        reporter.report(&edited, &verdicts).await;
        let writes = recorder.writes.lock().unwrap().clone();
        let generations: Vec<_> = writes
            .iter()
            .map(|(_, _, status)| conditions(status)[0].3)
            .collect();
        assert_eq!(generations, [Some(3), Some(4)]);
    }

    #[tokio::test]
    async fn a_failed_write_is_tried_again_at_the_next_report() {
        let m = model();
        let recorder = Recorder::default();
        let mut reporter = StatusReporter::new(recorder.clone(), "shop", "wp");
        let verdicts = [verdict("HTTPRoute", "reviews", None)];
        *recorder.fail.lock().unwrap() = true;
        reporter.report(&m, &verdicts).await;
        assert!(recorder.writes.lock().unwrap().is_empty());
        *recorder.fail.lock().unwrap() = false;
        reporter.report(&m, &verdicts).await;
        assert_eq!(recorder.writes.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn traffic_policies_reaching_this_waypoint_get_their_verdict_once_per_change() {
        let policies = "
trafficPolicies:
  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: a-reviews, namespace: shop, generation: 2}
    spec:
      targetRefs: [{group: \"\", kind: Service, name: reviews}]
      connectionPool: {maxConnections: 10}
  - apiVersion: ambit.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: b-reviews, namespace: shop, generation: 5}
    spec:
      targetRefs: [{group: \"\", kind: Service, name: reviews}]
      connectionPool: {maxConnections: 20}
";
        let m = ambit_mesh::config::parse(&format!("{MESH}{policies}")).expect("parses");
        let recorder = Recorder::default();
        let mut reporter = StatusReporter::new(recorder.clone(), "shop", "wp");
        reporter.report(&m, &[]).await;
        let written = recorder.policies.lock().unwrap().clone();
        let summary: Vec<_> = written
            .iter()
            .map(|(name, status)| {
                let accepted = &status.conditions[0];
                (
                    name.as_str(),
                    accepted.status.as_str(),
                    accepted.reason.as_str(),
                    accepted.observed_generation,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("shop/a-reviews", "True", "Accepted", Some(2)),
                ("shop/b-reviews", "False", "Conflicted", Some(5)),
            ]
        );
        assert_eq!(
            written[1].1.conditions[0].message,
            "TrafficPolicy a-reviews takes precedence for Service reviews"
        );

        // Unchanged: nothing written; another waypoint owes nothing for these.
        reporter.report(&m, &[]).await;
        assert_eq!(recorder.policies.lock().unwrap().len(), 2);
        let other = Recorder::default();
        StatusReporter::new(other.clone(), "shop", "other")
            .report(&m, &[])
            .await;
        assert!(other.policies.lock().unwrap().is_empty());
    }
}
