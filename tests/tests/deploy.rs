//! The install (deploy/): every overlay renders and validates against Kubernetes' schemas, the
//! plain manifests are the Helm chart rendered, and every RBAC grant has a reason.
//!
//! Needs no root, but needs `kubectl`, and Python with helm-python-sdk and kubernetes-validate:
//! `cargo xtask setup` installs them. A missing tool fails the test, naming that step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ambit_e2e::deploy::{self, object_key, objects, output};
use serde_json::Value;

/// Every permission Ambit's ServiceAccounts get, and why. A grant missing here fails
/// `every_rbac_grant_has_a_reason`; so does a line here that nothing grants.
const GRANTS: &[(&str, &str, &str, &str, &str)] = &[
    // (service account, API group, resource, verb, reason)
    (
        "ambit-node",
        "",
        "namespaces",
        "get",
        "enrollment: the namespace's ambit.dev/dataplane-mode label",
    ),
    (
        "ambit-node",
        "",
        "namespaces",
        "list",
        "enrollment: the namespace's ambit.dev/dataplane-mode label",
    ),
    (
        "ambit-node",
        "",
        "namespaces",
        "watch",
        "enrollment: the namespace's ambit.dev/dataplane-mode label",
    ),
    (
        "ambit-node",
        "",
        "pods",
        "get",
        "the workloads on this node: IPs, service account, opt-out label",
    ),
    (
        "ambit-node",
        "",
        "pods",
        "list",
        "the workloads on this node: IPs, service account, opt-out label",
    ),
    (
        "ambit-node",
        "",
        "pods",
        "watch",
        "the workloads on this node: IPs, service account, opt-out label",
    ),
    (
        "ambit-node",
        "",
        "services",
        "get",
        "service VIPs and ports to resolve redirected connects",
    ),
    (
        "ambit-node",
        "",
        "services",
        "list",
        "service VIPs and ports to resolve redirected connects",
    ),
    (
        "ambit-node",
        "",
        "services",
        "watch",
        "service VIPs and ports to resolve redirected connects",
    ),
    (
        "ambit-node",
        "discovery.k8s.io",
        "endpointslices",
        "get",
        "a service's endpoints for load balancing",
    ),
    (
        "ambit-node",
        "discovery.k8s.io",
        "endpointslices",
        "list",
        "a service's endpoints for load balancing",
    ),
    (
        "ambit-node",
        "discovery.k8s.io",
        "endpointslices",
        "watch",
        "a service's endpoints for load balancing",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "gateways",
        "get",
        "which services have a waypoint",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "gateways",
        "list",
        "which services have a waypoint",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "gateways",
        "watch",
        "which services have a waypoint",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "httproutes",
        "get",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "httproutes",
        "list",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "httproutes",
        "watch",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "grpcroutes",
        "get",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "grpcroutes",
        "list",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "grpcroutes",
        "watch",
        "routes the waypoint applies",
    ),
    (
        "ambit-node",
        "ambit.dev",
        "trafficpolicies",
        "get",
        "outlier detection, limits, faults for the waypoint",
    ),
    (
        "ambit-node",
        "ambit.dev",
        "trafficpolicies",
        "list",
        "outlier detection, limits, faults for the waypoint",
    ),
    (
        "ambit-node",
        "ambit.dev",
        "trafficpolicies",
        "watch",
        "outlier detection, limits, faults for the waypoint",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "httproutes/status",
        "patch",
        "report a rejected route as a condition",
    ),
    (
        "ambit-node",
        "gateway.networking.k8s.io",
        "grpcroutes/status",
        "patch",
        "report a rejected route as a condition",
    ),
    (
        "ambit-node",
        "ambit.dev",
        "trafficpolicies/status",
        "patch",
        "report a rejected policy as a condition",
    ),
    (
        "ambit-controller",
        "authentication.k8s.io",
        "tokenreviews",
        "create",
        "authenticate a node agent by its service-account token",
    ),
    (
        "ambit-controller",
        "",
        "pods",
        "get",
        "sign a workload's certificate only for the node its pod runs on",
    ),
    (
        "ambit-controller",
        "",
        "pods",
        "list",
        "sign a workload's certificate only for the node its pod runs on",
    ),
];

