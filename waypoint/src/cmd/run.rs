//! `ambit-waypoint run`: the waypoint as a mesh workload, behind HBONE.
//!
//! Reads the mesh model the node agents read (the config file, or the Kubernetes API with
//! `--config-source kube`), loads its SVID (files in `--identity-dir`, or from the CA with
//! `--ca-addr`, proving itself with node credentials or, on a cluster, its service-account
//! token), serves HBONE on `--hbone`, and is ready on `--readiness` once the SVID and the
//! route table are loaded. On a cluster it also writes the verdict on each of its routes
//! into the route's status (see [`crate::status`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambit_mesh::config::kube::routes::ApiRouteStatus;
use ambit_mesh::config::{ConfigSource, KubeSettings, SourceKind};
use ambit_mesh::hbone::{Pool, PoolSettings, ServerSettings};
use ambit_mesh::identity::{
    load_roots, load_trust_bundle, CaClient, CertRotator, CertStore, SpiffeId,
};
use ambit_mesh::model::Model;
use ambit_waypoint::hbone::{self, Front, HboneConnector, WaypointIdentity};
use ambit_waypoint::status::StatusReporter;
use ambit_waypoint::{Config, RouteVerdict, Waypoint};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{admin, local};

/// How often the identity files and the route file are checked for changes.
const POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    /// Where the mesh model comes from: `file` (`--config`) or `kube` (the Kubernetes API).
    #[arg(long, env = "AMBIT_CONFIG_SOURCE", default_value = "file")]
    config_source: SourceKind,
    /// The mesh config file (the YAML the node agents read); re-read when it changes.
    #[arg(long, required_if_eq("config_source", "file"))]
    config: Option<PathBuf>,
    /// The node this waypoint runs on, for `--config-source kube`.
    #[arg(long, env = "AMBIT_NODE_NAME", required_if_eq("config_source", "kube"))]
    node_name: Option<String>,
    /// The SPIFFE trust domain, for `--config-source kube` (the file names its own).
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = ambit_mesh::model::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// The waypoint's Gateway name.
    #[arg(long)]
    name: String,
    /// The namespace whose Services this waypoint serves.
    #[arg(long)]
    namespace: String,
    /// The waypoint's service account (its SPIFFE ID's `sa`); defaults to `--name`.
    #[arg(long)]
    service_account: Option<String>,
    /// Address for HBONE (mTLS, HTTP/2 CONNECT).
    #[arg(long, default_value = "0.0.0.0:15008")]
    hbone: SocketAddr,
    /// Address for Prometheus metrics (`GET /metrics`).
    #[arg(long, default_value = "0.0.0.0:15020")]
    metrics: SocketAddr,
    /// Address for readiness (`GET /healthz/ready`).
    #[arg(long, default_value = "0.0.0.0:15021")]
    readiness: SocketAddr,
    /// Directory with the mesh root (`root.pem`) and either the waypoint's SVID (`svid.pem`,
    /// `svid-key.pem`, re-read on change) or, with `--ca-addr`, the node credentials
    /// (`node.pem`, `node-key.pem`) to ask the CA with.
    #[arg(long, required_unless_present = "ca_token_file")]
    identity_dir: Option<PathBuf>,
    /// The mesh CA (`ambit-controller serve`, port 15012) as host:port: get and renew the
    /// SVID from it.
    #[arg(long, env = "AMBIT_CA_ADDR")]
    ca_addr: Option<String>,
    /// The waypoint's projected service-account token (audience `ambit-ca`) to ask the CA
    /// with, re-read at each request (on a cluster, instead of `--identity-dir`).
    #[arg(long, env = "AMBIT_CA_TOKEN_FILE", requires_all = ["ca_root", "ca_addr"], conflicts_with = "identity_dir")]
    ca_token_file: Option<PathBuf>,
    /// The mesh root certificate (PEM), with `--ca-token-file`.
    #[arg(long, env = "AMBIT_CA_ROOT", requires = "ca_token_file")]
    ca_root: Option<PathBuf>,
    /// A waypoint config file (`httpRoutes`, `tcpRoutes`, `services` for traffic policy and
    /// `appProtocol`), until the mesh config carries HTTPRoutes; re-read when it changes.
    #[arg(long)]
    routes: Option<PathBuf>,
    /// The HBONE port of node agents.
    #[arg(long, default_value_t = ambit_mesh::hbone::HBONE_PORT)]
    node_hbone_port: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = KubeSettings {
        trust_domain: args.trust_domain.clone(),
        ..KubeSettings::new(args.node_name.clone().unwrap_or_default())
    };
    let source = ConfigSource::start(args.config_source, args.config.as_ref(), settings).await?;
    let models = source.subscribe();
    let trust_domain = source.current().trust_domain().to_string();
    let service_account = args.service_account.as_deref().unwrap_or(&args.name);
    let id = SpiffeId::new(&trust_domain, &args.namespace, service_account)
        .context("the waypoint's SPIFFE ID (--namespace, --service-account)")?;
    let identity = start_identity(&args, id)?;

    let pool = Pool::new(
        PoolSettings::default(),
        identity.roots(),
        identity.cert_source(),
    );
    let pool_stats = pool.stats();
    let connector = HboneConnector::new(pool, identity.clone(), models.clone())
        .with_hbone_port(args.node_hbone_port);
    let waypoint = Arc::new(Waypoint::new(Arc::new(connector), Default::default()));
    let routes_loaded = Arc::new(AtomicBool::new(false));
    let reporter = match args.config_source {
        SourceKind::File => None,
        SourceKind::Kube => {
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes client config (in-cluster or kubeconfig)")?;
            Some(StatusReporter::new(
                ApiRouteStatus::new(client),
                &args.namespace,
                &args.name,
            ))
        }
    };
    tokio::spawn(follow(
        waypoint.clone(),
        models.clone(),
        args.routes.clone(),
        routes_loaded.clone(),
        reporter,
    ));
    let ready_identity = identity.clone();
    tokio::spawn(admin::serve_readiness(
        move || ready_identity.is_ready() && routes_loaded.load(Ordering::Relaxed),
        args.readiness,
    ));

    let front = Front {
        waypoint: waypoint.clone(),
        model: models,
        namespace: args.namespace.clone(),
    };
    let server = hbone::server(&identity, front, ServerSettings::default())
        .context("building the HBONE server's TLS configuration")?;
    let server_stats = server.stats();
    tokio::spawn(admin::serve_metrics(
        waypoint,
        move || hbone::metrics::render(&server_stats, &pool_stats),
        args.metrics,
    ));
    let listener = TcpListener::bind(args.hbone)
        .await
        .with_context(|| format!("binding the HBONE listener on {}", args.hbone))?;
    tracing::info!(gateway = %args.name, namespace = %args.namespace, id = %identity.id(), hbone = %args.hbone, "waypoint serving");
    server.run(listener).await;
    drop(source);
    Ok(())
}

