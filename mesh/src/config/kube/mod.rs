//! The Kubernetes source: watches the API server and publishes the model, as the file source
//! does, on a `watch::Receiver<Arc<Model>>`.
//!
//! Node agents run it on every node, so it reads only what one node needs, keeps it lean in
//! memory, and never stops on bad input: a bad object is reported and left out, the rest of
//! the model stays in force.
//!
//! # What is watched, and why
//! | watch | narrowed by | received (before conversion) |
//! | --- | --- | --- |
//! | Namespaces | - | the object but `managedFields` |
//! | Nodes | - | name, addresses (where a node's agent is reached) |
//! | Pods on this node | `spec.nodeName=<node>` | the object but `managedFields` |
//! | Pods on other nodes | `spec.nodeName!=<node>`, not `Succeeded`/`Failed` | name, UID, labels, node, service account, host network, IPs |
//! | Services | - | the object but `managedFields` and status |
//! | EndpointSlices | label `kubernetes.io/service-name` | name, labels, ports |
//! | Gateways | only `gatewayClassName: ambit-waypoint` kept | trimmed ([`Trimmed`](crate::model::Trimmed)) |
//! | HTTPRoutes, GRPCRoutes | - | trimmed |
//! | TrafficPolicies (ambit.dev) | - | trimmed |
//!
//! Namespaces, Nodes and Pods are converted on receipt and only their model form is kept;
//! Services and EndpointSlices are kept as received and converted together at each model.
//! The two pod watches never overlap: the local one delivers whole pods, what enrollment of
//! this node's pods will read beyond the model; a pod scheduled here moves from one to the
//! other (the local copy wins while both hold it).
//!
//! Remote pods come from a cluster-wide pod watch rather than from EndpointSlices plus
//! ServiceAccounts: a slice gives an endpoint's IP, node and pod, but not the pod's service
//! account (ServiceAccount objects do not list their pods), and it misses pods no Service
//! selects, which still connect to and are reached from this node's pods. Routing needs the
//! IP and node, the identity check the service account: only the pod has all three. The cost
//! is that every pod change reaches every agent; the watch is narrowed to running pods off
//! this node and stripped on receipt, and a controller fanning out the model can replace it
//! at scale. EndpointSlices are read only for the port a named `targetPort` resolves to;
//! endpoints are the pods a Service selects, as in the file source.
//!
//! # Contracts
//! - [`KubeSource::start`] returns at once. Until every watch has listed once, the channel
//!   holds an empty model, [`KubeSource::not_ready`] says which watches are missing and
//!   their last error (an unreachable API server is retried with backoff, forever), and
//!   [`KubeSource::ready`] waits. Consumers wait for `ready()` before acting on a model.
//! - Each event changes the in-memory state at once. A new model is built `debounce` after
//!   the first change not yet published (a burst makes one model) and published only if it
//!   differs from the current one.
//! - The model lists objects in namespace/name order, so that it equals the file source's
//!   model of the same objects listed in that order.
//! - A watch that fails relists or resumes by itself (kube-runtime's watcher), retrying with
//!   a backoff that grows while lists keep failing; objects deleted meanwhile leave the model
//!   when the relist completes, not before.
//! - A bad object is reported once when it appears (one `warn!`, [`KubeSource::problems_total`]
//!   plus one, listed in [`KubeSource::problems`] while it lasts), and is left out or taken
//!   as the rules say: an unknown `ambit.dev/dataplane-mode` counts as absent (a namespace is
//!   then not enrolled), a pod without an IP waits for one, a route naming a missing Service
//!   is kept (its requests fail), an `ambit.dev/use-waypoint` label naming no waypoint is
//!   reported (its traffic skips the waypoint), an address claimed twice stays with its first
//!   claimant (namespace/name order).
//! - Dropping the `KubeSource` stops its watches.

mod convert;
pub mod policies;
pub mod routes;
mod state;
mod watches;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use convert::Problem;
pub use state::{Change, Watch};

use crate::model::{Model, RedirectSettings, DEFAULT_TRUST_DOMAIN};
use state::State;

/// How long changes are gathered into one model when the caller does not say.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// What the source cannot learn from the API server.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// This node's name: its pods are watched in full.
    pub node_name: String,
    pub trust_domain: String,
    pub redirect: RedirectSettings,
    /// How long after a change the model is rebuilt; later changes join the same model.
    pub debounce: Duration,
}