/// Flags the manifests pass that the binaries do not have yet, and what provides them. When a
/// binary gains one, `manifests_use_only_flags_the_binaries_have` fails until it leaves here.
const PENDING_FLAGS: &[(&str, &str, &str, &str)] = &[
    // (binary, subcommand, flag, what it is waiting for)
    (
        "ambit-node",
        "run",
        "--config-source",
        "the Kubernetes config source (today: --config FILE)",
    ),
    (
        "ambit-node",
        "run",
        "--ca-token-file",
        "CA authentication by service-account token (today: --identity-dir)",
    ),
    (
        "ambit-controller",
        "serve",
        "--config-source",
        "the Kubernetes config source (today: --config FILE)",
    ),
];

/// Runs `kubectl kustomize` on an overlay.
fn kustomize(overlay: &str) -> String {
    let dir = deploy::manifests_dir().join("overlays").join(overlay);
    output(
        Command::new("kubectl").arg("kustomize").arg(&dir),
        "kubectl is needed: run `cargo xtask setup` (installs Debian's kubernetes-client)",
    )
    .unwrap_or_else(|e| panic!("rendering overlay {overlay}: {e:#}"))
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ambit-deploy-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("writing a temp file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Validates the files against the Kubernetes schemas, rejecting unknown fields.
fn kubernetes_validate(files: &[&Path]) {
    let mut cmd = deploy::python();
    cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .args(["-k", deploy::KUBERNETES_VERSION])
        .args(files);
    if let Err(e) = output(
        &mut cmd,
        "python3 with kubernetes-validate is needed: run `cargo xtask setup`",
    ) {
        panic!("{e:#}");
    }
}

/// Objects by `kind namespace/name`.
fn by_key(stream: &str) -> BTreeMap<String, Value> {
    let objects = objects(stream).expect("valid YAML");
    let mut map = BTreeMap::new();
    for object in objects {
        let key = object_key(&object);
        assert!(map.insert(key.clone(), object).is_none(), "{key} twice");
    }
    map
}

#[test]
fn every_overlay_renders_and_validates_against_kubernetes() {
    let overlays = deploy::overlays().expect("listing the overlays");
    assert!(overlays.contains(&"default".to_string()), "{overlays:?}");
    for overlay in overlays {
        eprintln!(
            "overlay {overlay}: kubectl kustomize, then kubernetes-validate {}",
            deploy::KUBERNETES_VERSION
        );
        let rendered = kustomize(&overlay);
        let objects = by_key(&rendered);
        for kind in [
            "DaemonSet ambit-system/ambit-node",
            "Deployment ambit-system/ambit-controller",
        ] {
            assert!(
                objects.contains_key(kind),
                "overlay {overlay} has no {kind}"
            );
        }
        let file = TempFile::new(&format!("{overlay}.yaml"), &rendered);
        kubernetes_validate(&[&file.0]);
    }
}

#[test]
fn crds_validate_against_kubernetes() {
    let crds = deploy::crd_files().expect("reading deploy/crds");
    assert!(
        crds.contains_key("ambit.dev_trafficpolicies.yaml"),
        "{:?}",
        crds.keys()
    );
    let files: Vec<TempFile> = crds
        .iter()
        .map(|(name, text)| TempFile::new(name, text))
        .collect();
    kubernetes_validate(&files.iter().map(|f| f.0.as_path()).collect::<Vec<_>>());
}

/// Checks objects against a CRD's OpenAPI schema (jsonschema comes with kubernetes-validate):
/// prints one line per object, empty when valid.
const CRD_SCHEMA_PY: &str = r#"
import json, sys
import jsonschema, yaml
crd = yaml.safe_load(open(sys.argv[1]))
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
for doc in yaml.safe_load_all(open(sys.argv[2])):
    errors = sorted(e.message for e in jsonschema.Draft4Validator(schema).iter_errors(doc))
    print(json.dumps("; ".join(errors)))
"#;

/// The API server's verdict on each object, by the TrafficPolicy CRD's schema.
fn traffic_policy_schema_errors(objects: &[&str]) -> Vec<String> {
    let crd = deploy::deploy_dir().join("crds/ambit.dev_trafficpolicies.yaml");
    let stream = TempFile::new("policies.yaml", &objects.join("\n---\n"));
    let mut cmd = deploy::python();
    cmd.args(["-c", CRD_SCHEMA_PY]).arg(&crd).arg(&stream.0);
    let out = output(
        &mut cmd,
        "python3 with kubernetes-validate (and its jsonschema) is needed: run `cargo xtask setup`",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    out.lines()
        .map(|l| serde_json::from_str::<String>(l).expect("one JSON string per object"))
        .collect()
}

#[test]
fn the_crd_schema_takes_the_readme_policy_and_refuses_bad_ones() {
    let readme =
        std::fs::read_to_string(deploy::deploy_dir().join("../README.md")).expect("README.md");
    let start = readme
        .find("kind: TrafficPolicy")
        .expect("the README shows a TrafficPolicy");
    let doc_start = readme[..start].rfind("---\n").expect("after a ---") + 4;
    let doc_end = start + readme[start..].find("```").expect("the block ends");
    let example = &readme[doc_start..doc_end];
    let policy = |spec: &str| {
        format!("apiVersion: ambit.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: p, namespace: shop}}\nspec: {spec}\n")
    };
    let target = r#"targetRefs: [{group: "", kind: Service, name: reviews}]"#;
    let bad = [
        (
            "a fraction in a duration",
            policy(&format!(
                "{{{target}, faultInjection: {{delay: {{percentage: 10, fixedDelay: 0.2s}}}}}}"
            )),
        ),
        (
            "a percentage above 100",
            policy(&format!(
                "{{{target}, faultInjection: {{abort: {{percentage: 150, httpStatus: 503}}}}}}"
            )),
        ),
        (
            "a Pod as target",
            policy(r#"{targetRefs: [{group: "", kind: Pod, name: reviews}]}"#),
        ),
        ("no target", policy("{targetRefs: []}")),
        (
            "zero consecutive failures",
            policy(&format!(
                "{{{target}, outlierDetection: {{consecutiveFailures: 0}}}}"
            )),
        ),
    ];
    let mut objects = vec![example];
    objects.extend(bad.iter().map(|(_, o)| o.as_str()));
    let verdicts = traffic_policy_schema_errors(&objects);
    assert_eq!(verdicts.len(), objects.len(), "{verdicts:?}");
    assert_eq!(
        verdicts[0], "",
        "the README's TrafficPolicy is invalid:\n{example}"
    );
    for ((why, object), verdict) in bad.iter().zip(&verdicts[1..]) {
        assert!(
            !verdict.is_empty(),
            "the CRD schema accepts {why}:\n{object}"
        );
    }
}

#[test]
fn waypoint_template_validates_once_filled_in() {
    let rendered = kustomize("default");
    let objects = by_key(&rendered);
    let template = &objects["ConfigMap ambit-system/ambit-waypoint-template"];
    let data = template["data"].as_object().expect("the template has data");
    let mut kinds = BTreeSet::new();
    let mut files = Vec::new();
    for (name, text) in data {
        let filled = text
            .as_str()
            .expect("text")
            .replace("${GATEWAY_NAME}", "waypoint")
            .replace("${GATEWAY_NAMESPACE}", "shop");
        assert!(
            !filled.contains("${"),
            "{name}: a placeholder nothing fills:\n{filled}"
        );
        for object in deploy::objects(&filled).expect("valid YAML") {
            kinds.insert(object_key(&object));
        }
        files.push(TempFile::new(&format!("waypoint-{name}"), &filled));
    }
    assert_eq!(
        kinds,
        BTreeSet::from([
            "Deployment shop/waypoint".to_string(),
            "Service shop/waypoint".to_string(),
            "ServiceAccount shop/waypoint".to_string(),
        ])
    );
    kubernetes_validate(&files.iter().map(|f| f.0.as_path()).collect::<Vec<_>>());
}

#[test]
fn chart_passes_helm_lint_strict_with_every_overlays_values() {
    for overlay in deploy::overlays().expect("listing the overlays") {
        let values = deploy::manifests_dir().join(format!("values/{overlay}.yaml"));
        eprintln!("helm lint --strict with {}", values.display());
        let findings = deploy::lint_chart(&values).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            findings.is_empty(),
            "helm lint with {}:\n  {}",
            values.display(),
            findings.join("\n  ")
        );
    }
}

#[test]
fn a_misspelt_value_is_refused_by_the_chart() {
    let values = TempFile::new("typo-values.yaml", "nodeAgent:\n  privilged: true\n");
    let e = deploy::render_chart(&values.0).expect_err("values.schema.json refuses unknown keys");
    assert!(
        format!("{e:#}").contains("'privilged' not allowed"),
        "{e:#}"
    );
}

#[test]
fn plain_manifests_are_the_chart_rendered() {
    let expected = deploy::base_files().unwrap_or_else(|e| panic!("rendering the chart: {e:#}"));
    let base = deploy::manifests_dir().join("base");
    let mut stale = Vec::new();
    for (name, text) in &expected {
        match std::fs::read_to_string(base.join(name)) {
            Ok(committed) if committed == *text => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(e) => stale.push(format!("{name}: {e}")),
        }
    }
    for entry in std::fs::read_dir(&base).expect("deploy/manifests/base") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !expected.contains_key(&name) {
            stale.push(format!("{name} is not rendered from the chart"));
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/manifests/base is not what the chart renders; run `cargo xtask gen-manifests`:\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn each_overlay_equals_the_chart_with_its_values() {
    let values_dir = deploy::manifests_dir().join("values");
    for overlay in deploy::overlays().expect("listing the overlays") {
        let values = values_dir.join(format!("{overlay}.yaml"));
        assert!(
            values.exists(),
            "overlay {overlay} has no {}: write the chart values it stands for",
            values.display()
        );
        eprintln!(
            "overlay {overlay} against the chart rendered with {}",
            values.display()
        );
        let mut chart = String::new();
        for text in deploy::render_chart(&values)
            .expect("rendering the chart")
            .values()
        {
            chart.push_str(text);
            chart.push_str("\n---\n");
        }
        for text in deploy::crd_files().expect("CRDs").values() {
            chart.push_str(text);
            chart.push_str("\n---\n");
        }
        let from_chart = by_key(&chart);
        let from_overlay = by_key(&kustomize(&overlay));
        assert_eq!(
            from_chart.keys().collect::<Vec<_>>(),
            from_overlay.keys().collect::<Vec<_>>(),
            "overlay {overlay} and the chart render different objects"
        );
        for (key, object) in &from_chart {
            let mut diffs = Vec::new();
            differences(object, &from_overlay[key], String::new(), &mut diffs);
            assert!(
                diffs.is_empty(),
                "overlay {overlay}: {key} differs from the chart with {}:\n  {}",
                values.display(),
                diffs.join("\n  ")
            );
        }
    }
}

/// Where `chart` and `overlay` differ, as `path: chart value != overlay value`.
fn differences(chart: &Value, overlay: &Value, path: String, out: &mut Vec<String>) {
    match (chart, overlay) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                differences(x, y, format!("{path}.{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: chart {a} != overlay {b}")),
        _ => {}
    }
}

/// (service account, API group, resource, verb) granted by the RBAC objects in `objects`.
fn grants(objects: &BTreeMap<String, Value>) -> BTreeSet<(String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut granted = BTreeSet::new();
    for binding in objects.values() {
        let kind = text(&binding["kind"]);
        if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
            continue;
        }
        let role_key = format!(
            "{} {}/{}",
            text(&binding["roleRef"]["kind"]),
            if text(&binding["roleRef"]["kind"]) == "Role" {
                text(&binding["metadata"]["namespace"])
            } else {
                String::new()
            },
            text(&binding["roleRef"]["name"])
        );
        let role = objects.get(&role_key).unwrap_or_else(|| {
            panic!(
                "{} binds {role_key}, which is not installed",
                object_key(binding)
            )
        });
        for subject in list(&binding["subjects"]) {
            assert_eq!(
                text(&subject["kind"]),
                "ServiceAccount",
                "{}: only service accounts are bound",
                object_key(binding)
            );
            for rule in list(&role["rules"]) {
                assert!(
                    rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                    "{role_key}: extend this test for {rule}"
                );
                for group in list(&rule["apiGroups"]) {
                    for resource in list(&rule["resources"]) {
                        for verb in list(&rule["verbs"]) {
                            granted.insert((
                                text(&subject["name"]),
                                text(&group),
                                text(&resource),
                                text(&verb),
                            ));
                        }
                    }
                }
            }
        }
    }
    granted
}

#[test]
fn every_rbac_grant_has_a_reason() {
    for overlay in deploy::overlays().expect("listing the overlays") {
        let granted = grants(&by_key(&kustomize(&overlay)));
        let explained: BTreeSet<_> = GRANTS
            .iter()
            .map(|(sa, group, resource, verb, _)| {
                (
                    sa.to_string(),
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                )
            })
            .collect();
        let unexplained: Vec<_> = granted.difference(&explained).collect();
        assert!(
            unexplained.is_empty(),
            "overlay {overlay} grants (service account, group, resource, verb) with no reason in GRANTS; add one or drop the grant: {unexplained:#?}"
        );
        let unused: Vec<_> = explained.difference(&granted).collect();
        assert!(
            unused.is_empty(),
            "overlay {overlay}: GRANTS explains what nothing grants: {unused:#?}"
        );
    }
}

/// `<binary> <subcommand> --help`.
fn help(binary: &str, subcommand: &str) -> String {
    let path = ambit_e2e::binary(binary).unwrap_or_else(|e| panic!("{e:#}"));
    output(
        Command::new(&path).args([subcommand, "--help"]),
        "the binary is needed",
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn manifests_use_only_flags_the_binaries_have() {
    let objects = by_key(&kustomize("default"));
    let mut checked = 0;
    for object in objects.values() {
        let containers = object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for container in containers {
            let image = container["image"].as_str().unwrap_or_default();
            let binary = image
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            let args: Vec<&str> = container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some((subcommand, flags)) = args.split_first() else {
                continue;
            };
            eprintln!("{binary} {subcommand}: {} flags", flags.len());
            let help = help(binary, subcommand);
            for flag in flags {
                let name = flag.split('=').next().unwrap_or_default();
                let pending = PENDING_FLAGS
                    .iter()
                    .any(|(b, s, f, _)| (*b, *s, *f) == (binary, *subcommand, name));
                let has = help
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w == name);
                assert!(
                    !(has && pending),
                    "{binary} {subcommand} has {name} now: remove it from PENDING_FLAGS"
                );
                assert!(
                    has || pending,
                    "{} passes {name}, which `{binary} {subcommand}` does not have:\n{help}",
                    object_key(object)
                );
                checked += 1;
            }
            for env in container["env"].as_array().into_iter().flatten() {
                let name = env["name"].as_str().unwrap_or_default();
                if name.starts_with("AMBIT_") {
                    assert!(
                        help.contains(&format!("[env: {name}")),
                        "{binary} {subcommand} does not read {name}:\n{help}"
                    );
                }
            }
        }
    }
    assert!(checked > 0, "no flags found in the manifests");
    eprintln!(
        "the preStop hook runs `ambit-node unload`, which must find the node in the environment"
    );
    assert!(help("ambit-node", "unload").contains("[env: AMBIT_NODE_NAME"));
}

#[test]
fn node_agent_runs_on_every_node_with_capabilities_not_privileged() {
    let objects = by_key(&kustomize("default"));
    let ds = &objects["DaemonSet ambit-system/ambit-node"];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["hostPID"], true,
        "pods' netns are found through /proc/<pid>"
    );
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let agent = &pod["containers"][0];
    assert!(
        agent["securityContext"].get("privileged").is_none(),
        "{}",
        agent["securityContext"]
    );
    let caps: BTreeSet<&str> = agent["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // What `ambit-node preflight` checks for, at least.
    for cap in ["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"] {
        assert!(caps.contains(cap), "missing CAP_{cap}: {caps:?}");
    }
    assert_eq!(
        agent["readinessProbe"]["httpGet"],
        serde_json::json!({"path": "/healthz/ready", "port": 15021})
    );
    assert_eq!(
        agent["lifecycle"]["preStop"]["exec"]["command"],
        serde_json::json!(["/usr/local/bin/ambit-node", "unload"])
    );
    let node_name = agent["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "AMBIT_NODE_NAME")
        .expect("AMBIT_NODE_NAME, read by run and unload");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let mounts: BTreeMap<&str, &Value> = agent["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap_or_default(), m))
        .collect();
    for path in ["/sys/fs/bpf", "/sys/fs/cgroup", "/run/netns"] {
        assert!(
            mounts.contains_key(path),
            "no mount at {path}: {:?}",
            mounts.keys()
        );
    }
}