/// Applies the model and the route file now and whenever either changes; a route file that
/// does not parse leaves the previous config in force. With a reporter, each route's verdict
/// is written to its status.
async fn follow(
    waypoint: Arc<Waypoint>,
    mut models: watch::Receiver<Arc<Model>>,
    routes: Option<PathBuf>,
    loaded: Arc<AtomicBool>,
    mut reporter: Option<StatusReporter<ApiRouteStatus>>,
) {
    let mut extra = Config::default();
    let mut have_routes = routes.is_none();
    let mut stamp = None;
    loop {
        if let Some(path) = routes.as_deref() {
            let now = local::modified(path);
            if now != stamp || !have_routes {
                stamp = now;
                match local::read_config(path) {
                    Ok(config) => {
                        extra = config;
                        have_routes = true;
                    }
                    Err(e) => tracing::warn!(
                        error = format!("{e:#}"),
                        "route file not applied; the previous routes stay in force"
                    ),
                }
            }
        }
        let model = models.borrow_and_update().clone();
        let verdicts = apply(&waypoint, &model, &extra);
        loaded.store(have_routes, Ordering::Relaxed);
        if let Some(reporter) = reporter.as_mut() {
            reporter.report(&model, &verdicts).await;
        }
        tokio::select! {
            changed = models.changed() => if changed.is_err() { return },
            () = wait_for_change(routes.as_deref(), stamp) => {}
        }
    }
}

