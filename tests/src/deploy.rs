//! The install under `deploy/`: the Helm chart rendered with Helm's own engine, and the plain
//! manifests derived from it. Shared by `cargo xtask gen-manifests` and `tests/tests/deploy.rs`.
//!
//! The chart (`deploy/helm/ambit`) is the one source. `deploy/manifests/base` is the chart
//! rendered with `deploy/manifests/values/default.yaml`, plus the CRDs; each overlay
//! `deploy/manifests/overlays/<name>` is a small kustomize patch over the base that must equal
//! the chart rendered with `values/<name>.yaml`. Rendering uses helm-python-sdk (Helm's Go
//! engine as a library, from PyPI), because no `helm` binary can be installed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Release name and namespace the plain manifests are rendered for.
pub const RELEASE: &str = "ambit";
pub const NAMESPACE: &str = "ambit-system";
/// Python packages `cargo xtask setup` installs with pip, pinned.
pub const HELM_SDK: (&str, &str) = ("helm-python-sdk", "0.2.2");
pub const KUBERNETES_VALIDATE: (&str, &str) = ("kubernetes-validate", "1.37.0");
/// The Kubernetes version the manifests are validated against.
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// First line of every generated manifest.
pub const GENERATED_HEADER: &str =
    "# Generated from deploy/helm/ambit by `cargo xtask gen-manifests`; do not edit.\n";

/// Renders the chart: prints {template path: text} as JSON.
const RENDER_PY: &str = r#"
import json, sys
try:
    import helm_python
except ImportError:
    sys.exit("helm-python-sdk is not installed: run `cargo xtask setup`")
chart = helm_python.Chart.load(sys.argv[1])
values = helm_python.values_from_yaml(open(sys.argv[2]).read())
print(json.dumps(chart.render(values, name=sys.argv[3], namespace=sys.argv[4])))
"#;

/// Lints the chart as `helm lint --strict` does: prints the report as JSON.
const LINT_PY: &str = r#"
import json, sys
try:
    import helm_python
except ImportError:
    sys.exit("helm-python-sdk is not installed: run `cargo xtask setup`")
values = helm_python.values_from_yaml(open(sys.argv[2]).read())
print(json.dumps(helm_python.lint(sys.argv[1], values, strict=True, namespace=sys.argv[3],
                                  kube_version="v" + sys.argv[4])))
"#;

/// `<workspace>/deploy`.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|w| w.join("deploy"))
        .unwrap_or_else(|| PathBuf::from("deploy"))
}

pub fn chart_dir() -> PathBuf {
    deploy_dir().join("helm/ambit")
}

pub fn manifests_dir() -> PathBuf {
    deploy_dir().join("manifests")
}

/// The Python that has the pip packages (`AMBIT_PYTHON`, default `python3`).
pub fn python() -> Command {
    Command::new(std::env::var_os("AMBIT_PYTHON").unwrap_or_else(|| "python3".into()))
}

/// Runs `cmd` and returns its stdout; `missing` names the setup step, for when the program or
/// a Python module is not installed.
pub fn output(cmd: &mut Command, missing: &str) -> Result<String> {
    // Long arguments (the inline Python) would drown the message.
    let described = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.len() > 80 {
                "…".to_string()
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{missing} (starting `{described}`)"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("No module named") {
            bail!("{missing}: `{described}` says: {}", stderr.trim());
        }
        bail!(
            "`{described}` failed ({}):\n{}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{described}` printed non-UTF-8"))
}

/// The chart rendered with `values`: file name (`node-agent.yaml`) → YAML, empty files left out.
pub fn render_chart(values: &Path) -> Result<BTreeMap<String, String>> {
    let json = output(
        python()
            .arg("-c")
            .arg(RENDER_PY)
            .arg(chart_dir())
            .arg(values)
            .args([RELEASE, NAMESPACE]),
        "python3 with helm-python-sdk is needed: run `cargo xtask setup`",
    )?;
    let rendered: BTreeMap<String, String> =
        serde_json::from_str(&json).context("reading the rendered chart")?;
    let mut files = BTreeMap::new();
    for (template, text) in rendered {
        let Some(name) = template.rsplit('/').next() else {
            continue;
        };
        // Only YAML manifests, and only those that render to at least one object.
        let has_object = text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#') && l.trim() != "---");
        if name.ends_with(".yaml") && has_object {
            files.insert(name.to_string(), text);
        }
    }
    Ok(files)
}

/// `helm lint --strict` findings for the chart with `values`, as `path: message`, warnings
/// and errors only (severity 2 and 3; "icon is recommended" is information).
pub fn lint_chart(values: &Path) -> Result<Vec<String>> {
    let json = output(
        python()
            .arg("-c")
            .arg(LINT_PY)
            .arg(chart_dir())
            .arg(values)
            .args([NAMESPACE, KUBERNETES_VERSION]),
        "python3 with helm-python-sdk is needed: run `cargo xtask setup`",
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&json).context("reading the lint report")?;
    let mut findings: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    for message in report["messages"].as_array().into_iter().flatten() {
        if message["severity"].as_u64().unwrap_or(3) >= 2 {
            findings.push(format!("{}: {}", message["path"], message["error"]));
        }
    }
    Ok(findings)
}

/// The CRD files (`deploy/crds/*.yaml`): name → text.
pub fn crd_files() -> Result<BTreeMap<String, String>> {
    let dir = deploy_dir().join("crds");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.insert(name, text);
        }
    }
    Ok(files)
}

/// What `deploy/manifests/base` must hold: name → text (the kustomization included).
pub fn base_files() -> Result<BTreeMap<String, String>> {
    let values = manifests_dir().join("values/default.yaml");
    let mut files: BTreeMap<String, String> = render_chart(&values)?
        .into_iter()
        .map(|(name, text)| {
            let text = format!(
                "{GENERATED_HEADER}{}\n",
                text.trim_start_matches('\n').trim_end()
            );
            (name, text)
        })
        .collect();
    for (name, text) in crd_files()? {
        files.insert(name, text);
    }
    // kubectl 1.20's kustomize (v2.0.3) reads only files at or below the kustomization.
    let mut kustomization = String::from(GENERATED_HEADER);
    kustomization
        .push_str("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n");
    for name in files.keys() {
        kustomization.push_str(&format!("  - {name}\n"));
    }
    files.insert("kustomization.yaml".into(), kustomization);
    Ok(files)
}

/// The overlays: `deploy/manifests/overlays/<name>`, each with `values/<name>.yaml`.
pub fn overlays() -> Result<Vec<String>> {
    let dir = manifests_dir().join("overlays");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Splits a YAML stream into its objects (empty documents left out).
pub fn objects(stream: &str) -> Result<Vec<serde_json::Value>> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(stream) {
        let value = serde_json::Value::deserialize(doc).context("parsing a YAML document")?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// `kind namespace/name` of an object, for messages and for matching objects up.
pub fn object_key(object: &serde_json::Value) -> String {
    let field = |path: &str| {
        object
            .pointer(path)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    format!(
        "{} {}/{}",
        field("/kind"),
        field("/metadata/namespace"),
        field("/metadata/name")
    )
}
