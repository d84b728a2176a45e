//! The deployer against an in-process API server (a `kube::Client` over `tower::service_fn`):
//! the requests it sends, and what it makes of the answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_api::gateways::Gateway;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{json, Value};

use super::render::gateway;
use crate::deployer::render::{Template, GATEWAY_NAMESPACE};
use crate::deployer::{error_policy, reconcile, status, sweep, Context, Settings};

const ROOT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const IMAGE: &str = "registry.example/ambit-waypoint:test";

/// One request the API server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// What the stand-in API server holds and answers.
#[derive(Default)]
struct Cluster {
    seen: Vec<Seen>,
    /// The Deployment's `status.readyReplicas` in apply answers.
    ready_replicas: i64,
    /// Namespaces where every apply fails with 500.
    broken_namespaces: Vec<String>,
    /// ClusterRoleBindings a labelled list returns.
    bindings: Vec<Value>,
    /// The GatewayClass `ambit-waypoint`, if any.
    class: Option<Value>,
    /// Objects a GET of their path returns (a DELETE removes them).
    objects: BTreeMap<String, Value>,
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

fn failure(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

async fn answer(
    cluster: Arc<Mutex<Cluster>>,
    req: Request<kube::client::Body>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        // Apply bodies are sent as JSON (a YAML subset).
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let mut cluster = cluster.lock().unwrap();
    cluster.seen.push(seen.clone());
    let path = seen.path.as_str();
    match seen.method.as_str() {
        "PATCH" if path.ends_with("/status") => {
            // The merge patch on top of the object the test keeps (enough for kube to parse).
            let mut object = if path.contains("/gatewayclasses/") {
                cluster.class.clone().unwrap_or(Value::Null)
            } else {
                serde_json::to_value(gateway("shop", "waypoint")).unwrap()
            };
            object["status"] = seen.body["status"].clone();
            json_response(StatusCode::OK, &object)
        }
        "PATCH" => {
            if cluster
                .broken_namespaces
                .iter()
                .any(|ns| path.contains(&format!("/namespaces/{ns}/")))
            {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &failure(500, "InternalError"),
                );
            }
            let mut object = seen.body.clone();
            if path.contains("/deployments/") {
                object["status"] = json!({"readyReplicas": cluster.ready_replicas});
            }
            if path.contains("/services/") {
                object["spec"]["clusterIP"] = json!("10.96.7.7");
            }
            json_response(StatusCode::OK, &object)
        }
        "GET" if path == "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" => json_response(
            StatusCode::OK,
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBindingList", "metadata": {}, "items": cluster.bindings}),
        ),
        "DELETE" => {
            cluster.objects.remove(path);
            json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            )
        }
        "GET" if cluster.objects.contains_key(path) => {
            json_response(StatusCode::OK, &cluster.objects[path])
        }
        "GET" if path == "/apis/gateway.networking.k8s.io/v1/gatewayclasses/ambit-waypoint" => {
            match &cluster.class {
                Some(class) => json_response(StatusCode::OK, class),
                None => json_response(StatusCode::NOT_FOUND, &failure(404, "NotFound")),
            }
        }
        _ => json_response(StatusCode::NOT_FOUND, &failure(404, "NotFound")),
    }
}

/// A deployer context whose client talks to `cluster`, with `gateways` in its store.
fn context(cluster: &Arc<Mutex<Cluster>>, gateways: &[&Gateway]) -> Arc<Context> {
    let cluster = cluster.clone();
    let service = tower::service_fn(move |req| {
        let cluster = cluster.clone();
        async move { Ok::<_, Infallible>(answer(cluster, req).await) }
    });
    let client = kube::Client::new(service, "default");
    let (store, mut writer) = reflector::store::<Gateway>();
    for g in gateways {
        writer.apply_watcher_event(&watcher::Event::Apply((*g).clone()));
    }
    let settings = Settings {
        template: Template::builtin().unwrap(),
        image: IMAGE.to_owned(),
        root_pem: ROOT.to_owned(),
    };
    Arc::new(Context::new(client, settings, store))
}

fn seen(cluster: &Arc<Mutex<Cluster>>) -> Vec<Seen> {
    cluster.lock().unwrap().seen.clone()
}

