//! The waypoint deployer: for each Gateway of class `ambit-waypoint`, the objects of the
//! waypoint template (server-side applied), and the Gateway's status.
//!
//! Decisions are pure ([`render`], [`status`]); this module applies them. Each Gateway is
//! reconciled on its own (a `kube::runtime::Controller`): a failed apply or an unreachable
//! API server is logged with the Gateway's name and that Gateway is retried with backoff,
//! without holding up the others. Namespaced objects are owned by their Gateway, so deleting
//! it lets Kubernetes collect them; the ClusterRoleBinding cannot be owned, so a sweep
//! (every [`SWEEP_EVERY`]) deletes each binding of ours whose Gateway is gone, and sets the
//! `ambit-waypoint` GatewayClass's status when the class is Ambit's. A Gateway that moves
//! to another class keeps nothing of its waypoint: what the deployer applied for it is
//! deleted (only objects it owns), and the namespace's `ambit-root-cert` goes with the last
//! waypoint Gateway of the namespace.

pub mod render;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_mesh::model::labels::{GATEWAY_NAME, WAYPOINT_CLASS};
use futures::StreamExt;
use gateway_api::gatewayclasses::GatewayClass;
use gateway_api::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use render::{
    Desired, RenderError, Template, FIELD_MANAGER, GATEWAY_NAMESPACE, MANAGED_BY,
    ROOT_CERT_CONFIGMAP,
};
use status::{Observed, HBONE_PORT};

/// How often leftover ClusterRoleBindings are looked for and the GatewayClass checked.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A reconciled Gateway is looked at again after this long even if nothing changed, so an
/// object deleted by hand comes back.
const RESYNC: Duration = Duration::from_secs(300);

/// The first retry of a failed Gateway; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the deployer makes waypoints from.
pub struct Settings {
    pub template: Template,
    /// The waypoint container's image (`--waypoint-image`).
    pub image: String,
    /// The mesh root every waypoint verifies its peers with (the CA's root.pem).
    pub root_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("rendering the waypoint of Gateway {gateway}")]
    Render {
        gateway: String,
        #[source]
        source: RenderError,
    },
    #[error("applying {kind} {object} for Gateway {gateway}")]
    Apply {
        gateway: String,
        kind: String,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {object} of Gateway {gateway}, which left class {WAYPOINT_CLASS}")]
    Retire {
        gateway: String,
        kind: String,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of Gateway {gateway}")]
    Status {
        gateway: String,
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    settings: Settings,
    gateways: Store<Gateway>,
    /// Consecutive failures per Gateway, for the backoff.
    failures: Mutex<HashMap<ObjectRef<Gateway>, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, gateways: Store<Gateway>) -> Self {
        Context {
            client,
            settings,
            gateways,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the deployer until the process ends.
pub async fn run(client: Client, settings: Settings) {
    let deployments = watcher::Config::default().labels(&format!(
        "{GATEWAY_NAME},app.kubernetes.io/component=waypoint,{MANAGED_BY}={FIELD_MANAGER}"
    ));
    let controller = Controller::new(
        Api::<Gateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), deployments);
    let ctx = Arc::new(Context::new(client, settings, controller.store()));
    tracing::info!(
        image = ctx.settings.image,
        "deploying waypoints for Gateways of class {WAYPOINT_CLASS}"
    );
    let sweeper = tokio::spawn(sweep_forever(ctx.clone()));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                // Watch failures are retried with backoff by the controller; said loudly,
                // since no Gateway is deployed meanwhile.
                Err(e @ controller::Error::QueueError(_)) => tracing::warn!(
                    error = %chain(&e),
                    "watching Gateways or waypoint Deployments failed (are the Gateway API CRDs installed?)"
                ),
                // error_policy logged these; a Gateway deleted before its turn needs nothing.
                Err(e) => tracing::debug!(error = %chain(&e), "waypoint deployer"),
                Ok(_) => {}
            }
        })
        .await;
    sweeper.abort();
}

