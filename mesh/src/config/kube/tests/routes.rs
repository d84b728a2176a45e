//! The ResolvedRefs condition of a route, and writing it to the route's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::super::routes::{
    http_route_missing_backends, http_route_status, resolved_refs, ApiRouteStatus, RouteKind,
    RouteStatusWriter, CONTROLLER_NAME,
};
use super::fake_api::FakeApi;
use super::*;

fn now() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

#[test]
fn route_with_every_backend_is_resolved() {
    let m = file_model();
    let route = m.http_route("shop", "echo-split").unwrap();
    let missing = http_route_missing_backends(&m, route);
    assert!(missing.is_empty());
    let c = resolved_refs(&missing, Some(3), now());
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("ResolvedRefs", "True", "ResolvedRefs")
    );
    assert_eq!(c.observed_generation, Some(3));
}

#[test]
fn route_to_a_missing_service_gets_backend_not_found() {
    let mut state = file_model().state().clone();
    state.services.retain(|s| s.name != "echo-v1");
    let m = Model::new(state).unwrap();
    let route = m.http_route("shop", "echo-split").unwrap();
    let missing = http_route_missing_backends(&m, route);
    let c = resolved_refs(&missing, None, now());
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackendNotFound")
    );
    assert_eq!(
        c.message,
        "rules[0].backendRefs[0]: Service shop/echo-v1 not found"
    );
    let status = http_route_status(route, &c);
    assert_eq!(status.parents.len(), 1);
    assert_eq!(status.parents[0].parent_ref.name, "echo");
    assert_eq!(status.parents[0].controller_name, CONTROLLER_NAME);
}

#[tokio::test]
async fn status_writer_patches_the_status_subresource() {
    let api = FakeApi::recorded().await;
    let m = file_model();
    let route = m.http_route("shop", "echo-split").unwrap();
    let status = http_route_status(route, &resolved_refs(&[], Some(1), now()));
    ApiRouteStatus::new(api.client())
        .write_route_status(RouteKind::Http, "shop", "echo-split", &status)
        .await
        .unwrap();
    let patches = api.status_patches();
    assert_eq!(patches.len(), 1);
    let (path, body) = &patches[0];
    assert_eq!(
        path,
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/echo-split/status"
    );
    assert_eq!(
        body["status"]["parents"][0]["conditions"][0]["reason"],
        "ResolvedRefs"
    );
}