fn applies(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.method == "PATCH" && !s.path.ends_with("/status"))
        .collect()
}

fn by_path<'a>(seen: &'a [Seen], path: &str) -> &'a Seen {
    seen.iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("no request to {path}: {seen:#?}"))
}

#[tokio::test]
async fn a_waypoint_gateway_gets_its_objects_applied_and_its_status_written() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let neighbour = gateway("shop", "other");
    let g = gateway("shop", "waypoint");
    let ctx = context(&cluster, &[&g, &neighbour]);
    let action = reconcile(Arc::new(g), ctx).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

    let seen = seen(&cluster);
    let paths: Vec<_> = applies(&seen).iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/shop/serviceaccounts/waypoint",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ambit-waypoint-shop-waypoint",
            "/api/v1/namespaces/shop/configmaps/ambit-root-cert",
            "/api/v1/namespaces/shop/services/waypoint",
            "/apis/apps/v1/namespaces/shop/deployments/waypoint",
        ],
        "the Deployment last"
    );
    for apply in applies(&seen) {
        assert_eq!(
            apply.content_type, "application/apply-patch+yaml",
            "{}",
            apply.path
        );
        let mut query: Vec<_> = apply.query.split('&').filter(|p| !p.is_empty()).collect();
        query.sort();
        assert_eq!(
            query,
            ["fieldManager=ambit-controller", "force=true"],
            "{}",
            apply.path
        );
    }

    let deployment = &by_path(&seen, "/apis/apps/v1/namespaces/shop/deployments/waypoint").body;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        IMAGE
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["uid"],
        "uid-shop-waypoint"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    let binding = &by_path(
        &seen,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ambit-waypoint-shop-waypoint",
    )
    .body;
    assert_eq!(binding["metadata"]["labels"][GATEWAY_NAMESPACE], "shop");
    assert!(binding["metadata"]["ownerReferences"].is_null());
    let root = &by_path(&seen, "/api/v1/namespaces/shop/configmaps/ambit-root-cert").body;
    assert_eq!(root["data"]["root.pem"], ROOT);
    let owners: Vec<_> = root["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        owners,
        ["other", "waypoint"],
        "every waypoint of the namespace"
    );

    let status = by_path(
        &seen,
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint/status",
    );
    assert_eq!(status.content_type, "application/merge-patch+json");
    let written = &status.body["status"];
    let conditions: Vec<_> = written["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
                c["observedGeneration"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("Accepted", "True", "Accepted", Some(2)),
            ("Programmed", "False", "Pending", Some(2))
        ]
    );
    assert_eq!(
        written["addresses"],
        json!([{"type": "IPAddress", "value": "10.96.7.7"}])
    );
}

#[tokio::test]
async fn a_status_that_already_says_it_all_is_not_written_again() {
    let cluster = Arc::new(Mutex::new(Cluster {
        ready_replicas: 1,
        ..Cluster::default()
    }));
    let mut g = gateway("shop", "waypoint");
    let observed = status::Observed {
        ready_replicas: 1,
        cluster_ip: Some("10.96.7.7".into()),
    };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    );
    g.status = Some(status::gateway_status(&g, None, Some(&observed), &now));
    let ctx = context(&cluster, &[&g]);
    reconcile(Arc::new(g), ctx).await.expect("reconciled");
    let seen = seen(&cluster);
    assert_eq!(applies(&seen).len(), 5, "objects are applied every time");
    assert!(
        !seen.iter().any(|s| s.path.ends_with("/status")),
        "unchanged status written: {seen:#?}"
    );
}

#[tokio::test]
async fn a_gateway_that_is_not_a_waypoint_is_not_deployed_and_is_told_why() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let mut g = gateway("shop", "waypoint");
    g.spec.listeners[0].protocol = "HTTP".into();
    let ctx = context(&cluster, &[&g]);
    reconcile(Arc::new(g), ctx).await.expect("reconciled");
    let seen = seen(&cluster);
    assert!(applies(&seen).is_empty(), "{seen:#?}");
    let status = by_path(
        &seen,
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint/status",
    );
    let accepted = &status.body["status"]["conditions"][0];
    assert_eq!(
        (accepted["status"].as_str(), accepted["reason"].as_str()),
        (Some("False"), Some("ListenersNotValid"))
    );
    assert!(accepted["message"]
        .as_str()
        .unwrap()
        .contains("listener mesh is port 15008 protocol HTTP"));
}

