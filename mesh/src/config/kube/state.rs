//! The source's view of the cluster, changed one watch event at a time.
//!
//! Each watch feeds one [`Store`]. A relist (the watcher's `Init`, `InitApply`…, `InitDone`)
//! fills a fresh map that replaces the old one only at `InitDone`, so a model built during a
//! relist still holds every object, and objects deleted while the watch was down disappear.

use std::collections::BTreeMap;
use std::fmt;

use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::gateways::Gateway;
use k8s_openapi::api::core::v1::{
    Namespace as KubeNamespace, Node as KubeNode, Pod, Service as KubeService,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use super::convert::{self, Converted, Problem};
use super::routes;
use crate::api::TrafficPolicy;
use crate::model::{
    is_waypoint, AddressSlot, ClusterState, Model, ModelError, Namespace, Node, RedirectSettings,
    Trimmed, Workload,
};

/// The label an EndpointSlice names its Service with.
pub(super) const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects. Ordering by key
/// gives the model's lists their order.
pub(super) type Key = (String, String);

/// The watches the source runs, named for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watch {
    Namespaces,
    Nodes,
    LocalPods,
    RemotePods,
    Services,
    EndpointSlices,
    Gateways,
    HttpRoutes,
    GrpcRoutes,
    TrafficPolicies,
}

impl Watch {
    pub const ALL: [Watch; 10] = [
        Self::Namespaces,
        Self::Nodes,
        Self::LocalPods,
        Self::RemotePods,
        Self::Services,
        Self::EndpointSlices,
        Self::Gateways,
        Self::HttpRoutes,
        Self::GrpcRoutes,
        Self::TrafficPolicies,
    ];
}

impl fmt::Display for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespaces => "namespaces",
            Self::Nodes => "nodes",
            Self::LocalPods => "pods on this node",
            Self::RemotePods => "pods on other nodes",
            Self::Services => "services",
            Self::EndpointSlices => "endpointslices",
            Self::Gateways => "gateways",
            Self::HttpRoutes => "httproutes",
            Self::GrpcRoutes => "grpcroutes",
            Self::TrafficPolicies => "trafficpolicies",
        })
    }
}

/// One item of the merged watch streams: an event of one watch, or its failure (the watch
/// retries by itself, with backoff).
#[derive(Debug)]
pub enum Change {
    Namespace(Event<KubeNamespace>),
    Node(Event<KubeNode>),
    LocalPod(Event<Pod>),
    RemotePod(Event<Pod>),
    Service(Event<KubeService>),
    EndpointSlice(Event<EndpointSlice>),
    Gateway(Event<Gateway>),
    HttpRoute(Event<HttpRoute>),
    GrpcRoute(Event<GrpcRoute>),
    TrafficPolicy(Event<TrafficPolicy>),
    Failed { watch: Watch, error: String },
}

/// What one object became: the model object (if it belongs in the model now) and its
/// problems. Skipped objects stay here so that their problems stay reported.
#[derive(Debug, Clone)]
pub(super) struct Entry<T> {
    value: Option<T>,
    problems: Vec<Problem>,
}

/// The objects of one watch, by key.
#[derive(Debug)]
pub(super) struct Store<T> {
    objects: BTreeMap<Key, Entry<T>>,
    relist: Option<BTreeMap<Key, Entry<T>>>,
    synced: bool,
    last_error: Option<String>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
            last_error: None,
        }
    }
}

impl<T: Clone> Store<T> {
    /// Applies one watcher event; true if the objects in force changed.
    fn feed<K: kube::Resource>(
        &mut self,
        event: Event<K>,
        convert: impl Fn(&K) -> Converted<T>,
    ) -> bool {
        self.last_error = None;
        let entry = |object: &K| {
            let Converted { value, problems } = convert(object);
            let key = (object.namespace().unwrap_or_default(), object.name_any());
            (key, Entry { value, problems })
        };
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                let (key, entry) = entry(&object);
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, entry);
                false
            }
            Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.synced = true;
                true
            }
            Event::Apply(object) => {
                let (key, entry) = entry(&object);
                self.objects.insert(key, entry);
                true
            }
            Event::Delete(object) => {
                let key = (object.namespace().unwrap_or_default(), object.name_any());
                self.objects.remove(&key).is_some()
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.objects.values().filter_map(|e| e.value.as_ref())
    }

    fn problems(&self) -> impl Iterator<Item = &Problem> + '_ {
        self.objects.values().flat_map(|e| &e.problems)
    }
}

