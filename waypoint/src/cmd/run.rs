//! `ambit-waypoint run`: the waypoint as a mesh workload, behind HBONE.
//!
//! Reads the mesh config file the node agents read (nodes, workloads, Services), loads its
//! SVID (files in `--identity-dir`, or from the CA with `--ca-addr`), serves HBONE on
//! `--hbone`, and is ready on `--readiness` once the SVID and the route table are loaded.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambit_mesh::config::FileSource;
use ambit_mesh::hbone::{Pool, PoolSettings, ServerSettings};
use ambit_mesh::identity::{load_trust_bundle, CaClient, CertRotator, CertStore, SpiffeId};
use ambit_mesh::model::Model;
use ambit_waypoint::hbone::{self, Front, HboneConnector, WaypointIdentity};
use ambit_waypoint::{Config, Waypoint};
use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{admin, local};

/// How often the identity files and the route file are checked for changes.
const POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    /// The mesh config file (the YAML the node agents read); re-read when it changes.
    #[arg(long)]
    config: PathBuf,
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
    #[arg(long)]
    identity_dir: PathBuf,
    /// The mesh CA (`ambit-controller serve`, port 15012): get and renew the SVID from it.
    #[arg(long)]
    ca_addr: Option<SocketAddr>,
    /// A waypoint config file (`httpRoutes`, `tcpRoutes`, `services` for traffic policy and
    /// `appProtocol`), until the mesh config carries HTTPRoutes; re-read when it changes.
    #[arg(long)]
    routes: Option<PathBuf>,
    /// The HBONE port of node agents.
    #[arg(long, default_value_t = ambit_mesh::hbone::HBONE_PORT)]
    node_hbone_port: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let source = FileSource::start(&args.config)
        .await
        .with_context(|| format!("loading the mesh config {}", args.config.display()))?;
    let models = source.subscribe();
    let trust_domain = source.current().trust_domain().to_string();
    let service_account = args.service_account.as_deref().unwrap_or(&args.name);
    let id = SpiffeId::new(&trust_domain, &args.namespace, service_account)
        .context("the waypoint's SPIFFE ID (--namespace, --service-account)")?;
    let bundle = load_trust_bundle(&args.identity_dir).context("reading the mesh root")?;
    let roots = ambit_mesh::tls::roots_from_der(&bundle)
        .context("the mesh root is not a usable trust anchor")?;
    let identity = WaypointIdentity::new(id, roots);
    match args.ca_addr {
        None => {
            hbone::watch_files(identity.clone(), args.identity_dir.clone(), POLL);
        }
        Some(ca) => from_ca(&identity, ca, &args.identity_dir)?,
    }

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
    tokio::spawn(follow(
        waypoint.clone(),
        models.clone(),
        args.routes.clone(),
        routes_loaded.clone(),
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
/// does not parse leaves the previous config in force.
async fn follow(
    waypoint: Arc<Waypoint>,
    mut models: watch::Receiver<Arc<Model>>,
    routes: Option<PathBuf>,
    loaded: Arc<AtomicBool>,
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
        apply(&waypoint, &model, &extra);
        loaded.store(have_routes, Ordering::Relaxed);
        tokio::select! {
            changed = models.changed() => if changed.is_err() { return },
            () = wait_for_change(routes.as_deref(), stamp) => {}
        }
    }
}

/// The one place the engine's config is assembled: the mesh model's HTTPRoutes, then any
/// from the route file (which also adds traffic policies and TCP routes).
fn apply(waypoint: &Waypoint, model: &Model, extra: &Config) {
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

/// Gets the SVID from the CA with the node credentials in `dir`, and keeps it renewed. The CA
/// signs it only if the mesh model lists a workload with this service account on that node.
fn from_ca(identity: &Arc<WaypointIdentity>, ca: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    let client = CaClient::from_dir(ca, dir)
        .with_context(|| format!("reading node credentials from {}", dir.display()))?;
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
    Ok(())
}
