//! The install (deploy/): every overlay renders and validates against Kubernetes' schemas, the
//! plain manifests are the Helm chart rendered, and every RBAC grant has a reason.
//!
//! Topics: this file (rendering, validation, chart = manifests), `deploy/rbac.rs` (grants and
//! their reasons), `deploy/binaries.rs` (flags the manifests pass; the node agent's pod),
//! `deploy/crd.rs` (the TrafficPolicy schema as the API server applies it).
//!
//! Needs no root, but needs `kubectl`, and Python with helm-python-sdk and kubernetes-validate:
//! `cargo xtask setup` installs them. A missing tool fails the test, naming that step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ambit_e2e::deploy::{self, object_key, objects, output};
use serde_json::Value;

#[path = "deploy/binaries.rs"]
mod binaries;
#[path = "deploy/crd.rs"]
mod crd;
#[path = "deploy/rbac.rs"]
mod rbac;

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

/// The waypoint template of `objects` filled in for Gateway `shop/waypoint`: `(file name,
/// text)` per template file.
fn waypoint_template(objects: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    let template = &objects["ConfigMap ambit-system/ambit-waypoint-template"];
    let data = template["data"].as_object().expect("the template has data");
    data.iter()
        .map(|(name, text)| {
            let filled = text
                .as_str()
                .expect("text")
                .replace("${GATEWAY_NAME}", "waypoint")
                .replace("${GATEWAY_NAMESPACE}", "shop");
            assert!(
                !filled.contains("${"),
                "{name}: a placeholder nothing fills:\n{filled}"
            );
            (name.clone(), filled)
        })
        .collect()
}

/// The rendered objects of an overlay and those of its waypoint template for `shop/waypoint`,
/// by key.
fn with_waypoint(overlay: &str) -> BTreeMap<String, Value> {
    let mut objects = by_key(&kustomize(overlay));
    for (_, text) in waypoint_template(&objects.clone()) {
        for object in deploy::objects(&text).expect("valid YAML") {
            let key = object_key(&object);
            assert!(objects.insert(key.clone(), object).is_none(), "{key} twice");
        }
    }
    objects
}

#[test]
fn waypoint_template_validates_once_filled_in() {
    let objects = by_key(&kustomize("default"));
    let mut kinds = BTreeSet::new();
    let mut files = Vec::new();
    for (name, filled) in waypoint_template(&objects) {
        for object in deploy::objects(&filled).expect("valid YAML") {
            kinds.insert(object_key(&object));
        }
        files.push(TempFile::new(&format!("waypoint-{name}"), &filled));
    }
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRoleBinding /ambit-waypoint-shop-waypoint".to_string(),
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