/// Everything the watches delivered, converted where the conversion needs one object only.
#[derive(Debug, Default)]
pub(super) struct State {
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    local_pods: Store<Workload>,
    remote_pods: Store<Workload>,
    /// Kept as objects: their conversion needs their EndpointSlices.
    services: Store<KubeService>,
    endpoint_slices: Store<EndpointSlice>,
    gateways: Store<Gateway>,
    http_routes: Store<HttpRoute>,
    grpc_routes: Store<GrpcRoute>,
    traffic_policies: Store<TrafficPolicy>,
}

fn kept<K: Clone>(object: &K) -> Converted<K> {
    Converted {
        value: Some(object.clone()),
        problems: Vec::new(),
    }
}

/// Gateways of other classes are not the mesh's: only waypoints are kept.
fn waypoint(gateway: &Gateway) -> Converted<Gateway> {
    Converted {
        value: is_waypoint(gateway).then(|| gateway.clone().trimmed()),
        problems: Vec::new(),
    }
}

fn trimmed<K: Clone + Trimmed>(object: &K) -> Converted<K> {
    Converted {
        value: Some(object.clone().trimmed()),
        problems: Vec::new(),
    }
}

impl State {
    /// Applies one change; true if the model may have changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Namespace(e) => self.namespaces.feed(e, convert::namespace),
            Change::Node(e) => self.nodes.feed(e, convert::node),
            Change::LocalPod(e) => self.local_pods.feed(e, convert::workload),
            Change::RemotePod(e) => self.remote_pods.feed(e, convert::workload),
            Change::Service(e) => self.services.feed(e, kept),
            Change::EndpointSlice(e) => self.endpoint_slices.feed(e, kept),
            Change::Gateway(e) => self.gateways.feed(e, waypoint),
            Change::HttpRoute(e) => self.http_routes.feed(e, trimmed),
            Change::GrpcRoute(e) => self.grpc_routes.feed(e, trimmed),
            Change::TrafficPolicy(e) => self.traffic_policies.feed(e, trimmed),
            Change::Failed { watch, error } => {
                self.store_status(watch).1.replace(error);
                false
            }
        }
    }

    /// Whether the watch has listed once, and its last error since its last event.
    fn store_status(&mut self, watch: Watch) -> (bool, &mut Option<String>) {
        macro_rules! status {
            ($store:expr) => {
                ($store.synced, &mut $store.last_error)
            };
        }
        match watch {
            Watch::Namespaces => status!(self.namespaces),
            Watch::Nodes => status!(self.nodes),
            Watch::LocalPods => status!(self.local_pods),
            Watch::RemotePods => status!(self.remote_pods),
            Watch::Services => status!(self.services),
            Watch::EndpointSlices => status!(self.endpoint_slices),
            Watch::Gateways => status!(self.gateways),
            Watch::HttpRoutes => status!(self.http_routes),
            Watch::GrpcRoutes => status!(self.grpc_routes),
            Watch::TrafficPolicies => status!(self.traffic_policies),
        }
    }

    /// Why no complete model can be built yet: the watches that have not listed once, with
    /// their last error. `None` once every watch has.
    pub fn not_ready(&mut self) -> Option<String> {
        let mut waiting = Vec::new();
        for watch in Watch::ALL {
            let (synced, error) = self.store_status(watch);
            if !synced {
                waiting.push(match error {
                    Some(error) => format!("{watch} ({error})"),
                    None => watch.to_string(),
                });
            }
        }
        (!waiting.is_empty())
            .then(|| format!("waiting for the first list of {}", waiting.join(", ")))
    }

    /// The model of the current state, and every problem known about it. An address claimed
    /// twice (two pods with one IP, as while a pod's IP is reused) keeps the first claimant in
    /// namespace/name order and reports the other. Any other refusal of the model (keys are
    /// unique per store, so none is expected) is returned, and the caller keeps the last model.
    pub fn model(
        &self,
        trust_domain: &str,
        redirect: &RedirectSettings,
    ) -> Result<(Model, Vec<Problem>), ModelError> {
        let mut problems: Vec<Problem> = Vec::new();
        problems.extend(self.namespaces.problems().cloned());
        problems.extend(self.nodes.problems().cloned());
        problems.extend(self.local_pods.problems().cloned());
        problems.extend(self.remote_pods.problems().cloned());
        // A pod scheduled here moves from the remote watch to the local one; until the remote
        // watch delivers its deletion, both hold it, and the local (full) one wins.
        let mut pods: BTreeMap<(&str, &str), &Workload> = BTreeMap::new();
        for w in self.remote_pods.values().chain(self.local_pods.values()) {
            pods.insert((&w.namespace, &w.name), w);
        }
        let workloads: Vec<Workload> = pods.into_values().cloned().collect();
        let mut state = ClusterState {
            trust_domain: trust_domain.to_owned(),
            nodes: self.nodes.values().cloned().collect(),
            namespaces: self.namespaces.values().cloned().collect(),
            workloads,
            services: self.services(&mut problems),
            gateways: self.gateways.values().cloned().collect(),
            http_routes: self.http_routes.values().cloned().collect(),
            grpc_routes: self.grpc_routes.values().cloned().collect(),
            traffic_policies: self.traffic_policies.values().cloned().collect(),
            redirect: redirect.clone(),
        };
        let model = loop {
            match Model::new(state.clone()) {
                Ok(model) => break model,
                Err(err) => match drop_claimant(&mut state, &err) {
                    Some(problem) => problems.push(problem),
                    None => return Err(err),
                },
            }
        };
        problems.extend(routes::missing_backends(&model));
        problems.extend(routes::dangling_waypoints(&model));
        Ok((model, problems))
    }

    fn services(&self, problems: &mut Vec<Problem>) -> Vec<crate::model::Service> {
        let mut slices: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in self.endpoint_slices.values() {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(service) = slice.labels().get(SERVICE_NAME) {
                slices.entry((namespace, service)).or_default().push(slice);
            }
        }
        let mut out = Vec::new();
        for ((namespace, name), entry) in &self.services.objects {
            let Some(svc) = &entry.value else { continue };
            let of_service = slices
                .get(&(namespace.as_str(), name.as_str()))
                .map_or(&[][..], Vec::as_slice);
            let converted = convert::service(svc, of_service);
            problems.extend(converted.problems);
            out.extend(converted.value);
        }
        out
    }
}

/// Removes the later claimant of an address from `state`; the problem to report.
fn drop_claimant(state: &mut ClusterState, err: &ModelError) -> Option<Problem> {
    let ModelError::AddressInUse {
        claimant,
        ip,
        owner,
    } = err
    else {
        return None;
    };
    Some(match *claimant {
        AddressSlot::WorkloadIp { index, .. } => {
            let w = state.workloads.remove(index);
            Problem {
                object: format!("Pod {}/{}", w.namespace, w.name),
                message: format!("IP {ip} is already the address of {owner}; pod left out of the mesh until the conflict ends"),
            }
        }
        AddressSlot::ServiceVip { index, vip_index } => {
            let s = &mut state.services[index];
            s.vips.remove(vip_index);
            Problem {
                object: format!("Service {}/{}", s.namespace, s.name),
                message: format!("cluster IP {ip} is already the address of {owner}; VIP ignored"),
            }
        }
    })
}
