//! Parsing and checking a document: what a valid one becomes, and how each mistake is named.

use super::SHOP;
use crate::config::{load, parse, ConfigError};
use crate::model::{Enrollment, Protocol};

/// The message for `yaml`, which must be refused.
fn refusal(yaml: &str) -> String {
    match parse(yaml) {
        Ok(model) => panic!("accepted {model:?}"),
        Err(err) => err.to_string(),
    }
}

fn assert_refused(yaml: &str, expected: &str) {
    let message = refusal(yaml);
    assert!(
        message.contains(expected),
        "message {message:?} does not contain {expected:?}"
    );
}

const NODES: &str =
    "nodes: [{name: node1, address: 192.168.50.1}, {name: node2, address: 192.168.50.2}]\n";

#[test]
fn example_document_becomes_the_model_it_describes() {
    let m = parse(SHOP).unwrap();
    assert_eq!(m.trust_domain(), "cluster.local");
    assert_eq!(m.nodes().len(), 2);
    let enrolled: Vec<_> = m.enrolled_on_node("node1").map(|w| &w.name).collect();
    assert_eq!(enrolled, ["client", "echo-1"]);
    let enrolled: Vec<_> = m.enrolled_on_node("node2").map(|w| &w.name).collect();
    assert_eq!(enrolled, ["echo-2"]);

    let batch = m.workload("shop", "batch").unwrap();
    assert_eq!(batch.service_account, "default");
    assert_eq!(m.enrollment(batch), Enrollment::OptedOut);
    let old = m.workload_by_ip("10.10.1.4".parse().unwrap()).unwrap();
    assert_eq!(m.enrollment(old), Enrollment::NamespaceNotEnrolled);
    assert_eq!(old.netns.as_deref(), Some("/proc/4242/ns/net".as_ref()));

    let echo = m.service_by_vip("10.96.0.10".parse().unwrap()).unwrap();
    let endpoints: Vec<_> = m.endpoints(echo).map(|w| &w.name).collect();
    assert_eq!(endpoints, ["echo-1", "echo-2"]);
    assert_eq!(echo.ports[0].target_port, 8080);
    assert_eq!(m.redirect().exclude_ports, [22]);
    assert_eq!(m.redirect().exclude_cidrs[1].to_string(), "fd00:ffff::/32");
}

#[test]
fn model_dump_parses_back_to_the_same_model() {
    let m = parse(SHOP).unwrap();
    let dump = serde_yaml::to_string(&m).unwrap();
    assert_eq!(parse(&dump).unwrap(), m, "dump:\n{dump}");
}

#[test]
fn readme_shows_the_tested_example() {
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains(SHOP),
        "README.md must embed testdata/shop.yaml verbatim"
    );
}

#[test]
fn omitted_fields_take_kubernetes_defaults() {
    let m = parse(&format!(
        "{NODES}workloads: [{{name: a, namespace: ns, node: node1}}]\n\
         services: [{{name: s, namespace: ns, ports: [{{port: 80}}]}}]\n"
    ))
    .unwrap();
    assert_eq!(m.trust_domain(), "cluster.local");
    let a = m.workload("ns", "a").unwrap();
    assert_eq!(
        (a.service_account.as_str(), a.host_network),
        ("default", false)
    );
    let port = &m.service("ns", "s").unwrap().ports[0];
    assert_eq!((port.target_port, port.protocol), (80, Protocol::Tcp));
}

#[test]
fn namespace_used_but_not_listed_is_unlabelled() {
    let m = parse(&format!(
        "{NODES}workloads: [{{name: a, namespace: elsewhere, node: node1, ips: [10.0.0.1]}}]\n"
    ))
    .unwrap();
    let a = m.workload("elsewhere", "a").unwrap();
    assert_eq!(m.enrollment(a), Enrollment::NamespaceNotEnrolled);
}

#[test]
fn invalid_ip_is_named_by_its_path() {
    assert_refused(
        &format!(
            "{NODES}workloads:\n\
             - {{name: a, namespace: ns, node: node1, ips: [10.0.0.1]}}\n\
             - {{name: b, namespace: ns, node: node1, ips: [10.0.0.2]}}\n\
             - {{name: c, namespace: ns, node: node1, ips: [10.0.0.300]}}\n"
        ),
        "config: workloads[2].ips[0]: invalid IP address \"10.0.0.300\"",
    );
    assert_refused(
        "nodes: [{name: node1, address: node1.local}]",
        "nodes[0].address: invalid IP address \"node1.local\"",
    );
    assert_refused(
        "services: [{name: s, namespace: ns, vips: [10.96.0.1, 10.96.0]}]",
        "services[0].vips[1]: invalid IP address \"10.96.0\"",
    );
}

#[test]
fn duplicate_workload_is_named_by_its_path() {
    assert_refused(
        &format!(
            "{NODES}workloads:\n\
             - {{name: a, namespace: ns, node: node1}}\n\
             - {{name: a, namespace: other, node: node1}}\n\
             - {{name: a, namespace: ns, node: node2}}\n"
        ),
        "workloads[2].name: workload ns/a is listed twice",
    );
}

#[test]
fn ip_shared_by_two_workloads_is_named_by_its_path_and_owner() {
    assert_refused(
        &format!(
            "{NODES}workloads:\n\
             - {{name: a, namespace: ns, node: node1, ips: [10.0.0.1]}}\n\
             - {{name: b, namespace: ns, node: node1, ips: [10.0.0.2, 10.0.0.1]}}\n"
        ),
        "workloads[1].ips[1]: 10.0.0.1 is already an address of workload ns/a",
    );
}

