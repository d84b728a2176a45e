//! `serve`: the CA over TLS. From a file, callers are node agents with node certificates and
//! placement comes from the mesh config (polled, and re-read on SIGHUP). On a cluster,
//! callers may also authenticate with a service-account token, and placement is read from
//! the API server at each request (see `ambit_mesh::identity::KubeAuth`), and the waypoint
//! deployer runs next to the CA (see [`crate::deployer`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ambit_mesh::config::FileSource;
use ambit_mesh::identity::{serve, server_config, Ca, CaService, ClientAuth, KubeAuth};
use anyhow::{Context, Result};

use crate::deployer;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// `--config-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The mesh config file; callers present node certificates.
    File,
    /// The Kubernetes API (in-cluster service account, else kubeconfig).
    Kube,
}

/// Where callers and placement are checked.
pub enum Placement {
    File(PathBuf),
    Kube {
        trust_domain: String,
        /// `(namespace, name)` of the node agents' service account.
        node_agents: (String, String),
        waypoints: Waypoints,
    },
}

/// What the waypoint deployer makes waypoints from (the mesh root comes from the CA).
pub struct Waypoints {
    pub template: deployer::render::Template,
    pub image: String,
}

pub struct Spec {
    pub ca_dir: PathBuf,
    pub source: Placement,
    pub listen: SocketAddr,
    pub ready_file: Option<PathBuf>,
}

pub async fn run(spec: Spec) -> Result<()> {
    // Kept alive while serving: the file source's watcher stops when dropped.
    let mut file_source = None;
    let mut deployer_task = None;
    let (ca, service, clients) = match spec.source {
        Placement::File(path) => {
            let source = Arc::new(
                FileSource::start(&path)
                    .await
                    .with_context(|| format!("loading the mesh config {}", path.display()))?,
            );
            let trust_domain = source.current().trust_domain().to_string();
            let ca = Arc::new(Ca::load(&spec.ca_dir, &trust_domain)?);
            let service = CaService::new(ca.clone(), source.subscribe());
            file_source = Some(source);
            (ca, service, ClientAuth::NodeCertificate)
        }
        Placement::Kube {
            trust_domain,
            node_agents,
            waypoints,
        } => {
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes client config (in-cluster or kubeconfig)")?;
            let ca = Arc::new(Ca::load(&spec.ca_dir, &trust_domain)?);
            tracing::info!(
                node_agents = format!("{}/{}", node_agents.0, node_agents.1),
                "callers may authenticate with service-account tokens (TokenReview)"
            );
            let settings = deployer::Settings {
                template: waypoints.template,
                image: waypoints.image,
                root_pem: ca.root_pem().to_owned(),
            };
            deployer_task = Some(tokio::spawn(deployer::run(client.clone(), settings)));
            let service = CaService::kube(ca.clone(), KubeAuth::new(client, node_agents));
            (ca, service, ClientAuth::NodeCertificateOrToken)
        }
    };
    let tls = server_config(&ca, clients)?;
    let listener = TcpListener::bind(spec.listen)
        .await
        .with_context(|| format!("listening on {}", spec.listen))?;
    tracing::info!(listen = %spec.listen, trust_domain = ca.trust_domain(), "serving the mesh CA");
    if let Some(path) = &spec.ready_file {
        std::fs::write(path, b"ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let mut hup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let reloader = file_source.clone();
    let reloads = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &reloader {
                Some(source) => source.reload_now(),
                None => tracing::info!("SIGHUP: placement is read from the API server, no reload"),
            }
        }
    });
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let served = serve(listener, service, tls, shutdown).await;
    reloads.abort();
    if let Some(task) = deployer_task {
        task.abort();
    }
    drop(file_source);
    Ok(served?)
}
