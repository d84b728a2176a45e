//! The TrafficPolicy CRD's schema, as the API server applies it.

use ambit_e2e::deploy::{self, output};

use crate::TempFile;

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
