//! Enrollment, case by case: namespace label, pod opt-out, host network.

use super::*;
use crate::model::Enrollment;

fn enrollment_of(namespace: Option<Namespace>, pod: Workload) -> Enrollment {
    let m = model(namespace.into_iter().collect(), vec![pod.clone()], vec![]);
    m.enrollment(&pod)
}

fn pod() -> Workload {
    workload("shop", "client", "node1", "10.0.1.1")
}

#[test]
fn pod_in_ambient_namespace_is_enrolled() {
    let got = enrollment_of(Some(namespace("shop", Some("ambient"))), pod());
    assert_eq!(got, Enrollment::Enrolled);
    assert!(got.is_enrolled());
}

#[test]
fn pod_opted_out_in_enrolled_namespace_is_not_enrolled() {
    let pod = with_labels(pod(), &[(DATAPLANE_MODE, "none")]);
    let got = enrollment_of(Some(namespace("shop", Some("ambient"))), pod);
    assert_eq!(got, Enrollment::OptedOut);
}

#[test]
fn pod_in_unlabelled_namespace_is_not_enrolled() {
    let got = enrollment_of(Some(namespace("shop", None)), pod());
    assert_eq!(got, Enrollment::NamespaceNotEnrolled);
}

#[test]
fn pod_in_unlisted_namespace_is_not_enrolled() {
    assert_eq!(enrollment_of(None, pod()), Enrollment::NamespaceNotEnrolled);
}

#[test]
fn pod_cannot_opt_in_alone_in_an_unlabelled_namespace() {
    let pod = with_labels(pod(), &[(DATAPLANE_MODE, "ambient")]);
    let got = enrollment_of(Some(namespace("shop", None)), pod);
    assert_eq!(got, Enrollment::NamespaceNotEnrolled);
}

#[test]
fn pod_in_namespace_labelled_none_is_not_enrolled() {
    let got = enrollment_of(Some(namespace("shop", Some("none"))), pod());
    assert_eq!(got, Enrollment::NamespaceNotEnrolled);
}

#[test]
fn host_network_pod_is_never_enrolled() {
    let mut pod = pod();
    pod.host_network = true;
    let got = enrollment_of(Some(namespace("shop", Some("ambient"))), pod);
    assert_eq!(got, Enrollment::HostNetwork);
}

#[test]
fn host_network_is_the_reason_given_before_opt_out() {
    let mut pod = with_labels(pod(), &[(DATAPLANE_MODE, "none")]);
    pod.host_network = true;
    let got = enrollment_of(Some(namespace("shop", None)), pod);
    assert_eq!(got, Enrollment::HostNetwork);
}

#[test]
fn opt_out_is_the_reason_given_in_an_unlabelled_namespace() {
    let pod = with_labels(pod(), &[(DATAPLANE_MODE, "none")]);
    let got = enrollment_of(Some(namespace("shop", None)), pod);
    assert_eq!(got, Enrollment::OptedOut);
}

#[test]
fn unknown_label_values_count_as_absent() {
    let typo_ns = enrollment_of(Some(namespace("shop", Some("Ambient"))), pod());
    assert_eq!(typo_ns, Enrollment::NamespaceNotEnrolled);
    let typo_pod = with_labels(pod(), &[(DATAPLANE_MODE, "off")]);
    let got = enrollment_of(Some(namespace("shop", Some("ambient"))), typo_pod);
    assert_eq!(got, Enrollment::Enrolled);
}

#[test]
fn enrolled_on_node_lists_only_that_nodes_enrolled_pods() {
    let m = model(
        vec![
            namespace("shop", Some("ambient")),
            namespace("legacy", None),
        ],
        vec![
            workload("shop", "client", "node1", "10.0.1.1"),
            workload("shop", "echo-1", "node1", "10.0.1.2"),
            workload("shop", "echo-2", "node2", "10.0.2.1"),
            with_labels(
                workload("shop", "batch", "node1", "10.0.1.3"),
                &[(DATAPLANE_MODE, "none")],
            ),
            workload("legacy", "old", "node1", "10.0.1.4"),
        ],
        vec![],
    );
    let names = |node| {
        m.enrolled_on_node(node)
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("node1"), ["client", "echo-1"]);
    assert_eq!(names("node2"), ["echo-2"]);
    assert!(names("node3").is_empty());
}
