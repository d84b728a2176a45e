//! A Kubernetes API server on localhost that answers list and watch requests from recorded
//! objects, for driving the kube source through a real `kube::Client`.
//!
//! It keeps one resource version counter, a log of changes (so that a resumed watch gets
//! what it missed), and evaluates the field and label selectors the source uses (`a=b`,
//! `a!=b`, and label existence), including an object moving in or out of a selection (sent
//! as ADDED or DELETED, as the API server does). [`FakeApi::compact`] makes watches from
//! older versions fail with 410 Gone; [`FakeApi::drop_watches`] closes open watch streams.

mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use server::Server;

/// A recorded resource: the file it is loaded from and how the API serves it.
struct Resource {
    /// `pods`: the fixture `pods.json`, and the name tests use.
    name: &'static str,
    path: &'static str,
    api_version: &'static str,
    kind: &'static str,
}

const RESOURCES: [Resource; 9] = [
    Resource {
        name: "namespaces",
        path: "/api/v1/namespaces",
        api_version: "v1",
        kind: "Namespace",
    },
    Resource {
        name: "nodes",
        path: "/api/v1/nodes",
        api_version: "v1",
        kind: "Node",
    },
    Resource {
        name: "pods",
        path: "/api/v1/pods",
        api_version: "v1",
        kind: "Pod",
    },
    Resource {
        name: "services",
        path: "/api/v1/services",
        api_version: "v1",
        kind: "Service",
    },
    Resource {
        name: "endpointslices",
        path: "/apis/discovery.k8s.io/v1/endpointslices",
        api_version: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
    },
    Resource {
        name: "gateways",
        path: "/apis/gateway.networking.k8s.io/v1/gateways",
        api_version: "gateway.networking.k8s.io/v1",
        kind: "Gateway",
    },
    Resource {
        name: "httproutes",
        path: "/apis/gateway.networking.k8s.io/v1/httproutes",
        api_version: "gateway.networking.k8s.io/v1",
        kind: "HTTPRoute",
    },
    Resource {
        name: "grpcroutes",
        path: "/apis/gateway.networking.k8s.io/v1/grpcroutes",
        api_version: "gateway.networking.k8s.io/v1",
        kind: "GRPCRoute",
    },
    Resource {
        name: "trafficpolicies",
        path: "/apis/ambit.dev/v1alpha1/trafficpolicies",
        api_version: "ambit.dev/v1alpha1",
        kind: "TrafficPolicy",
    },
];

fn resource(name: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no resource {name}"))
}

type Key = (&'static str, String, String);

#[derive(Clone, Copy, PartialEq)]
enum Change {
    Put,
    Delete,
}

struct Logged {
    rv: u64,
    resource: &'static str,
    change: Change,
    old: Option<Value>,
    new: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Logged>,
    /// Watches from a version older than this get 410 Gone.
    compacted: u64,
    /// Bumped to close every open watch stream.
    drops: u64,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    /// Bodies of PATCH requests to a status subresource, by path.
    status_patches: Vec<(String, Value)>,
}

/// The fake API server; dropping it stops the server.
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    changed: watch::Sender<()>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The directory of recorded API objects.
pub fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kube"))
}

fn key_of(resource: &'static str, object: &Value) -> Key {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (resource, text(&meta["namespace"]), text(&meta["name"]))
}

impl FakeApi {
    /// Serves the recorded lists of [`fixtures`] on a free localhost port.
    pub async fn recorded() -> Self {
        Self::recorded_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// As [`FakeApi::recorded`], on `addr`.
    pub async fn recorded_on(addr: SocketAddr) -> Self {
        let mut inner = Inner::default();
        for r in &RESOURCES {
            let file = fixtures().join(format!("{}.json", r.name));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let list: Value = serde_json::from_str(&text).unwrap();
            for item in list["items"].as_array().unwrap() {
                let rv: u64 = item["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{}: item without resourceVersion", file.display()));
                inner.rv = inner.rv.max(rv);
                inner.objects.insert(key_of(r.name, item), item.clone());
            }
        }
        inner.compacted = inner.rv;
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(inner));
        let (changed, _) = watch::channel(());
        let server = Server {
            inner: inner.clone(),
            changed: changed.clone(),
        };
        let task = tokio::spawn(server.accept(listener));
        Self {
            inner,
            changed,
            addr,
            task,
        }
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// The stored object, as the API server has it.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Value {
        let r = self::resource(resource);
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .get(&(r.name, namespace.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("no {resource} {namespace}/{name}"))
    }

    /// Creates or replaces an object (its key from its metadata).
    pub fn put(&self, resource: &str, mut object: Value) {
        let r = self::resource(resource);
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(r.name, &object);
        let old = inner.objects.insert(key, object.clone());
        inner.log.push(Logged {
            rv,
            resource: r.name,
            change: Change::Put,
            old,
            new: object,
        });
        drop(inner);
        self.changed.send_replace(());
    }

    /// Changes the stored object with `edit`.
    pub fn edit(&self, resource: &str, namespace: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut object = self.get(resource, namespace, name);
        edit(&mut object);
        self.put(resource, object);
    }

    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let r = self::resource(resource);
        let mut inner = self.inner.lock().unwrap();
        let key = (r.name, namespace.to_owned(), name.to_owned());
        let mut object = inner
            .objects
            .remove(&key)
            .unwrap_or_else(|| panic!("no {key:?}"));
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.log.push(Logged {
            rv,
            resource: r.name,
            change: Change::Delete,
            old: None,
            new: object,
        });
        drop(inner);
        self.changed.send_replace(());
    }

    /// Forgets the change log: watches resuming from an older version get 410 Gone and must
    /// relist. Open watch streams are closed, as when the API server restarts.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.compacted = inner.rv;
        inner.log.clear();
        inner.drops += 1;
        drop(inner);
        self.changed.send_replace(());
    }

    /// Closes every open watch stream; watchers resume from their last version.
    pub fn drop_watches(&self) {
        self.inner.lock().unwrap().drops += 1;
        self.changed.send_replace(());
    }

    /// `METHOD path?query` of the requests so far.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Bodies of PATCHes to status subresources, with their paths.
    pub fn status_patches(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().status_patches.clone()
    }
}