#[test]
fn vip_taken_by_a_workload_is_named_by_its_path() {
    assert_refused(
        &format!(
            "{NODES}workloads: [{{name: a, namespace: ns, node: node1, ips: [10.0.0.1]}}]\n\
             services: [{{name: s, namespace: ns, vips: [10.0.0.1]}}]\n"
        ),
        "services[0].vips[0]: 10.0.0.1 is already an address of workload ns/a",
    );
}

#[test]
fn unknown_node_lists_the_known_ones() {
    assert_refused(
        &format!("{NODES}workloads: [{{name: a, namespace: ns, node: node3}}]"),
        "workloads[0].node: node \"node3\" is not listed under nodes (known: node1, node2)",
    );
    assert_refused(
        "workloads: [{name: a, namespace: ns, node: node1}]",
        "workloads[0].node: node \"node1\" is not listed under nodes (no node is listed)",
    );
}

#[test]
fn unknown_dataplane_mode_on_a_namespace_is_named_by_its_path() {
    assert_refused(
        "namespaces: [{name: shop, labels: {ambit.dev/dataplane-mode: ambiant}}]",
        "namespaces[0].labels[\"ambit.dev/dataplane-mode\"]: unknown value \"ambiant\" \
         for label ambit.dev/dataplane-mode; allowed: ambient, none",
    );
}

#[test]
fn unknown_dataplane_mode_on_a_pod_is_named_by_its_path() {
    assert_refused(
        &format!(
            "{NODES}workloads: [{{name: a, namespace: ns, node: node1, \
             labels: {{ambit.dev/dataplane-mode: off}}}}]"
        ),
        "workloads[0].labels[\"ambit.dev/dataplane-mode\"]: unknown value \"off\"",
    );
}

#[test]
fn bad_cidr_is_named_by_its_path_with_a_hint() {
    assert_refused(
        "redirect: {excludeCidrs: [10.0.0.0/8, 10.1.2.3/16]}",
        "redirect.excludeCidrs[1]: invalid CIDR \"10.1.2.3/16\": host bits are set after the \
         prefix; did you mean \"10.1.0.0/16\"?",
    );
    assert_refused(
        "redirect: {excludeCidrs: [\"fd00::/200\"]}",
        "redirect.excludeCidrs[0]: invalid CIDR \"fd00::/200\": the prefix length must be a \
         number from 0 to 128",
    );
}

#[test]
fn port_zero_is_named_by_its_path() {
    let ports = |ports: &str| format!("services: [{{name: s, namespace: ns, ports: [{ports}]}}]");
    assert_refused(
        &ports("{port: 80}, {port: 0}"),
        "services[0].ports[1].port: port 0 is not a port; use 1-65535",
    );
    assert_refused(
        &ports("{port: 80, targetPort: 0}"),
        "services[0].ports[0].targetPort: port 0",
    );
    assert_refused(
        "redirect: {excludePorts: [22, 0]}",
        "redirect.excludePorts[1]: port 0",
    );
}

#[test]
fn unknown_field_is_named_by_its_path() {
    assert_refused(
        &format!("{NODES}workloads: [{{name: a, namespace: ns, node: node1, ip: [10.0.0.1]}}]"),
        "workloads[0].ip: unknown field `ip`, expected one of",
    );
    assert_refused(
        "trustdomain: example.org",
        "trustdomain: unknown field `trustdomain`",
    );
}

#[test]
fn wrong_type_is_named_by_its_path_and_line() {
    assert_refused(
        "services: [{name: s, namespace: ns, ports: [{port: http}]}]",
        "services[0].ports[0].port: invalid type: string \"http\", expected u16 at line 1",
    );
    assert_refused(
        "services: [{name: s, namespace: ns, ports: [{port: 80, protocol: HTTP}]}]",
        "services[0].ports[0].protocol: unknown variant `HTTP`, expected one of `TCP`, `UDP`, `SCTP`",
    );
}

#[test]
fn bad_names_and_trust_domain_are_refused() {
    assert_refused(
        "namespaces: [{name: Shop}]",
        "namespaces[0].name: invalid name \"Shop\"",
    );
    assert_refused(
        &format!(
            "{NODES}workloads: [{{name: a, namespace: ns, node: node1, serviceAccount: a/b}}]"
        ),
        "workloads[0].serviceAccount: invalid name \"a/b\"",
    );
    assert_refused(
        "nodes: [{name: '', address: 10.0.0.1}]",
        "nodes[0].name: must not be empty",
    );
    assert_refused(
        "trustDomain: Example.org",
        "trustDomain: invalid trust domain \"Example.org\"",
    );
}

#[test]
fn empty_document_is_refused() {
    assert_refused("", "(document): the file is empty");
    assert_refused("# nothing yet\n---\n", "(document): the file is empty");
}

#[test]
fn error_exposes_the_field_path() {
    let err = parse(&format!(
        "{NODES}workloads: [{{name: a, namespace: ns, node: node9}}]"
    ))
    .unwrap_err();
    assert_eq!(err.field(), Some("workloads[0].node"));
}

#[test]
fn load_names_the_file_in_errors() {
    let missing = std::env::temp_dir().join("ambit-mesh-no-such-file.yaml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ambit-mesh-no-such-file.yaml"),
        "{err}"
    );

    let path = std::env::temp_dir().join(format!("ambit-mesh-load-{}.yaml", std::process::id()));
    std::fs::write(&path, "nodes: [{name: n, address: 1.2.3.400}]").unwrap();
    let err = load(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        err.starts_with(&format!("{}: nodes[0].address: invalid IP", path.display())),
        "{err}"
    );
}