/// The one place the engine's config is assembled: the mesh model's HTTPRoutes, then any
/// from the route file (which also adds traffic policies and TCP routes).
fn apply(waypoint: &Waypoint, model: &Model, extra: &Config) -> Vec<RouteVerdict> {
    let routes: Vec<_> = model
        .http_routes()
        .iter()
        .chain(&extra.http_routes)
        .cloned()
        .collect();
    let config = hbone::engine_config(model, &routes, extra);
    let verdicts = waypoint.apply(&config);
    let accepted = verdicts.iter().filter(|v| v.accepted).count();
    tracing::info!(
        services = config.services.len(),
        accepted,
        rejected = verdicts.len() - accepted,
        "routes loaded"
    );
    verdicts
}

async fn wait_for_change(path: Option<&Path>, stamp: Option<std::time::SystemTime>) {
    let Some(path) = path else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(POLL).await;
        if local::modified(path) != stamp {
            return;
        }
    }
}

/// The waypoint's identity, with its SVID kept current: from files, or from the CA with node
/// credentials or a service-account token.
fn start_identity(args: &Args, id: SpiffeId) -> anyhow::Result<Arc<WaypointIdentity>> {
    /// Where the SVID comes from.
    enum Svid {
        Files(PathBuf),
        Ca(Box<CaClient>),
    }
    let (bundle, svid) = match (&args.identity_dir, &args.ca_token_file, &args.ca_root) {
        (Some(dir), _, _) => {
            let bundle = load_trust_bundle(dir).context("reading the mesh root")?;
            let svid = match &args.ca_addr {
                Some(ca) => {
                    let client = CaClient::from_dir(ca, dir).with_context(|| {
                        format!("reading node credentials from {}", dir.display())
                    })?;
                    Svid::Ca(Box::new(client))
                }
                None => Svid::Files(dir.clone()),
            };
            (bundle, svid)
        }
        (None, Some(token), Some(root)) => {
            let ca = args
                .ca_addr
                .as_deref()
                .context("--ca-token-file needs --ca-addr")?;
            let bundle = load_roots(root).context("reading the mesh root (--ca-root)")?;
            let client = CaClient::with_token(ca, root, token)
                .context("preparing the CA client (--ca-token-file)")?;
            (bundle, Svid::Ca(Box::new(client)))
        }
        _ => anyhow::bail!("no identity: --identity-dir, or --ca-token-file with --ca-root"),
    };
    let roots = ambit_mesh::tls::roots_from_der(&bundle)
        .context("the mesh root is not a usable trust anchor")?;
    let identity = WaypointIdentity::new(id, roots);
    match svid {
        Svid::Ca(client) => from_ca(&identity, *client),
        Svid::Files(dir) => {
            hbone::watch_files(identity.clone(), dir, POLL);
        }
    }
    Ok(identity)
}

/// Gets the SVID from the CA and keeps it renewed. The CA signs it only if this waypoint may
/// have it: a workload of its service account on the node of the node credentials, or the
/// service account its token belongs to.
fn from_ca(identity: &Arc<WaypointIdentity>, client: CaClient) {
    let store = CertStore::new();
    let (wanted, wanted_rx) = watch::channel(BTreeSet::from([identity.id().clone()]));
    CertRotator::new(store.clone(), client, wanted_rx).spawn();
    let identity = identity.clone();
    tokio::spawn(async move {
        let _wanted = wanted;
        let mut installed = None;
        loop {
            if let Some(svid) = store.get(identity.id()) {
                if installed
                    .as_ref()
                    .is_none_or(|last| !Arc::ptr_eq(last, &svid))
                {
                    match identity.install(&svid) {
                        Ok(()) => {
                            tracing::info!(id = %identity.id(), "waypoint SVID from the CA installed")
                        }
                        Err(e) => tracing::warn!(error = %e, "waypoint SVID from the CA refused"),
                    }
                    installed = Some(svid);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
