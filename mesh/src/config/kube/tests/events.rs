//! Watch events change the model one at a time, through the fake API server.

use serde_json::json;

use super::fake_api::FakeApi;
use super::*;
use crate::model::Enrollment;

fn names_on(model: &Model, node: &str) -> Vec<String> {
    model
        .enrolled_on_node(node)
        .map(|w| w.name.clone())
        .collect()
}

#[tokio::test]
async fn pod_added_modified_and_deleted_updates_the_model() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;

    tracing::info!("a new pod on node2 joins the model");
    let mut pod = api.get("pods", "shop", "ratings-84c6d-p9j3h");
    pod["metadata"]["name"] = json!("ratings-84c6d-n3b7x");
    pod["metadata"]["uid"] = json!("00000000-0000-4000-8000-00000000beef");
    pod["status"]["podIP"] = json!("10.10.2.7");
    pod["status"]["podIPs"] = json!([{"ip": "10.10.2.7"}]);
    api.put("pods", pod);
    let m = until_model(&source, "the new pod", |m| {
        m.workload("shop", "ratings-84c6d-n3b7x").is_some()
    })
    .await;
    let ratings = m.service("shop", "ratings").unwrap();
    assert_eq!(m.endpoints(ratings).count(), 2);

    tracing::info!(
        "the unscheduled pod is scheduled on node1 and gets an IP: it moves to the local watch"
    );
    api.edit("pods", "shop", "echo-v2-6b4f9-w9c2d", |pod| {
        pod["spec"]["nodeName"] = json!("node1");
        pod["status"]["phase"] = json!("Running");
        pod["status"]["podIP"] = json!("10.10.1.8");
        pod["status"]["podIPs"] = json!([{"ip": "10.10.1.8"}]);
    });
    let m = until_model(&source, "the scheduled pod", |m| {
        names_on(m, "node1").contains(&"echo-v2-6b4f9-w9c2d".to_owned())
    })
    .await;
    let w = m.workload_by_ip("10.10.1.8".parse().unwrap()).unwrap();
    assert_eq!(
        (w.node.as_str(), w.service_account.as_str()),
        ("node1", "echo")
    );

    tracing::info!("a label change takes a pod out of a Service's endpoints");
    api.edit("pods", "shop", "echo-v1-7c9d4-k8m2n", |pod| {
        pod["metadata"]["labels"]["app"] = json!("echo-canary");
    });
    let m = until_model(&source, "echo-v1 out of echo", |m| {
        let echo = m.service("shop", "echo").unwrap();
        !m.endpoints(echo).any(|w| w.name == "echo-v1-7c9d4-k8m2n")
    })
    .await;
    assert!(m.workload("shop", "echo-v1-7c9d4-k8m2n").is_some());

    tracing::info!("a deleted pod leaves the model");
    api.delete("pods", "shop", "client-5d8f7-qx2lp");
    let m = until_model(&source, "client gone", |m| {
        m.workload("shop", "client-5d8f7-qx2lp").is_none()
    })
    .await;
    assert!(m.workload_by_ip("10.10.1.2".parse().unwrap()).is_none());
}

#[tokio::test]
async fn namespace_label_flip_enrolls_and_an_unknown_value_is_reported() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let old = |m: &Model| m.workload("legacy", "old-app-6c8d7-w2q4r").unwrap().clone();
    assert_eq!(
        source.current().enrollment(&old(&source.current())),
        Enrollment::NamespaceNotEnrolled
    );

    tracing::info!("labelling legacy ambient enrolls its pod");
    api.edit("namespaces", "", "legacy", |ns| {
        ns["metadata"]["labels"]["ambit.dev/dataplane-mode"] = json!("ambient");
    });
    until_model(&source, "old-app enrolled", |m| {
        m.enrollment(&old(m)).is_enrolled()
    })
    .await;

    tracing::info!("a typo in the value is reported, and the namespace is not enrolled");
    api.edit("namespaces", "", "legacy", |ns| {
        ns["metadata"]["labels"]["ambit.dev/dataplane-mode"] = json!("ambeint");
    });
    let m = until_model(&source, "old-app out", |m| {
        !m.enrollment(&old(m)).is_enrolled()
    })
    .await;
    assert_eq!(m.enrollment(&old(&m)), Enrollment::NamespaceNotEnrolled);
    assert_eq!(source.problems_total(), 1);
    let problems = source.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "Namespace legacy: unknown value \"ambeint\" for label ambit.dev/dataplane-mode"
        ),
        "{problems:?}"
    );

    tracing::info!("fixing the label clears the problem; the counter keeps its count");
    api.edit("namespaces", "", "legacy", |ns| {
        ns["metadata"]["labels"]["ambit.dev/dataplane-mode"] = json!("ambient");
    });
    until_model(&source, "old-app enrolled again", |m| {
        m.enrollment(&old(m)).is_enrolled()
    })
    .await;
    assert_eq!(source.problems(), Vec::<String>::new());
    assert_eq!(source.problems_total(), 1);
}