#[tokio::test]
async fn gateways_of_other_classes_are_left_alone() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let mut g = gateway("shop", "edge");
    g.spec.gateway_class_name = "istio".into();
    let ctx = context(&cluster, &[&g]);
    assert_eq!(
        reconcile(Arc::new(g), ctx).await.unwrap(),
        Action::await_change()
    );
    let seen = seen(&cluster);
    let asked: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        asked,
        [("GET", "/apis/apps/v1/namespaces/shop/deployments/edge")],
        "one look for a waypoint of ours, nothing written"
    );
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/waypoint";
const SERVICE: &str = "/api/v1/namespaces/shop/services/waypoint";
const ACCOUNT: &str = "/api/v1/namespaces/shop/serviceaccounts/waypoint";
const BINDING: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ambit-waypoint-shop-waypoint";
const ROOT_CERT: &str = "/api/v1/namespaces/shop/configmaps/ambit-root-cert";

/// A live object at `path`, labelled as `manager`'s, owned by the Gateways of `owner_uids`.
fn live(path: &str, manager: &str, owner_uids: &[&str], labels: Value) -> (String, Value) {
    let name = path.rsplit('/').next().unwrap();
    let mut all = json!({"app.kubernetes.io/managed-by": manager});
    for (k, v) in labels.as_object().unwrap() {
        all[k] = v.clone();
    }
    let owners: Vec<Value> = owner_uids
        .iter()
        .map(|uid| json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "waypoint", "uid": uid}))
        .collect();
    let object = json!({
        "apiVersion": "v1", "kind": "Object",
        "metadata": {"name": name, "labels": all, "ownerReferences": owners},
    });
    (path.to_owned(), object)
}

fn deleted(seen: &[Seen]) -> Vec<&str> {
    seen.iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect()
}

#[tokio::test]
async fn a_gateway_that_leaves_the_class_loses_its_waypoint_but_not_others_objects() {
    let uid = "uid-shop-waypoint";
    let binding_labels =
        json!({GATEWAY_NAMESPACE: "shop", "gateway.networking.k8s.io/gateway-name": "waypoint"});
    let cluster = Arc::new(Mutex::new(Cluster {
        objects: BTreeMap::from([
            live(DEPLOYMENT, "ambit-controller", &[uid], json!({})),
            live(ACCOUNT, "ambit-controller", &[uid], json!({})),
            // The new class's controller made a Service of the same name, for the same Gateway.
            live(SERVICE, "istio", &[uid], json!({})),
            live(BINDING, "ambit-controller", &[], binding_labels),
            live(ROOT_CERT, "ambit-controller", &[uid], json!({})),
        ]),
        ..Cluster::default()
    }));
    let mut g = gateway("shop", "waypoint");
    g.spec.gateway_class_name = "istio".into();
    let ctx = context(&cluster, &[&g]);
    reconcile(Arc::new(g), ctx).await.expect("retired");
    let seen = seen(&cluster);
    assert_eq!(
        deleted(&seen),
        [DEPLOYMENT, BINDING, ACCOUNT, ROOT_CERT],
        "the Deployment first, the other class's Service kept, the root cert with the last waypoint"
    );
    let reads = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path == DEPLOYMENT)
        .count();
    assert_eq!(reads, 1, "the Deployment is read once");
    assert!(applies(&seen).is_empty(), "{seen:#?}");
}