impl KubeSettings {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            redirect: RedirectSettings::default(),
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// The Kubernetes config source; see the module docs for the contracts.
pub struct KubeSource {
    models: watch::Receiver<Arc<Model>>,
    ready: watch::Receiver<bool>,
    status: Arc<Status>,
    task: JoinHandle<()>,
}

/// What the source reports to readiness and admin pages.
struct Status {
    not_ready: Mutex<Option<String>>,
    problems: Mutex<Vec<String>>,
    problems_total: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KubeSource {
    /// Starts the watches through `client`; returns at once (see [`KubeSource::ready`]).
    pub fn start(client: kube::Client, settings: KubeSettings) -> Self {
        let changes = watches::changes(client, &settings.node_name);
        Self::from_changes(changes, settings)
    }

    /// Connects as `kube::Client::try_default` does (in-cluster service account, else the
    /// kubeconfig) and starts the watches. Fails only if no client config can be found;
    /// an unreachable server is retried (see [`KubeSource::not_ready`]).
    pub async fn connect(settings: KubeSettings) -> Result<Self, kube::Error> {
        let client = kube::Client::try_default().await?;
        Ok(Self::start(client, settings))
    }

    /// Builds models from `changes` instead of watches: for tests, and for a source of
    /// watch events other than a `kube::Client`.
    pub fn from_changes(
        changes: impl Stream<Item = Change> + Send + 'static,
        settings: KubeSettings,
    ) -> Self {
        let (models_tx, models) = watch::channel(Arc::new(Model::default()));
        let (ready_tx, ready) = watch::channel(false);
        let status = Arc::new(Status {
            not_ready: Mutex::new(Some("the source has not started".to_owned())),
            problems: Mutex::new(Vec::new()),
            problems_total: AtomicU64::new(0),
        });
        let publisher = Publisher {
            settings,
            state: State::default(),
            models: models_tx,
            ready: ready_tx,
            status: status.clone(),
            reported: BTreeSet::new(),
        };
        let task = tokio::spawn(publisher.run(changes));
        Self {
            models,
            ready,
            status,
            task,
        }
    }

    /// A receiver of the model in force and of each new one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Model>> {
        self.models.clone()
    }

    /// The model in force now (empty until [`KubeSource::ready`]).
    pub fn current(&self) -> Arc<Model> {
        self.models.borrow().clone()
    }

    /// Waits until the first complete model is published.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        // The sender lives as long as the task; if it ended, there is nothing to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Why there is no complete model yet, for a readiness probe; `None` once there is.
    pub fn not_ready(&self) -> Option<String> {
        lock(&self.status.not_ready).clone()
    }

    /// How many problems with objects were reported since the start.
    pub fn problems_total(&self) -> u64 {
        self.status.problems_total.load(Ordering::Relaxed)
    }

    /// The problems with the objects in force now, as `Kind namespace/name: what`.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.status.problems).clone()
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task that applies changes and publishes models.
struct Publisher {
    settings: KubeSettings,
    state: State,
    models: watch::Sender<Arc<Model>>,
    ready: watch::Sender<bool>,
    status: Arc<Status>,
    /// The problems reported at the last publication.
    reported: BTreeSet<String>,
}

impl Publisher {
    async fn run(mut self, changes: impl Stream<Item = Change> + Send) {
        let mut changes = std::pin::pin!(changes);
        let mut due: Option<Instant> = None;
        loop {
            let deadline = due.unwrap_or_else(Instant::now);
            tokio::select! {
                change = changes.next() => {
                    let Some(change) = change else { break };
                    if let Change::Failed { watch, error } = &change {
                        tracing::warn!(%watch, "watch failed, retrying with backoff: {error}");
                    }
                    let changed = self.state.apply(change);
                    let not_ready = self.state.not_ready();
                    let is_ready = not_ready.is_none();
                    *lock(&self.status.not_ready) = not_ready;
                    if changed && is_ready && due.is_none() {
                        due = Some(Instant::now() + self.settings.debounce);
                    }
                }
                () = tokio::time::sleep_until(deadline), if due.is_some() => {
                    due = None;
                    self.publish();
                }
            }
        }
        if due.is_some() {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let settings = &self.settings;
        let (model, problems) = match self.state.model(&settings.trust_domain, &settings.redirect) {
            Ok(built) => built,
            Err(err) => {
                self.status.problems_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("model refused, the last good one stays in force: {err}");
                return;
            }
        };
        self.report(problems);
        let changed = self.models.send_if_modified(|current| {
            if **current == model {
                return false;
            }
            *current = Arc::new(model);
            true
        });
        if changed {
            let model = self.models.borrow();
            tracing::info!(
                workloads = model.workloads().len(),
                services = model.services().len(),
                "published a new model from Kubernetes"
            );
        }
        self.ready.send_replace(true);
    }

    /// Logs and counts the problems that are new since the last publication.
    fn report(&mut self, problems: Vec<Problem>) {
        let now: BTreeSet<String> = problems.iter().map(Problem::to_string).collect();
        for problem in now.difference(&self.reported) {
            self.status.problems_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("config problem: {problem}");
        }
        for solved in self.reported.difference(&now) {
            tracing::info!("config problem solved: {solved}");
        }
        *lock(&self.status.problems) = now.iter().cloned().collect();
        self.reported = now;
    }
}
