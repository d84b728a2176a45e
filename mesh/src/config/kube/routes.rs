//! Routes whose backends do not exist, and waypoint labels naming no waypoint: found in the
//! model and reported; for routes, also worded as the Gateway API `ResolvedRefs` condition.
//!
//! # What is wired
//! The kube source reports every missing backend as a [`Problem`] (one log line when it
//! appears, a counter). Writing conditions to the route is [`RouteStatusWriter`]'s job;
//! [`ApiRouteStatus`] does it with `patch_status`. Node agents never write (every node runs
//! this source, and status wants one writer): the waypoint serving a route writes its
//! verdict and this `ResolvedRefs` condition.

use std::future::Future;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::{
    HttpRoute, HttpRouteStatus, HttpRouteStatusParents, HttpRouteStatusParentsParentRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::convert::Problem;
use crate::model::labels::{USE_WAYPOINT, WAYPOINT_CLASS};
use crate::model::Model;

/// The controller name Ambit writes route status under.
pub const CONTROLLER_NAME: &str = "ambit.dev/waypoint";

/// A backendRef naming a Service the model does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBackend {
    /// Where the reference is, e.g. `rules[0].backendRefs[1]`.
    pub field: String,
    pub namespace: String,
    pub name: String,
}

/// `(group, kind)` of a backendRef names a core Service when both are unset or say so.
fn is_service(group: Option<&str>, kind: Option<&str>) -> bool {
    group.unwrap_or_default().is_empty() && kind.unwrap_or("Service") == "Service"
}

/// `(rule index, ref index, names a Service, namespace, name)` of each backendRef of a
/// route's rules. HTTPRoute and GRPCRoute are generated as separate, field-for-field equal
/// types, hence a macro rather than a generic function.
macro_rules! backend_refs {
    ($route:expr) => {
        $route
            .spec
            .rules
            .iter()
            .flatten()
            .enumerate()
            .flat_map(|(i, rule)| {
                rule.backend_refs
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(move |(j, b)| {
                        let service = is_service(b.group.as_deref(), b.kind.as_deref());
                        (i, j, service, b.namespace.as_deref(), b.name.as_str())
                    })
            })
    };
}

/// The Service backendRefs of `route`'s rules that `model` does not hold.
pub fn http_route_missing_backends(model: &Model, route: &HttpRoute) -> Vec<MissingBackend> {
    let namespace = route.metadata.namespace.as_deref().unwrap_or_default();
    missing(model, namespace, backend_refs!(route))
}

/// As [`http_route_missing_backends`], for a GRPCRoute.
pub fn grpc_route_missing_backends(model: &Model, route: &GrpcRoute) -> Vec<MissingBackend> {
    let namespace = route.metadata.namespace.as_deref().unwrap_or_default();
    missing(model, namespace, backend_refs!(route))
}

