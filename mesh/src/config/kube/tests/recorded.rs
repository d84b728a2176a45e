//! Recorded API objects make the same model as the equivalent YAML file.

use super::fake_api::FakeApi;
use super::*;
use crate::model::Enrollment;

#[tokio::test]
async fn recorded_cluster_gives_the_same_model_as_the_equivalent_file() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let model = source.current();
    let expected = file_model();
    assert_eq!(*model, expected);
    assert_eq!(source.not_ready(), None);
}

#[tokio::test]
async fn recorded_cluster_answers_the_meshs_questions() {
    let api = FakeApi::recorded().await;
    let source = ready_source(&api).await;
    let m = source.current();

    let enrolled: Vec<_> = m
        .enrolled_on_node("node1")
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(enrolled, ["client-5d8f7-qx2lp", "echo-v1-7c9d4-k8m2n"]);
    let batch = m.workload("shop", "batch-28453920-r4t6v").unwrap();
    assert_eq!(m.enrollment(batch), Enrollment::OptedOut);
    let client = m.workload("shop", "client-5d8f7-qx2lp").unwrap();
    assert_eq!(
        client.uid.as_deref(),
        Some("00000000-0000-4000-8000-000000001049")
    );

    let echo = m.service("shop", "echo").unwrap();
    assert_eq!(
        echo.ports[0].target_port, 8080,
        "named targetPort resolved by the slice"
    );
    let waypoint = m.waypoint_for(echo).unwrap();
    assert_eq!(waypoint.metadata.name.as_deref(), Some("waypoint"));
    let at: Vec<_> = m
        .waypoint_workloads(waypoint)
        .flat_map(|w| &w.ips)
        .collect();
    assert_eq!(at, [&"10.10.2.5".parse::<std::net::IpAddr>().unwrap()]);
    assert!(m
        .waypoint_for(m.service("shop", "ratings").unwrap())
        .is_none());
    assert!(
        m.gateway("shop", "ingress").is_none(),
        "not a waypoint class"
    );
    assert!(m.service("shop", "docs").is_none(), "ExternalName");
    assert!(
        m.workload("shop", "report-28453800-b6g2x").is_none(),
        "Succeeded"
    );
    assert!(
        m.workload("shop", "echo-v2-6b4f9-w9c2d").is_none(),
        "no IP yet"
    );
    assert_eq!(source.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn watches_are_narrowed_to_what_the_node_needs() {
    let api = FakeApi::recorded().await;
    let _source = ready_source(&api).await;
    let requests = api.requests();
    let asked = |needle: &str| requests.iter().any(|r| r.contains(needle));
    assert!(
        asked("/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode1"),
        "{requests:#?}"
    );
    assert!(
        asked("fieldSelector=spec.nodeName%21%3Dnode1%2Cstatus.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"),
        "{requests:#?}"
    );
    assert!(
        asked(
            "/apis/discovery.k8s.io/v1/endpointslices?&labelSelector=kubernetes.io%2Fservice-name"
        ),
        "{requests:#?}"
    );
    assert!(asked("watch=true"), "{requests:#?}");
}