#[tokio::test]
async fn endpointslice_port_change_moves_a_named_target_port() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    api.edit("endpointslices", "shop", "echo-8xk2p", |slice| {
        slice["ports"][0]["port"] = json!(8081);
    });
    until_model(&source, "echo's target port 8081", |m| {
        m.service("shop", "echo").unwrap().ports[0].target_port == 8081
    })
    .await;

    tracing::info!("without a slice the named port is not resolved, and is left out");
    api.delete("endpointslices", "shop", "echo-8xk2p");
    until_model(&source, "echo without ports", |m| {
        m.service("shop", "echo").unwrap().ports.is_empty()
    })
    .await;
}

#[tokio::test]
async fn route_to_a_missing_service_is_reported_until_the_service_exists() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let echo_v2 = api.get("services", "shop", "echo-v2");
    api.delete("services", "shop", "echo-v2");
    until_model(&source, "echo-v2 gone", |m| {
        m.service("shop", "echo-v2").is_none()
    })
    .await;
    assert_eq!(
        source.problems(),
        [
            "HTTPRoute shop/echo-split: rules[0].backendRefs[1] names Service shop/echo-v2, \
          which does not exist; requests routed to it fail"
        ]
    );
    assert!(
        source.current().http_route("shop", "echo-split").is_some(),
        "route kept"
    );
    assert_eq!(source.problems_total(), 1);

    tracing::info!("the Service comes back: the problem is solved");
    api.put("services", echo_v2);
    until_model(&source, "echo-v2 back", |m| {
        m.service("shop", "echo-v2").is_some()
    })
    .await;
    assert_eq!(source.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn burst_of_changes_makes_one_model_and_no_op_changes_make_none() {
    let api = FakeApi::recorded().await;
    let source = KubeSource::start(
        api.client(),
        KubeSettings {
            debounce: Duration::from_millis(300),
            ..settings()
        },
    );
    tokio::time::timeout(PATIENCE, source.ready())
        .await
        .unwrap();
    let mut models = source.subscribe();
    models.borrow_and_update();

    tracing::info!("three pods deleted at once: one new model");
    for pod in [
        "client-5d8f7-qx2lp",
        "echo-v1-7c9d4-k8m2n",
        "ratings-84c6d-p9j3h",
    ] {
        api.delete("pods", "shop", pod);
    }
    tokio::time::timeout(PATIENCE, models.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(models.borrow_and_update().workloads().len(), 4);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !models.has_changed().unwrap(),
        "a second model for the same burst"
    );

    tracing::info!("a change the model does not carry (a pod condition) publishes nothing");
    api.edit("pods", "shop", "batch-28453920-r4t6v", |pod| {
        pod["status"]["conditions"][0]["status"] = json!("False");
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!models.has_changed().unwrap());
}

#[tokio::test]
async fn waypoint_label_naming_no_gateway_is_reported() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    api.delete("gateways", "shop", "waypoint");
    let m = until_model(&source, "the waypoint gone", |m| m.gateways().is_empty()).await;
    assert!(m.waypoint_for(m.service("shop", "echo").unwrap()).is_none());
    assert_eq!(
        source.problems(),
        [
            "Namespace shop: label ambit.dev/use-waypoint names Gateway shop/waypoint, which is \
          not an ambit-waypoint Gateway; its traffic does not go through a waypoint"
        ]
    );
}