#[tokio::test]
async fn the_root_cert_stays_for_the_namespaces_other_waypoints() {
    let uid = "uid-shop-waypoint";
    let cluster = Arc::new(Mutex::new(Cluster {
        objects: BTreeMap::from([
            live(DEPLOYMENT, "ambit-controller", &[uid], json!({})),
            live(
                ROOT_CERT,
                "ambit-controller",
                &[uid, "uid-shop-other"],
                json!({}),
            ),
        ]),
        ..Cluster::default()
    }));
    let mut g = gateway("shop", "waypoint");
    g.spec.gateway_class_name = "istio".into();
    let other = gateway("shop", "other");
    let ctx = context(&cluster, &[&g, &other]);
    reconcile(Arc::new(g), ctx).await.expect("retired");
    let seen = seen(&cluster);
    assert_eq!(deleted(&seen), [DEPLOYMENT]);
    let root = seen
        .iter()
        .find(|s| s.method == "PATCH" && s.path == ROOT_CERT)
        .expect("the root cert re-applied");
    let owners: Vec<_> = root.body["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["uid"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["uid-shop-other"]);
}

#[tokio::test]
async fn a_deployment_of_the_same_name_made_by_another_controller_is_not_touched() {
    let cluster = Arc::new(Mutex::new(Cluster {
        objects: BTreeMap::from([live(DEPLOYMENT, "istio", &["uid-shop-waypoint"], json!({}))]),
        ..Cluster::default()
    }));
    let mut g = gateway("shop", "waypoint");
    g.spec.gateway_class_name = "istio".into();
    let ctx = context(&cluster, &[&g]);
    reconcile(Arc::new(g), ctx).await.expect("nothing to do");
    let seen = seen(&cluster);
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert!(deleted(&seen).is_empty());
}

#[tokio::test]
async fn a_failed_apply_names_the_gateway_backs_off_and_spares_the_others() {
    let cluster = Arc::new(Mutex::new(Cluster {
        broken_namespaces: vec!["broken".into()],
        ..Cluster::default()
    }));
    let bad = Arc::new(gateway("broken", "waypoint"));
    let good = Arc::new(gateway("shop", "waypoint"));
    let ctx = context(&cluster, &[&bad, &good]);

    let e = reconcile(bad.clone(), ctx.clone())
        .await
        .expect_err("the API server fails");
    assert!(
        e.to_string().starts_with("applying ")
            && e.to_string().ends_with("for Gateway broken/waypoint"),
        "{e}"
    );
    let delays: Vec<_> = (0..3)
        .map(|_| error_policy(bad.clone(), &e, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4].map(|s| Action::requeue(Duration::from_secs(s))),
        "exponential backoff"
    );

    reconcile(good, ctx.clone())
        .await
        .expect("another Gateway is deployed all the same");
    assert!(seen(&cluster)
        .iter()
        .any(|s| s.path == "/apis/apps/v1/namespaces/shop/deployments/waypoint"));

    cluster.lock().unwrap().broken_namespaces.clear();
    reconcile(bad.clone(), ctx.clone())
        .await
        .expect("the API server is back");
    assert_eq!(
        error_policy(bad, &e, ctx),
        Action::requeue(Duration::from_secs(1)),
        "a success resets the backoff"
    );
}

#[tokio::test]
async fn the_sweep_deletes_bindings_of_gone_gateways_and_accepts_the_class() {
    let labels = |ns: &str, name: &str| json!({"ambit.dev/gateway-namespace": ns, "gateway.networking.k8s.io/gateway-name": name, "app.kubernetes.io/managed-by": "ambit-controller"});
    let cluster = Arc::new(Mutex::new(Cluster {
        bindings: vec![
            json!({"metadata": {"name": "ambit-waypoint-shop-waypoint", "labels": labels("shop", "waypoint")}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambit-waypoint"}}),
            json!({"metadata": {"name": "ambit-waypoint-old-gone", "labels": labels("old", "gone")}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambit-waypoint"}}),
        ],
        class: Some(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "ambit-waypoint", "generation": 1},
            "spec": {"controllerName": "ambit.dev/waypoint"},
        })),
        ..Cluster::default()
    }));
    let g = gateway("shop", "waypoint");
    let ctx = context(&cluster, &[&g]);
    sweep(&ctx).await.expect("swept");
    let seen = seen(&cluster);
    let list = by_path(
        &seen,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    );
    assert_eq!(
        list.query,
        "&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dambit-controller"
    );
    let deleted: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        ["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ambit-waypoint-old-gone"]
    );
    let class = by_path(
        &seen,
        "/apis/gateway.networking.k8s.io/v1/gatewayclasses/ambit-waypoint/status",
    );
    assert_eq!(class.body["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(class.body["status"]["conditions"][0]["status"], "True");
}
