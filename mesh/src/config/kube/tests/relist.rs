//! Watch failures, relists, and an API server unreachable at start-up.

use serde_json::json;

use super::fake_api::FakeApi;
use super::*;

fn pod_lists(api: &FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn dropped_watch_resumes_and_catches_up() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let lists = pod_lists(&api);

    tracing::info!("the connections drop; a pod is deleted before the watches resume");
    api.drop_watches();
    api.delete("pods", "shop", "echo-v1-7c9d4-k8m2n");
    until_model(&source, "echo-v1 gone", |m| {
        m.workload("shop", "echo-v1-7c9d4-k8m2n").is_none()
    })
    .await;
    assert_eq!(
        pod_lists(&api),
        lists,
        "resumed from its version, no relist"
    );
}

#[tokio::test]
async fn expired_watch_relists_and_converges() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let lists = pod_lists(&api);

    tracing::info!("changes happen, then the server forgets its history (410 Gone on resume)");
    api.drop_watches();
    api.delete("pods", "shop", "client-5d8f7-qx2lp");
    api.edit("namespaces", "", "legacy", |ns| {
        ns["metadata"]["labels"]["ambit.dev/dataplane-mode"] = json!("ambient");
    });
    api.compact();

    let m = until_model(&source, "the relisted state", |m| {
        m.workload("shop", "client-5d8f7-qx2lp").is_none()
            && m.enrolled_on_node("node1").any(|w| w.namespace == "legacy")
    })
    .await;
    assert!(pod_lists(&api) > lists, "the pods were listed again");

    let mut expected = file_model().state().clone();
    expected
        .workloads
        .retain(|w| w.name != "client-5d8f7-qx2lp");
    let legacy = expected
        .namespaces
        .iter_mut()
        .find(|n| n.name == "legacy")
        .unwrap();
    legacy
        .labels
        .insert("ambit.dev/dataplane-mode".to_owned(), "ambient".to_owned());
    assert_eq!(*m, Model::new(expected).unwrap());
}

#[tokio::test]
async fn unreachable_api_server_is_retried_and_explained_until_it_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let source = KubeSource::start(client, settings());

    tracing::info!("nothing listens: not ready, and the reason names the failing lists");
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(why) = source.not_ready() {
                if why.contains("pods on this node (failed to perform initial object list") {
                    return why;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let why = waited.await.expect("no reason given");
    assert!(
        why.starts_with("waiting for the first list of namespaces ("),
        "{why}"
    );
    assert_eq!(source.current().workloads().len(), 0);

    tracing::info!("the API server comes up: the watches' backoff finds it");
    let api = FakeApi::recorded_on(addr).await;
    tokio::time::timeout(Duration::from_secs(40), source.ready())
        .await
        .unwrap_or_else(|_| panic!("still not ready: {:?}", source.not_ready()));
    assert_eq!(source.not_ready(), None);
    assert_eq!(*source.current(), file_model());
    drop(api);
}
