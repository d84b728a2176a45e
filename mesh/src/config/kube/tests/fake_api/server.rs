//! The HTTP side of the fake API server: lists, watch streams and status patches.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Change, Inner, Logged, Resource, RESOURCES};

#[derive(Clone)]
pub(super) struct Server {
    pub inner: Arc<Mutex<Inner>>,
    pub changed: watch::Sender<()>,
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("the server could not find the requested resource ({path})"),
        "reason": "NotFound", "code": 404});
    json_response(StatusCode::NOT_FOUND, &status)
}

/// Whether `object` passes a selector: `a=b`, `a!=b` on fields (dotted paths) or labels, and
/// label existence (`key`).
fn selected(object: &Value, fields: Option<&str>, labels: Option<&str>) -> bool {
    let field = |path: &str| {
        path.split('.')
            .fold(object, |v, part| &v[part])
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let label = |key: &str| {
        object["metadata"]["labels"][key]
            .as_str()
            .map(str::to_owned)
    };
    let fields_ok = fields.into_iter().flat_map(|f| f.split(',')).all(|term| {
        if let Some((path, value)) = term.split_once("!=") {
            field(path) != value
        } else if let Some((path, value)) = term.split_once('=') {
            field(path) == value
        } else {
            panic!("unsupported field selector {term:?}")
        }
    });
    let labels_ok = labels.into_iter().flat_map(|l| l.split(',')).all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            label(key).as_deref() != Some(value)
        } else if let Some((key, value)) = term.split_once('=') {
            label(key).as_deref() == Some(value)
        } else {
            label(term).is_some()
        }
    });
    fields_ok && labels_ok
}

fn with_type(r: &Resource, mut object: Value) -> Value {
    object["apiVersion"] = json!(r.api_version);
    object["kind"] = json!(r.kind);
    object
}

impl Server {
    pub async fn accept(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query: BTreeMap<String, String> =
            req.uri().query().map(url_decode_pairs).unwrap_or_default();
        let method = req.method().clone();
        self.inner.lock().unwrap().requests.push(format!(
            "{method} {}",
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_default()
        ));
        if method == hyper::Method::PATCH && path.ends_with("/status") {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let patch: Value = serde_json::from_slice(&body).unwrap();
            self.inner
                .lock()
                .unwrap()
                .status_patches
                .push((path.clone(), patch.clone()));
            return self.patched(&path, &patch);
        }
        let Some(r) = RESOURCES.iter().find(|r| r.path == path) else {
            return not_found(&path);
        };
        let fields = query.get("fieldSelector").map(String::as_str);
        let labels = query.get("labelSelector").map(String::as_str);
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let since: u64 = query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .map_or(Duration::from_secs(300), Duration::from_secs);
            return self.watch(
                r,
                since,
                fields.map(str::to_owned),
                labels.map(str::to_owned),
                timeout,
            );
        }
        let inner = self.inner.lock().unwrap();
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((name, _, _), o)| *name == r.name && selected(o, fields, labels))
            .map(|(_, o)| o.clone())
            .collect();
        let list = json!({
            "apiVersion": r.api_version,
            "kind": format!("{}List", r.kind),
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        });
        json_response(StatusCode::OK, &list)
    }

    /// Answers a status PATCH with the object, the patch's status merged in.
    fn patched(&self, path: &str, patch: &Value) -> Response<Body> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/status
        let [_, group, version, _, namespace, plural, name, _] = parts[..] else {
            return not_found(path);
        };
        let Some(r) = RESOURCES
            .iter()
            .find(|r| r.path == format!("/apis/{group}/{version}/{plural}"))
        else {
            return not_found(path);
        };
        let inner = self.inner.lock().unwrap();
        let Some(object) = inner
            .objects
            .get(&(r.name, namespace.to_owned(), name.to_owned()))
        else {
            return not_found(path);
        };
        let mut object = with_type(r, object.clone());
        object["status"] = patch["status"].clone();
        json_response(StatusCode::OK, &object)
    }

    fn watch(
        &self,
        r: &'static Resource,
        since: u64,
        fields: Option<String>,
        labels: Option<String>,
        timeout: Duration,
    ) -> Response<Body> {
        let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let inner = self.inner.clone();
        let mut changed = self.changed.subscribe();
        tokio::spawn(async move {
            let line = |event: Value| Ok(Frame::data(Bytes::from(format!("{event}\n"))));
            let (drops, compacted) = {
                let inner = inner.lock().unwrap();
                (inner.drops, inner.compacted)
            };
            if since < compacted {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {since} ({compacted})")}});
                let _ = tx.send(line(gone)).await;
                return;
            }
            let mut cursor = since;
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                changed.borrow_and_update();
                let (events, closed) = {
                    let inner = inner.lock().unwrap();
                    let events: Vec<Value> = inner
                        .log
                        .iter()
                        .filter(|l| l.rv > cursor && l.resource == r.name)
                        .filter_map(|l| event(r, l, fields.as_deref(), labels.as_deref()))
                        .collect();
                    cursor = inner.rv;
                    (events, inner.drops != drops)
                };
                if closed {
                    return;
                }
                for e in events {
                    if tx.send(line(e)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    res = changed.changed() => if res.is_err() { return },
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(rx).boxed())
            .unwrap()
    }
}

/// The watch event a logged change makes for a watcher with these selectors, if any.
fn event(r: &Resource, l: &Logged, fields: Option<&str>, labels: Option<&str>) -> Option<Value> {
    let now = selected(&l.new, fields, labels);
    let before = l.old.as_ref().is_some_and(|o| selected(o, fields, labels));
    let kind = match (l.change, before, now) {
        (Change::Delete, _, true) => "DELETED",
        (Change::Put, true, true) => "MODIFIED",
        (Change::Put, false, true) => "ADDED",
        (Change::Put, true, false) => "DELETED",
        _ => return None,
    };
    Some(json!({"type": kind, "object": with_type(r, l.new.clone())}))
}

/// `a=b&c=d` with percent-decoding.
fn url_decode_pairs(query: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
