//! The in-memory state: relists, the two pod watches, readiness and address conflicts.

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::super::state::{Change, State, Watch};
use super::convert::pod;
use super::*;
use crate::model::RedirectSettings;

fn state_model(state: &State) -> Model {
    state
        .model("cluster.local", &RedirectSettings::default())
        .unwrap()
        .0
}

fn pod_named(name: &str, ip: &str) -> Pod {
    pod(json!({"metadata": {"name": name}, "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}))
}

#[test]
fn relist_replaces_the_objects_only_when_it_completes() {
    let mut state = State::default();
    state.apply(Change::LocalPod(Event::Init));
    state.apply(Change::LocalPod(Event::InitApply(pod_named(
        "a", "10.0.0.1",
    ))));
    state.apply(Change::LocalPod(Event::InitApply(pod_named(
        "b", "10.0.0.2",
    ))));
    assert!(state.apply(Change::LocalPod(Event::InitDone)));
    assert_eq!(state_model(&state).workloads().len(), 2);

    state.apply(Change::LocalPod(Event::Init));
    state.apply(Change::LocalPod(Event::InitApply(pod_named(
        "b", "10.0.0.2",
    ))));
    assert_eq!(
        state_model(&state).workloads().len(),
        2,
        "a still in force during the relist"
    );
    state.apply(Change::LocalPod(Event::InitDone));
    let names: Vec<_> = state_model(&state)
        .workloads()
        .iter()
        .map(|w| w.name.clone())
        .collect();
    assert_eq!(names, ["b"], "a was deleted while the watch was down");
}

#[test]
fn pod_in_both_pod_watches_is_one_workload() {
    let mut state = State::default();
    let mut moved = pod_named("a", "10.0.0.1");
    state.apply(Change::RemotePod(Event::Apply(moved.clone())));
    moved.metadata.uid = Some("local".to_owned());
    state.apply(Change::LocalPod(Event::Apply(moved)));
    let model = state_model(&state);
    assert_eq!(model.workloads().len(), 1);
    assert_eq!(model.workloads()[0].uid.as_deref(), Some("local"));
}

#[test]
fn not_ready_names_each_watch_missing_and_its_error() {
    let mut state = State::default();
    state.apply(Change::Failed {
        watch: Watch::Services,
        error: "connection refused".to_owned(),
    });
    let why = state.not_ready().unwrap();
    assert!(why.contains("services (connection refused)"), "{why}");
    assert!(why.contains("pods on this node,"), "{why}");
}

#[test]
fn ip_claimed_twice_stays_with_the_first_pod_and_is_reported() {
    let mut state = State::default();
    state.apply(Change::LocalPod(Event::Apply(pod_named("a", "10.0.0.1"))));
    state.apply(Change::RemotePod(Event::Apply(pod_named("b", "10.0.0.1"))));
    let (model, problems) = state
        .model("cluster.local", &RedirectSettings::default())
        .unwrap();
    assert_eq!(
        model
            .workload_by_ip("10.0.0.1".parse().unwrap())
            .unwrap()
            .name,
        "a"
    );
    assert!(model.workload("shop", "b").is_none());
    assert_eq!(
        problems[0].to_string(),
        "Pod shop/b: IP 10.0.0.1 is already the address of workload shop/a; \
         pod left out of the mesh until the conflict ends"
    );
}

#[tokio::test]
async fn source_fed_by_a_stream_publishes_once_every_watch_listed() {
    let mut changes = Vec::new();
    for watch in Watch::ALL {
        let (init, done) = match watch {
            Watch::LocalPods => (
                Change::LocalPod(Event::Init),
                Change::LocalPod(Event::InitDone),
            ),
            Watch::RemotePods => (
                Change::RemotePod(Event::Init),
                Change::RemotePod(Event::InitDone),
            ),
            Watch::Namespaces => (
                Change::Namespace(Event::Init),
                Change::Namespace(Event::InitDone),
            ),
            Watch::Nodes => (Change::Node(Event::Init), Change::Node(Event::InitDone)),
            Watch::Services => (
                Change::Service(Event::Init),
                Change::Service(Event::InitDone),
            ),
            Watch::EndpointSlices => (
                Change::EndpointSlice(Event::Init),
                Change::EndpointSlice(Event::InitDone),
            ),
            Watch::Gateways => (
                Change::Gateway(Event::Init),
                Change::Gateway(Event::InitDone),
            ),
            Watch::HttpRoutes => (
                Change::HttpRoute(Event::Init),
                Change::HttpRoute(Event::InitDone),
            ),
            Watch::TrafficPolicies => (
                Change::TrafficPolicy(Event::Init),
                Change::TrafficPolicy(Event::InitDone),
            ),
            Watch::GrpcRoutes => (
                Change::GrpcRoute(Event::Init),
                Change::GrpcRoute(Event::InitDone),
            ),
        };
        changes.push(init);
        if watch == Watch::LocalPods {
            changes.push(Change::LocalPod(Event::InitApply(pod_named(
                "a", "10.0.0.1",
            ))));
        }
        changes.push(done);
    }
    let source =
        KubeSource::from_changes(stream::iter(changes).chain(stream::pending()), settings());
    tokio::time::timeout(PATIENCE, source.ready())
        .await
        .unwrap();
    assert_eq!(source.current().workloads().len(), 1);
    assert_eq!(source.not_ready(), None);
}

#[tokio::test]
async fn failed_lists_reach_the_backoff_back_to_back() {
    use kube::runtime::watcher;

    use super::super::watches::hold_init;

    let events: Vec<watcher::Result<Event<Pod>>> = vec![
        Ok(Event::Init),
        Err(watcher::Error::NoResourceVersion),
        Ok(Event::Init),
        Err(watcher::Error::NoResourceVersion),
        Ok(Event::Init),
        Ok(Event::InitApply(pod_named("a", "10.0.0.1"))),
        Ok(Event::InitDone),
        Ok(Event::Init),
    ];
    let out: Vec<_> = hold_init(stream::iter(events)).collect().await;
    let shape: Vec<&str> = out
        .iter()
        .map(|item| match item {
            Err(_) => "error",
            Ok(Event::Init) => "init",
            Ok(Event::InitApply(_)) => "init-apply",
            Ok(Event::InitDone) => "init-done",
            Ok(_) => "other",
        })
        .collect();
    assert_eq!(
        shape,
        ["error", "error", "init", "init-apply", "init-done", "init"]
    );
}
