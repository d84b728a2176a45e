//! Tests of the Kubernetes source: conversions case by case, then the whole source against a
//! fake API server on localhost serving recorded objects.

mod convert;
mod events;
mod fake_api;
mod rbac;
mod recorded;
mod relist;
mod routes;
mod state;

use std::sync::Arc;
use std::time::Duration;

use super::{KubeSettings, KubeSource};
use crate::model::Model;
use fake_api::fixtures;

/// Long enough for a relist after the watcher's first backoff (about 1 s).
const PATIENCE: Duration = Duration::from_secs(15);

/// The agent of `node1`, with a short debounce.
fn settings() -> KubeSettings {
    KubeSettings {
        debounce: Duration::from_millis(20),
        ..KubeSettings::new("node1")
    }
}

/// What the file source makes of `tests/fixtures/kube/shop.yaml`, with the generation the
/// API server gave each recorded route and policy (1): a file's objects have none, and it is
/// all that differs.
fn file_model() -> Model {
    let file = crate::config::load(fixtures().join("shop.yaml")).unwrap();
    let mut state = file.state().clone();
    for route in &mut state.http_routes {
        route.metadata.generation = Some(1);
    }
    for route in &mut state.grpc_routes {
        route.metadata.generation = Some(1);
    }
    for policy in &mut state.traffic_policies {
        policy.metadata.generation = Some(1);
    }
    Model::new(state).unwrap()
}

/// Waits until the source's model satisfies `done`, and returns it.
async fn until_model(source: &KubeSource, what: &str, done: impl Fn(&Model) -> bool) -> Arc<Model> {
    let mut models = source.subscribe();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            let model = models.borrow_and_update().clone();
            if done(&model) {
                return model;
            }
            models.changed().await.expect("the source stopped");
        }
    });
    waited.await.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; model: {:?}",
            source.current()
        )
    })
}

/// A started source on the fake API, once ready.
async fn ready_source(api: &fake_api::FakeApi) -> KubeSource {
    let source = KubeSource::start(api.client(), settings());
    tokio::time::timeout(PATIENCE, source.ready())
        .await
        .unwrap_or_else(|_| panic!("not ready: {:?}", source.not_ready()));
    source
}