/// Applies `gateway`'s waypoint and writes its status.
pub async fn reconcile(gateway: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action, DeployError> {
    let key = format!(
        "{}/{}",
        gateway.namespace().unwrap_or_default(),
        gateway.name_any()
    );
    if gateway.spec.gateway_class_name != WAYPOINT_CLASS {
        retire(&gateway, &key, &ctx).await?;
        return Ok(Action::await_change());
    }
    let problem = status::listener_problem(&gateway);
    let observed = match &problem {
        Some(problem) => {
            tracing::warn!(
                gateway = key,
                problem,
                "not deploying: not a waypoint Gateway"
            );
            None
        }
        None => Some(apply_waypoint(&gateway, &key, &ctx).await?),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::gateway_status(&gateway, problem.as_deref(), observed.as_ref(), &now);
    if let Some(update) = status::gateway_status_update(&gateway, desired) {
        let api = Api::<Gateway>::namespaced(
            ctx.client.clone(),
            &gateway.namespace().unwrap_or_default(),
        );
        let patch = json!({"status": {
            "conditions": update.conditions,
            "addresses": update.addresses,
            "listeners": update.listeners,
        }});
        api.patch_status(
            &gateway.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| DeployError::Status {
            gateway: key.clone(),
            source,
        })?;
        tracing::info!(
            gateway = key,
            programmed = observed.as_ref().is_some_and(|o| o.ready_replicas > 0),
            "Gateway status written"
        );
    }
    ctx.failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&ObjectRef::from_obj(&*gateway));
    Ok(Action::requeue(RESYNC))
}

/// Server-side applies every object of the waypoint, and returns what came back.
async fn apply_waypoint(
    gateway: &Gateway,
    key: &str,
    ctx: &Context,
) -> Result<Observed, DeployError> {
    let rendered = |source| DeployError::Render {
        gateway: key.to_owned(),
        source,
    };
    let settings = &ctx.settings;
    let mut objects = settings
        .template
        .render(gateway, &settings.image)
        .map_err(rendered)?;
    let namespace = gateway.namespace().unwrap_or_default();
    let neighbours = waypoints_in(ctx, &namespace);
    let mut owners: Vec<&Gateway> = neighbours.iter().map(|g| &**g).collect();
    if !owners.iter().any(|g| g.uid() == gateway.uid()) {
        owners.push(gateway);
    }
    objects.push(render::root_cert(&namespace, &owners, &settings.root_pem).map_err(rendered)?);
    objects.sort_by_key(|d| render::apply_order(d.kind()));
    let mut observed = Observed::default();
    for desired in &objects {
        let applied = apply(&ctx.client, desired)
            .await
            .map_err(|source| DeployError::Apply {
                gateway: key.to_owned(),
                kind: desired.kind().to_owned(),
                object: desired.name.clone(),
                source,
            })?;
        match desired.kind() {
            "Deployment" => {
                observed.ready_replicas = applied.data["status"]["readyReplicas"]
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .unwrap_or(0);
            }
            "Service" if serves_hbone(&applied) => {
                observed.cluster_ip = applied.data["spec"]["clusterIP"]
                    .as_str()
                    .map(str::to_owned);
            }
            _ => {}
        }
    }
    Ok(observed)
}

/// Deletes the waypoint the deployer made for `gateway`, which is not (or no longer) of the
/// waypoint class. A Gateway that never was costs one GET: its would-be Deployment, absent or
/// not owned by it, ends the search.
async fn retire(gateway: &Gateway, key: &str, ctx: &Context) -> Result<(), DeployError> {
    let Some(uid) = gateway.uid() else {
        return Ok(());
    };
    // A Gateway the template cannot be filled in for had nothing applied under this template.
    let Ok(mut objects) = ctx.settings.template.render(gateway, &ctx.settings.image) else {
        return Ok(());
    };
    let failed = |desired: &Desired| {
        let (kind, object) = (desired.kind().to_owned(), desired.name.clone());
        move |source| DeployError::Retire {
            gateway: key.to_owned(),
            kind,
            object,
            source,
        }
    };
    // The Deployment first: the waypoint stops before its identity and its Service go.
    objects.sort_by_key(|d| std::cmp::Reverse(render::apply_order(d.kind())));
    let Some(deployment) = objects.first().filter(|d| d.kind() == "Deployment") else {
        return Ok(());
    };
    let mut first = get(&ctx.client, deployment)
        .await
        .map_err(failed(deployment))?;
    if !first.as_ref().is_some_and(|d| owned_by(d, &uid)) {
        return Ok(());
    }
    let namespace = gateway.namespace().unwrap_or_default();
    for desired in &objects {
        // The Deployment was read above; every other object is read here.
        let live = match first.take() {
            Some(deployment) => Some(deployment),
            None => get(&ctx.client, desired).await.map_err(failed(desired))?,
        };
        let Some(live) = live else {
            continue;
        };
        let ours = match &desired.namespace {
            Some(_) => owned_by(&live, &uid),
            None => made_for(&live, &namespace, &gateway.name_any()),
        };
        if ours {
            delete(&ctx.client, desired)
                .await
                .map_err(failed(desired))?;
            tracing::info!(
                gateway = key,
                "{} {} deleted: the Gateway left class {WAYPOINT_CLASS}",
                desired.kind(),
                desired.name
            );
        }
    }
    // The namespace's root cert: re-applied for the waypoints left, or deleted with the last.
    let others = waypoints_in(ctx, &namespace);
    let owners: Vec<&Gateway> = others
        .iter()
        .map(|g| &**g)
        .filter(|g| g.uid().as_deref() != Some(&uid))
        .collect();
    let root =
        render::root_cert(&namespace, &owners, &ctx.settings.root_pem).map_err(|source| {
            DeployError::Render {
                gateway: key.to_owned(),
                source,
            }
        })?;
    let Some(live) = get(&ctx.client, &root).await.map_err(failed(&root))? else {
        return Ok(());
    };
    if !owned_by(&live, &uid) {
        return Ok(());
    }
    if owners.is_empty() {
        delete(&ctx.client, &root).await.map_err(failed(&root))?;
        tracing::info!(
            gateway = key,
            "{ROOT_CERT_CONFIGMAP} deleted: no waypoint left in {namespace}"
        );
    } else {
        apply(&ctx.client, &root).await.map_err(failed(&root))?;
    }
    Ok(())
}

/// The Gateways of class `ambit-waypoint` in `namespace`, from the deployer's store.
fn waypoints_in(ctx: &Context, namespace: &str) -> Vec<Arc<Gateway>> {
    ctx.gateways
        .state()
        .into_iter()
        .filter(|g| {
            g.spec.gateway_class_name == WAYPOINT_CLASS
                && g.namespace().as_deref() == Some(namespace)
        })
        .collect()
}

/// Whether `object` is the deployer's (its `managed-by` label) and names the Gateway of `uid`
/// among its owners. Both, because another class's controller may own objects of the same
/// name for the same Gateway once it moved to that class.
fn owned_by(object: &DynamicObject, uid: &str) -> bool {
    object.labels().get(MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER)
        && object.owner_references().iter().any(|o| o.uid == uid)
}

/// Whether a cluster-scoped `object` was applied by the deployer for Gateway `namespace/name`.
fn made_for(object: &DynamicObject, namespace: &str, name: &str) -> bool {
    let labels = object.labels();
    labels.get(MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER)
        && labels.get(GATEWAY_NAMESPACE).map(String::as_str) == Some(namespace)
        && labels.get(GATEWAY_NAME).map(String::as_str) == Some(name)
}

fn api_for(client: &Client, desired: &Desired) -> Api<DynamicObject> {
    match &desired.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &desired.resource),
        None => Api::all_with(client.clone(), &desired.resource),
    }
}