fn missing<'a>(
    model: &Model,
    route_namespace: &str,
    refs: impl Iterator<Item = (usize, usize, bool, Option<&'a str>, &'a str)>,
) -> Vec<MissingBackend> {
    refs.filter(|&(_, _, service, _, _)| service)
        .filter_map(|(i, j, _, namespace, name)| {
            let namespace = namespace.unwrap_or(route_namespace);
            model
                .service(namespace, name)
                .is_none()
                .then(|| MissingBackend {
                    field: format!("rules[{i}].backendRefs[{j}]"),
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
        })
        .collect()
}

/// `ambit.dev/use-waypoint` labels naming no waypoint, as problems to report.
pub fn dangling_waypoints(model: &Model) -> Vec<Problem> {
    crate::model::dangling_waypoints(model)
        .into_iter()
        .map(|d| Problem {
            object: format!("{} {}", d.kind, d.object),
            message: format!(
                "label {USE_WAYPOINT} names Gateway {}/{}, which is not an {WAYPOINT_CLASS} \
                 Gateway; its traffic does not go through a waypoint",
                d.namespace, d.gateway
            ),
        })
        .collect()
}

/// Every missing backend of every route in `model`, as problems to report.
pub fn missing_backends(model: &Model) -> Vec<Problem> {
    let http = model.http_routes().iter().map(|r| {
        let object = format!("HTTPRoute {}", key(&r.metadata));
        (object, http_route_missing_backends(model, r))
    });
    let grpc = model.grpc_routes().iter().map(|r| {
        let object = format!("GRPCRoute {}", key(&r.metadata));
        (object, grpc_route_missing_backends(model, r))
    });
    http.chain(grpc)
        .flat_map(|(object, missing)| {
            missing.into_iter().map(move |m| Problem {
                object: object.clone(),
                message: format!(
                    "{} names Service {}/{}, which does not exist; requests routed to it fail",
                    m.field, m.namespace, m.name
                ),
            })
        })
        .collect()
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The `ResolvedRefs` condition for a route whose missing backends are `missing`:
/// `True`/`ResolvedRefs`, or `False`/`BackendNotFound` naming each missing Service.
pub fn resolved_refs(missing: &[MissingBackend], generation: Option<i64>, now: Time) -> Condition {
    let (status, reason, message) = if missing.is_empty() {
        (
            "True",
            "ResolvedRefs",
            "all backend references resolved".to_owned(),
        )
    } else {
        let names: Vec<String> = missing
            .iter()
            .map(|m| format!("{}: Service {}/{} not found", m.field, m.namespace, m.name))
            .collect();
        ("False", "BackendNotFound", names.join("; "))
    };
    Condition {
        type_: "ResolvedRefs".to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// The two route kinds Ambit writes status on; their status shapes are field-for-field equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

/// A route's parentRefs in the shape a status entry names them.
macro_rules! status_parents {
    ($route:expr) => {
        $route
            .spec
            .parent_refs
            .iter()
            .flatten()
            .map(|p| HttpRouteStatusParentsParentRef {
                group: p.group.clone(),
                kind: p.kind.clone(),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                port: p.port,
                section_name: p.section_name.clone(),
            })
            .collect()
    };
}

/// `route`'s parentRefs, as status entries name them.
pub fn http_route_parents(route: &HttpRoute) -> Vec<HttpRouteStatusParentsParentRef> {
    status_parents!(route)
}

/// As [`http_route_parents`], for a GRPCRoute.
pub fn grpc_route_parents(route: &GrpcRoute) -> Vec<HttpRouteStatusParentsParentRef> {
    status_parents!(route)
}

/// A route status with one entry per parent in `parents`, each with `conditions`.
pub fn route_status(
    parents: Vec<HttpRouteStatusParentsParentRef>,
    conditions: &[Condition],
) -> HttpRouteStatus {
    let parents = parents
        .into_iter()
        .map(|parent_ref| HttpRouteStatusParents {
            conditions: conditions.to_vec(),
            controller_name: CONTROLLER_NAME.to_owned(),
            parent_ref,
        });
    HttpRouteStatus {
        parents: parents.collect(),
    }
}

/// `route`'s status as Ambit sees it: one entry per parentRef, each with `condition`.
pub fn http_route_status(route: &HttpRoute, condition: &Condition) -> HttpRouteStatus {
    route_status(http_route_parents(route), std::slice::from_ref(condition))
}

/// Writes a route's status; a trait so that the decision can be tested without a server.
pub trait RouteStatusWriter {
    fn write_route_status(
        &self,
        kind: RouteKind,
        namespace: &str,
        name: &str,
        status: &HttpRouteStatus,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// [`RouteStatusWriter`] through the API server's `status` subresource.
///
/// A JSON merge patch replaces `status.parents` whole: right while Ambit is the only
/// controller of the route's parents (Services, under GAMMA); a route shared with another
/// controller would need a read-modify-write that keeps their entries.
#[derive(Clone)]
pub struct ApiRouteStatus {
    client: Client,
}

impl ApiRouteStatus {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }
}

impl RouteStatusWriter for ApiRouteStatus {
    async fn write_route_status(
        &self,
        kind: RouteKind,
        namespace: &str,
        name: &str,
        status: &HttpRouteStatus,
    ) -> Result<(), kube::Error> {
        let patch = serde_json::json!({ "status": status });
        let params = PatchParams::default();
        match kind {
            RouteKind::Http => {
                let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), namespace);
                api.patch_status(name, &params, &Patch::Merge(&patch))
                    .await?;
            }
            RouteKind::Grpc => {
                let api: Api<GrpcRoute> = Api::namespaced(self.client.clone(), namespace);
                api.patch_status(name, &params, &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }
}
