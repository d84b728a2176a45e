//! The waypoint template filled in for one Gateway.

use gateway_api::gateways::Gateway;
use serde_json::{json, Value};

use crate::deployer::render::{
    root_cert, Desired, Template, BUILTIN_TEMPLATE, DEFAULT_IMAGE, GATEWAY_NAMESPACE, MANAGED_BY,
};

/// The Gateway `namespace/name` with one HBONE listener, as the API server returns it.
pub fn gateway(namespace: &str, name: &str) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{namespace}-{name}"),
            "generation": 2,
        },
        "spec": {
            "gatewayClassName": "ambit-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }))
    .expect("a Gateway")
}

fn rendered(image: &str) -> Vec<Desired> {
    Template::builtin()
        .expect("the built-in template parses")
        .render(&gateway("shop", "waypoint"), image)
        .expect("the built-in template renders")
}

fn find<'a>(objects: &'a [Desired], kind: &str) -> &'a Value {
    &objects
        .iter()
        .find(|d| d.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .object
}

#[test]
fn the_built_in_template_makes_the_four_objects_of_a_waypoint() {
    let objects = rendered("registry.example/ambit-waypoint:test");
    let keys: Vec<_> = objects
        .iter()
        .map(|d| {
            format!(
                "{} {}/{}",
                d.kind(),
                d.namespace.as_deref().unwrap_or_default(),
                d.name
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "ServiceAccount shop/waypoint",
            "ClusterRoleBinding /ambit-waypoint-shop-waypoint",
            "Service shop/waypoint",
            "Deployment shop/waypoint",
        ],
        "the Deployment last"
    );
    let text =
        serde_json::to_string(&objects.iter().map(|d| &d.object).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("${"), "a placeholder is left: {text}");
}

#[test]
fn namespaced_objects_are_controlled_by_the_gateway() {
    let objects = rendered(DEFAULT_IMAGE);
    for desired in objects.iter().filter(|d| d.namespace.is_some()) {
        assert_eq!(
            desired.object["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "name": "waypoint",
                "uid": "uid-shop-waypoint",
                "controller": true,
            }]),
            "{} {}",
            desired.kind(),
            desired.name
        );
        assert_eq!(
            desired.object["metadata"]["labels"][MANAGED_BY],
            "ambit-controller"
        );
    }
}

#[test]
fn the_cluster_role_binding_names_its_gateway_in_labels_and_has_no_owner() {
    let objects = rendered(DEFAULT_IMAGE);
    let binding = find(&objects, "ClusterRoleBinding");
    let labels = &binding["metadata"]["labels"];
    assert_eq!(labels["gateway.networking.k8s.io/gateway-name"], "waypoint");
    assert_eq!(labels[GATEWAY_NAMESPACE], "shop");
    assert_eq!(labels[MANAGED_BY], "ambit-controller");
    assert!(
        binding["metadata"]["ownerReferences"].is_null(),
        "{binding}"
    );
    assert_eq!(binding["roleRef"]["name"], "ambit-waypoint");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "waypoint", "namespace": "shop"}])
    );
}

#[test]
fn the_deployment_runs_the_given_image_for_its_gateway() {
    let objects = rendered("registry.example/ambit-waypoint:test");
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "ambit-waypoint");
    assert_eq!(container["image"], "registry.example/ambit-waypoint:test");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--name=waypoint"), "{args:?}");
    assert!(args.contains(&"--namespace=shop"), "{args:?}");
}

#[test]
fn the_default_image_is_the_one_the_template_ships() {
    let configmap: k8s_openapi::api::core::v1::ConfigMap =
        serde_yaml::from_str(BUILTIN_TEMPLATE).unwrap();
    let deployment = &configmap.data.unwrap()["deployment.yaml"];
    assert!(
        deployment.contains(&format!("image: {DEFAULT_IMAGE}\n")),
        "--waypoint-image's default ({DEFAULT_IMAGE}) is not the chart's image:\n{deployment}"
    );
}

#[test]
fn the_root_cert_is_shared_by_the_waypoints_of_a_namespace() {
    let a = gateway("shop", "a");
    let b = gateway("shop", "b");
    let desired = root_cert("shop", &[&b, &a], "-----BEGIN CERTIFICATE-----\n").unwrap();
    assert_eq!(
        (
            desired.kind(),
            desired.namespace.as_deref(),
            desired.name.as_str()
        ),
        ("ConfigMap", Some("shop"), "ambit-root-cert")
    );
    assert_eq!(
        desired.object["data"],
        json!({"root.pem": "-----BEGIN CERTIFICATE-----\n"})
    );
    let owners: Vec<_> = desired.object["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o.get("controller").is_some()))
        .collect();
    assert_eq!(
        owners,
        [("a", false), ("b", false)],
        "owned by each, controlled by none"
    );
}

fn template(files: &[(&str, &str)]) -> Template {
    let data: serde_json::Map<String, Value> = files
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let yaml = serde_yaml::to_string(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ambit-waypoint-template"},
        "data": data,
    }))
    .unwrap();
    Template::from_configmap(&yaml).unwrap()
}

#[test]
fn a_placeholder_nothing_fills_is_refused() {
    let t = template(&[(
        "sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ${GATEWAY_NAME}, namespace: ${NS}}\n",
    )]);
    let e = t
        .render(&gateway("shop", "waypoint"), DEFAULT_IMAGE)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "waypoint template sa.yaml: a placeholder is left unfilled (${NS)"
    );
}

#[test]
fn a_kind_the_deployer_does_not_apply_is_refused() {
    let t = template(&[(
        "pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x, namespace: ${GATEWAY_NAMESPACE}}\n",
    )]);
    let e = t
        .render(&gateway("shop", "waypoint"), DEFAULT_IMAGE)
        .unwrap_err();
    assert!(
        e.to_string().contains("does not apply PodDisruptionBudget"),
        "{e}"
    );
}

#[test]
fn an_object_outside_the_gateways_namespace_is_refused() {
    let t = template(&[(
        "sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x, namespace: kube-system}\n",
    )]);
    let e = t
        .render(&gateway("shop", "waypoint"), DEFAULT_IMAGE)
        .unwrap_err();
    assert!(e.to_string().contains("not the Gateway's"), "{e}");
}

#[test]
fn a_gateway_without_uid_cannot_own_anything() {
    let mut g = gateway("shop", "waypoint");
    g.metadata.uid = None;
    let e = Template::builtin()
        .unwrap()
        .render(&g, DEFAULT_IMAGE)
        .unwrap_err();
    assert!(e.to_string().contains("shop/waypoint"), "{e}");
}

#[test]
fn a_configmap_volume_gives_the_same_template() {
    let dir = std::env::temp_dir().join(format!("ambit-waypoint-template-{}", std::process::id()));
    let data = dir.join("..2026_12_03_00_00_00.000000000");
    std::fs::create_dir_all(&data).unwrap();
    let configmap: k8s_openapi::api::core::v1::ConfigMap =
        serde_yaml::from_str(BUILTIN_TEMPLATE).unwrap();
    for (name, text) in configmap.data.unwrap() {
        std::fs::write(data.join(&name), text).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(&name)).unwrap();
    }
    std::os::unix::fs::symlink(data.file_name().unwrap(), dir.join("..data")).unwrap();
    let from_dir = Template::from_dir(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let g = gateway("shop", "waypoint");
    assert_eq!(
        from_dir.unwrap().render(&g, DEFAULT_IMAGE).unwrap(),
        Template::builtin()
            .unwrap()
            .render(&g, DEFAULT_IMAGE)
            .unwrap()
    );
}
