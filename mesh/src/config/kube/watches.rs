//! The source's watches on the API server, narrowed and trimmed, merged into one stream.

use std::error::Error;
use std::fmt::Debug;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Node as KubeNode, NodeStatus, Pod, PodSpec, PodStatus, Service as KubeService,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::state::{Change, Watch, SERVICE_NAME};

/// Every watch the source needs, as one stream of [`Change`]s. Each watch lists, then
/// watches; relists after its watch expires (410 Gone); and retries failures with
/// `default_backoff` (0.8 s doubling to 30 s, jittered), reporting each failure as
/// [`Change::Failed`].
pub fn changes(client: Client, node: &str) -> BoxStream<'static, Change> {
    let all = watcher::Config::default();
    let local = all.clone().fields(&format!("spec.nodeName={node}"));
    let remote = all.clone().fields(&format!(
        "spec.nodeName!={node},status.phase!=Succeeded,status.phase!=Failed"
    ));
    let slices = all.clone().labels(SERVICE_NAME);
    stream::select_all([
        watch(
            &client,
            all.clone(),
            Watch::Namespaces,
            Change::Namespace,
            drop_managed_fields,
        ),
        watch(&client, all.clone(), Watch::Nodes, Change::Node, lean_node),
        watch(
            &client,
            local,
            Watch::LocalPods,
            Change::LocalPod,
            drop_managed_fields,
        ),
        watch(
            &client,
            remote,
            Watch::RemotePods,
            Change::RemotePod,
            lean_pod,
        ),
        watch(
            &client,
            all.clone(),
            Watch::Services,
            Change::Service,
            lean_service,
        ),
        watch(
            &client,
            slices,
            Watch::EndpointSlices,
            Change::EndpointSlice,
            lean_slice,
        ),
        watch(
            &client,
            all.clone(),
            Watch::Gateways,
            Change::Gateway,
            drop_managed_fields,
        ),
        watch(
            &client,
            all.clone(),
            Watch::HttpRoutes,
            Change::HttpRoute,
            drop_managed_fields,
        ),
        watch(
            &client,
            all.clone(),
            Watch::GrpcRoutes,
            Change::GrpcRoute,
            drop_managed_fields,
        ),
        watch(
            &client,
            all,
            Watch::TrafficPolicies,
            Change::TrafficPolicy,
            drop_managed_fields,
        ),
    ])
    .boxed()
}

fn watch<K>(
    client: &Client,
    config: watcher::Config,
    which: Watch,
    wrap: fn(Event<K>) -> Change,
    lean: fn(&mut K),
) -> BoxStream<'static, Change>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    hold_init(watcher(Api::<K>::all(client.clone()), config))
        .default_backoff()
        .modify(lean)
        .map(move |item| match item {
            Ok(event) => wrap(event),
            Err(err) => Change::Failed {
                watch: which,
                error: with_causes(&err),
            },
        })
        .boxed()
}

/// Drops a watcher's `Init` that a failure follows at once, and passes everything else.
///
/// The watcher starts each (re)list with `Init`, and the backoff resets on any item that is
/// not an error: a list failing again and again would be retried every 0.8 s forever, from
/// every node. Without the `Init` of a list that failed before its first object, failures
/// follow one another and the backoff grows. The dropped `Init` carries nothing: the store
/// starts a relist on `Init` or on its first `InitApply`.
pub(super) fn hold_init<K: Send + 'static>(
    events: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send {
    type Held<K> = Option<watcher::Result<Event<K>>>;
    stream::unfold(
        (events.boxed(), None::<Held<K>>),
        |(mut events, held)| async move {
            if let Some(item) = held {
                return item.map(|item| (item, (events, None)));
            }
            let item = events.next().await?;
            if !matches!(item, Ok(Event::Init)) {
                return Some((item, (events, None)));
            }
            match events.next().await {
                Some(Err(err)) => Some((Err(err), (events, None))),
                next => Some((item, (events, Some(next)))),
            }
        },
    )
}

/// `err` and its sources, joined by `: `, skipping a source the message already quotes.
fn with_causes(err: &dyn Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

fn drop_managed_fields<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
}

/// The metadata the model reads: name, namespace, UID and labels.
fn lean_meta(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        labels: meta.labels.take(),
        resource_version: meta.resource_version.take(),
        ..ObjectMeta::default()
    };
}

/// A pod of another node, as routing and identity need it: IPs, node, service account,
/// labels, host network and phase.
fn lean_pod(pod: &mut Pod) {
    lean_meta(&mut pod.metadata);
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        service_account_name: spec.service_account_name,
        host_network: spec.host_network,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        ..PodStatus::default()
    });
}

/// A node: its name and addresses.
fn lean_node(node: &mut KubeNode) {
    lean_meta(&mut node.metadata);
    node.spec = None;
    node.status = node.status.take().map(|status| NodeStatus {
        addresses: status.addresses,
        ..NodeStatus::default()
    });
}

fn lean_service(service: &mut KubeService) {
    service.managed_fields_mut().clear();
    service.status = None;
}

/// A slice is read for its ports only (named target ports); endpoints come from pods.
fn lean_slice(slice: &mut EndpointSlice) {
    lean_meta(&mut slice.metadata);
    slice.endpoints.clear();
}