async fn get(client: &Client, desired: &Desired) -> Result<Option<DynamicObject>, kube::Error> {
    api_for(client, desired).get_opt(&desired.name).await
}

async fn delete(client: &Client, desired: &Desired) -> Result<(), kube::Error> {
    match api_for(client, desired)
        .delete(&desired.name, &DeleteParams::background())
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        done => done.map(|_| ()),
    }
}

/// Whether a Service has the HBONE port (the waypoint's, not another the template adds).
fn serves_hbone(service: &DynamicObject) -> bool {
    let ports = service.data["spec"]["ports"].as_array();
    ports.into_iter().flatten().any(|p| p["port"] == HBONE_PORT)
}

/// One server-side apply, forcing conflicts: these objects are the deployer's.
async fn apply(client: &Client, desired: &Desired) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, desired);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&desired.name, &params, &Patch::Apply(&desired.object))
        .await
}

/// Logs a failed reconcile and retries that Gateway with exponential backoff.
pub fn error_policy(gateway: Arc<Gateway>, error: &DeployError, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let count = failures.entry(ObjectRef::from_obj(&*gateway)).or_insert(0);
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << (*count).min(16))
        .min(MAX_BACKOFF);
    *count += 1;
    tracing::warn!(
        gateway = format!("{}/{}", gateway.namespace().unwrap_or_default(), gateway.name_any()),
        error = %chain(error),
        retry_in = ?delay,
        "waypoint not deployed"
    );
    Action::requeue(delay)
}

async fn sweep_forever(ctx: Arc<Context>) {
    let _ = ctx.gateways.wait_until_ready().await;
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&ctx).await {
            tracing::warn!(error = %chain(&e), "waypoint sweep failed; tried again in {SWEEP_EVERY:?}");
        }
    }
}

/// Deletes the ClusterRoleBindings of Gateways that are gone, and accepts the GatewayClass.
/// Call only once the Gateway store holds a full list.
pub async fn sweep(ctx: &Context) -> Result<(), kube::Error> {
    let bindings = Api::<ClusterRoleBinding>::all(ctx.client.clone());
    let ours = bindings
        .list(&ListParams::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}")))
        .await?;
    let gateways = ctx.gateways.state();
    for name in stale_bindings(&ours.items, &gateways) {
        match bindings.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(
                binding = name,
                "deleted the ClusterRoleBinding of a Gateway that is gone"
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let classes = Api::<GatewayClass>::all(ctx.client.clone());
    if let Some(class) = classes.get_opt(WAYPOINT_CLASS).await? {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        if let Some(update) = status::class_status_update(&class, &now) {
            let patch = json!({"status": {"conditions": update.conditions}});
            classes
                .patch_status(
                    WAYPOINT_CLASS,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            tracing::info!("GatewayClass {WAYPOINT_CLASS} accepted");
        }
    }
    Ok(())
}

/// The names of `bindings` whose Gateway (by the gateway-name and gateway-namespace labels)
/// is not a waypoint Gateway in `gateways`.
pub fn stale_bindings(bindings: &[ClusterRoleBinding], gateways: &[Arc<Gateway>]) -> Vec<String> {
    let live: BTreeSet<(String, String)> = gateways
        .iter()
        .filter(|g| g.spec.gateway_class_name == WAYPOINT_CLASS)
        .map(|g| (g.namespace().unwrap_or_default(), g.name_any()))
        .collect();
    bindings
        .iter()
        .filter(|b| {
            let labels = b.labels();
            match (labels.get(GATEWAY_NAMESPACE), labels.get(GATEWAY_NAME)) {
                (Some(ns), Some(name)) => !live.contains(&(ns.clone(), name.clone())),
                _ => false,
            }
        })
        .map(|b| b.name_any())
        .collect()
}

/// An error and its sources, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
