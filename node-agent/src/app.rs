//! `ambit-node run`: wires the config source, the kernel redirect, enrollment and the outbound
//! proxy together, and reacts to config changes and signals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_mesh::config::KubeSettings;
use ambit_mesh::model::Model;
use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use ambit_mesh::hbone::{CertSource, HboneServer, Pool, PoolSettings, ServerSettings};

use crate::enroll::Enroller;
use crate::identity::{CaCredentials, Identities};
use crate::inbound::LocalPods;
use crate::kernel_maps::{pin_dir, KernelMaps};
use crate::outbound::{Outbound, OutboundStats, Tunnel};
use crate::redirect::{self, RedirectSpec};
use crate::return_path::{ReturnPath, Routing};
use crate::{cni, exclusions, metrics, netns, preflight, records, run_dir};
use ambit_mesh::config::{ConfigSource, SourceKind};

/// How often pending records of connects that never completed are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How long start-up waits for the first certificates of local workloads.
const CERTIFICATES_WAIT: Duration = Duration::from_secs(10);
/// How often enrollment is reconciled without a config change: a pod's netns can appear
/// after its config entry (sandbox not created yet) or vanish (pod deleted).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);

/// `ambit-node run`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// This node's name, as in the config's `nodes` or Kubernetes' Node (also names the pin
    /// directory).
    #[arg(long, alias = "node-name", env = "AMBIT_NODE_NAME")]
    node: String,
    /// Where the mesh config comes from: a YAML file (`--config`) or the Kubernetes API.
    #[arg(long, env = "AMBIT_CONFIG_SOURCE", default_value = "file")]
    config_source: SourceKind,
    /// Mesh config file (YAML), for `--config-source file`; reloaded when it changes or on
    /// SIGHUP.
    #[arg(long, env = "AMBIT_CONFIG", required_if_eq("config_source", "file"))]
    config: Option<PathBuf>,
    /// The SPIFFE trust domain, for `--config-source kube` (the file names its own).
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = ambit_mesh::model::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// The pods' cgroup v2 subtree to attach to; it must also contain the agent.
    /// Default: <cgroup2 mount>/kubepods.slice or <cgroup2 mount>/kubepods.
    #[arg(long, env = "AMBIT_CGROUP")]
    cgroup: Option<PathBuf>,
    #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// The agent's address as pods reach it. Default: the node's address in the config.
    #[arg(long, env = "AMBIT_AGENT_IP")]
    agent_ip: Option<IpAddr>,
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Join same-node sockets socket-to-socket with sk_msg (off by default: an application
    /// socket in the SOCKHASH gets the kernel's sockmap receive path, where a blocking
    /// read() can return EAGAIN while another thread writes the same socket; epoll-driven
    /// applications are unaffected). See README, "Same-node fast path".
    #[arg(long)]
    fastpath: bool,
    /// Threads that carry traffic. 1 runs everything on one thread (no cross-thread wake-ups:
    /// the cheapest per byte when the node's cores are busy with its pods); 0 means one per
    /// CPU the agent may run on.
    #[arg(long, env = "AMBIT_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Forward the kernel programs' debug log (costly; for debugging only).
    #[arg(long)]
    kernel_debug_log: bool,
    /// Write this file once the agent serves (a readiness signal for scripts).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Bound on redirected connections per node (live plus connecting). Past it, new
    /// connects from enrolled pods fail (EPERM) and `orig_dst_map_full` counts them;
    /// the mesh is never bypassed. Applies when the maps are first created.
    #[arg(long)]
    max_connections: Option<u32>,
    /// Prometheus metrics (GET /metrics); 0 disables.
    #[arg(long, default_value_t = 15020)]
    metrics_port: u16,
    /// Readiness (GET /healthz/ready); 0 disables.
    #[arg(long, default_value_t = 15021)]
    readiness_port: u16,
    /// The mesh CA (ambit-controller serve), as host:port. With credentials (--identity-dir,
    /// or --ca-token-file and --ca-root), mesh connections are carried over mTLS (HBONE);
    /// without, they are relayed in plaintext.
    #[arg(long, env = "AMBIT_CA_ADDR")]
    ca_addr: Option<String>,
    /// This node's credentials for the CA: node.pem, node-key.pem, root.pem
    /// (ambit-controller issue-node-cert).
    #[arg(long, env = "AMBIT_IDENTITY_DIR", conflicts_with = "ca_token_file")]
    identity_dir: Option<PathBuf>,
    /// A projected service-account token for the audience `ambit-ca`, re-read at each request
    /// (on a cluster, instead of --identity-dir).
    #[arg(long, env = "AMBIT_CA_TOKEN_FILE", requires = "ca_root")]
    ca_token_file: Option<PathBuf>,
    /// The mesh root certificate (PEM), with --ca-token-file.
    #[arg(long, env = "AMBIT_CA_ROOT", requires = "ca_token_file")]
    ca_root: Option<PathBuf>,
    /// HBONE (mTLS HTTP/2 CONNECT) listener for other agents.
    #[arg(long, default_value_t = 15008)]
    hbone_port: u16,
    /// Lifetime of workload certificates to ask the CA for, in seconds (default: the CA's).
    #[arg(long)]
    svid_ttl_secs: Option<u64>,
    /// Where the agent publishes its view of this node's workloads (for `inspect`) and serves
    /// the CNI plugin: `<run-dir>/<node>/`.
    #[arg(long, env = "AMBIT_RUN_DIR", default_value = "/run/ambit")]
    run_dir: PathBuf,
    /// Serve the CNI plugin (`ambit-cni`) on `<run-dir>/<node>/cni.sock`: new pods are enrolled
    /// when their sandbox is created, before their containers start.
    #[arg(long)]
    cni: bool,
    /// Keep `ambit-cni` chained in the node's CNI config in this directory (the host's
    /// /etc/cni/net.d); it is taken out again when the agent stops.
    #[arg(long, requires = "cni", requires = "cni_bin_dir")]
    cni_conf_dir: Option<PathBuf>,
    /// Where to install the `ambit-cni` binary (the host's /opt/cni/bin).
    #[arg(long, requires = "cni_conf_dir")]
    cni_bin_dir: Option<PathBuf>,
    /// The `ambit-cni` binary to install. Default: next to this binary.
    #[arg(long)]
    cni_plugin: Option<PathBuf>,
    /// The source address pods see on connections the mesh delivers to them: `preserve`, the
    /// caller's (from the tunnel's `forwarded` header; a tc program and a policy rule bring
    /// the pod's replies back to the agent), or `agent`, the agent's. `--fastpath` delivers
    /// from the agent's address.
    #[arg(long, env = "AMBIT_CLIENT_ADDRESS", value_enum, default_value_t = ClientAddress::Preserve)]
    client_address: ClientAddress,
    #[command(flatten)]
    reply_routing: ReplyRouting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAddress {
    Preserve,
    Agent,
}

/// The mark and route table that bring pods' replies back to the agent
/// (`--client-address preserve`); `ambit-node unload` takes the same flags.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReplyRouting {
    /// The packet mark of pods' replies to the agent's transparent connections (one or more
    /// bits no other component of the node uses).
    #[arg(long, env = "AMBIT_REPLY_MARK", default_value = "0x1000", value_parser = parse_mark)]
    reply_mark: u32,
    /// The route table marked packets are looked up in; it holds one local default route.
    #[arg(long, env = "AMBIT_REPLY_TABLE", default_value_t = 15008)]
    reply_table: u32,
}

impl ReplyRouting {
    pub fn routing(&self) -> Routing {
        Routing {
            mark: self.reply_mark,
            table: self.reply_table,
            priority: REPLY_RULE_PRIORITY,
        }
    }
}

/// Ahead of the main table (32766) and of CNIs' per-pod source rules.
const REPLY_RULE_PRIORITY: u32 = 1000;

fn parse_mark(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(0) => Err("the mark must not be 0".into()),
        Ok(mark) => Ok(mark),
        Err(e) => Err(format!("{text}: {e}")),
    }
}

impl RunArgs {
    /// The async runtime this agent runs on (`--workers`).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        ambit_mesh::runtime::build(self.workers)
    }
}

pub async fn run(spec: RunArgs) -> Result<()> {
    let cgroup = match &spec.cgroup {
        Some(cgroup) => cgroup.clone(),
        None => default_cgroup()?,
    };
    let checks = preflight::run(&preflight::PreflightSpec {
        bpffs: spec.bpffs.clone(),
        cgroup: Some(cgroup.clone()),
    });
    let failed = preflight::failures(&checks);
    if !failed.is_empty() {
        let owned: Vec<_> = failed.into_iter().cloned().collect();
        bail!(
            "this node cannot run Ambit's redirect:\n{}",
            preflight::render(&owned)
        );
    }

    let kube_settings = KubeSettings {
        trust_domain: spec.trust_domain.clone(),
        ..KubeSettings::new(spec.node.clone())
    };
    let source = Arc::new(
        ConfigSource::start(spec.config_source, spec.config.as_ref(), kube_settings).await?,
    );
    let mut model_rx = source.subscribe();
    let model = model_rx.borrow_and_update().clone();
    let (agent_ip4, agent_ip6) = agent_addresses(&spec, &model)?;
    let preserve = spec.client_address == ClientAddress::Preserve && !spec.fastpath;
    if spec.client_address == ClientAddress::Preserve && spec.fastpath {
        tracing::info!("--fastpath: pods see the agent's address, not their callers'");
    }
    let routing = spec.reply_routing.routing();

    let redirect = redirect::load(&RedirectSpec {
        pin_dir: pin_dir(&spec.bpffs, &spec.node),
        cgroup: cgroup.clone(),
        agent_ip4,
        agent_ip6,
        agent_netns_cookie: netns::current_cookie().context("reading the agent's netns cookie")?,
        outbound_port: spec.outbound_port,
        fastpath: spec.fastpath,
        kernel_log_level: if spec.kernel_debug_log { 4 } else { 0 },
        max_connections: spec.max_connections,
        reply_mark: if preserve { routing.mark } else { 0 },
        // Only an mTLS agent serves HBONE.
        hbone_port: if preserve && spec.ca_addr.is_some() {
            spec.hbone_port
        } else {
            0
        },
    })?;
    let credentials = match (&spec.identity_dir, &spec.ca_token_file, &spec.ca_root) {
        (Some(dir), None, _) => Some(CaCredentials::NodeDir(dir.clone())),
        (None, Some(token_file), Some(root_file)) => Some(CaCredentials::Token {
            token_file: token_file.clone(),
            root_file: root_file.clone(),
        }),
        _ => None,
    };
    let identities = match (&spec.ca_addr, credentials) {
        (Some(ca), Some(credentials)) => {
            let ids = Identities::start(
                ca,
                &credentials,
                model.trust_domain(),
                spec.svid_ttl_secs.map(Duration::from_secs),
            )?;
            ids.follow(&model, &spec.node);
            Some(Arc::new(ids))
        }
        (None, None) => {
            tracing::warn!("no mesh CA configured (--ca-addr with --identity-dir or --ca-token-file): connections between mesh workloads are relayed in PLAINTEXT");
            None
        }
        (Some(_), None) => {
            bail!("--ca-addr needs credentials: --identity-dir, or --ca-token-file and --ca-root")
        }
        (None, Some(_)) => bail!("CA credentials given without --ca-addr"),
    };
    let redirect::Redirect { mut ebpf, maps } = redirect;
    let maps = Arc::new(maps);
    spawn_kernel_log(&mut ebpf);
    let return_path = if preserve {
        Some(ReturnPath::install(&mut ebpf, routing)?)
    } else {
        None
    };
    let steered = return_path.as_ref().map(ReturnPath::steered);
    let steered_pods = steered.clone();

    let mut sweeper = records::Sweeper::default();
    sweeper.sweep(&maps).context("sweeping stale records")?;

    let node_run_dir = run_dir::node_dir(&spec.run_dir, &spec.node);
    run_dir::prepare(&node_run_dir)?;
    let enroller = Arc::new(Mutex::new(Enroller::new(cgroup)));
    let names = enroller.lock().unwrap_or_else(|e| e.into_inner()).names();
    let mut reconciler = Reconciler {
        enroller: Arc::clone(&enroller),
        maps: Arc::clone(&maps),
        node: spec.node.clone(),
        run_dir: node_run_dir.clone(),
        cni: spec.cni,
        namespaces: cni::NamespacesFile::default(),
        install: cni_install(&spec)?,
        kernel: ebpf,
        return_path,
    };
    reconciler.apply_model(&model);
    if spec.cni {
        let listener = cni::bind(&node_run_dir)?;
        let handler = Arc::new(cni::Handler {
            node: spec.node.clone(),
            enroller: Arc::clone(&enroller),
            maps: Arc::clone(&maps),
            model: model_rx.clone(),
        });
        tokio::spawn(cni::serve(listener, handler));
        tracing::info!(socket = %cni::socket_path(&node_run_dir).display(), "serving the CNI plugin");
    }

    let source_ip = agent_ip4.map(IpAddr::V4).or(agent_ip6.map(IpAddr::V6));
    let mut hbone_server = None;
    if let Some(ids) = &identities {
        let tls = ambit_mesh::tls::server_config(
            Arc::clone(ids) as _,
            Arc::clone(&ids.roots),
            &ids.trust_domain,
        )
        .context("building the HBONE server's TLS configuration")?;
        let pods = LocalPods {
            node: spec.node.clone(),
            model: model_rx.clone(),
            source: source_ip,
            transparent: steered.clone(),
            certificates: Some({
                let store = Arc::clone(&ids.store);
                Arc::new(move |id: &ambit_mesh::identity::SpiffeId| store.certified_key(id))
            }),
        };
        let server = HboneServer::new(tls, pods, ServerSettings::default());
        hbone_server = Some(server.stats());
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, spec.hbone_port));
        let listener = if preserve {
            crate::dial::transparent_listener(addr)
        } else {
            TcpListener::bind(addr).await
        }
        .with_context(|| format!("binding the HBONE listener on port {}", spec.hbone_port))?;
        tokio::spawn(server.run(listener));
    }
    let tunnel = identities.as_ref().map(|ids| {
        let store = Arc::clone(&ids.store);
        let certs: CertSource = Arc::new(move |id| store.certified_key(id));
        Tunnel {
            pool: Pool::new(PoolSettings::default(), Arc::clone(&ids.roots), certs),
            identities: Arc::clone(ids),
        }
    });
    let listeners = bind_outbound(spec.outbound_port, agent_ip6.is_some()).await?;
    let stats = Arc::new(OutboundStats::default());
    let outbound = Arc::new(Outbound {
        node: spec.node.clone(),
        maps: Arc::clone(&maps),
        names: Arc::clone(&names),
        model: model_rx.clone(),
        fastpath: spec.fastpath,
        stats: Arc::clone(&stats),
        source: source_ip,
        balancer: Arc::default(),
        tunnel,
        transparent: steered.clone(),
    });
    for listener in listeners {
        tokio::spawn(Arc::clone(&outbound).serve(listener));
    }
    let observed = Arc::new(metrics::Observed {
        maps: Arc::clone(&maps),
        enrolled: names,
        outbound: Arc::clone(&stats),
        config: Arc::clone(&source),
        hbone_server,
        hbone_pool: outbound.tunnel.as_ref().map(|t| t.pool.stats()),
        steered: steered_pods,
    });
    if spec.metrics_port != 0 {
        let listener = metrics::bind(spec.metrics_port).await.context("metrics")?;
        tokio::spawn(metrics::serve(
            listener,
            "/metrics",
            "text/plain; version=0.0.4",
            Arc::clone(&observed),
            metrics::render,
        ));
    }
    if spec.readiness_port != 0 {
        let listener = metrics::bind(spec.readiness_port)
            .await
            .context("readiness")?;
        tokio::spawn(metrics::serve(
            listener,
            "/healthz/ready",
            "text/plain",
            observed,
            metrics::readiness,
        ));
    }
    // Ready means able to serve both ways: inbound handshakes need the local workloads' SVIDs.
    if let Some(ids) = &identities {
        if !ids.all_ready(CERTIFICATES_WAIT).await {
            tracing::warn!(?ids, "not every local workload has a certificate yet (is the CA reachable?); serving anyway");
        }
    }
    if let Some(path) = &spec.ready_file {
        std::fs::write(path, "ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(node = %spec.node, port = spec.outbound_port, fastpath = spec.fastpath, "ambit-node ready");

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.tick().await;
    let mut reconcile_tick = tokio::time::interval(RECONCILE_INTERVAL);
    reconcile_tick.tick().await;
    loop {
        tokio::select! {
            changed = model_rx.changed() => {
                if changed.is_err() {
                    bail!("the config source stopped");
                }
                let model = model_rx.borrow_and_update().clone();
                tracing::info!("config changed; reconciling");
                reconciler.apply_model(&model);
                if let Some(ids) = &identities {
                    ids.follow(&model, &spec.node);
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                source.reload_now();
            }
            _ = reconcile_tick.tick() => {
                let model = model_rx.borrow().clone();
                reconciler.reconcile(&model, false);
            }
            _ = sweep.tick() => {
                if let Err(e) = sweeper.sweep(&maps) {
                    tracing::warn!(error = %e, "sweeping records failed");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // The pinned links and maps stay: enrolled pods stay captured (and fail closed) until an
    // agent is back, and `ambit-node unload` removes everything. The CNI plugin goes: a node
    // without an agent must not hold new pods for one.
    if let Some(install) = &reconciler.install {
        install.remove();
    }
    tracing::info!("stopping; the redirect stays attached (ambit-node unload removes it)");
    Ok(())
}

/// `--cni-conf-dir` and `--cni-bin-dir`, with the plugin binary they install.
fn cni_install(spec: &RunArgs) -> Result<Option<cni::Install>> {
    let (Some(conf_dir), Some(bin_dir)) = (&spec.cni_conf_dir, &spec.cni_bin_dir) else {
        return Ok(None);
    };
    let plugin = match &spec.cni_plugin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating the agent's binary")?
            .with_file_name(ambit_cni::chain::PLUGIN_TYPE),
    };
    if !plugin.is_file() {
        bail!(
            "the CNI plugin binary {} does not exist (build ambit-cni, or pass --cni-plugin)",
            plugin.display()
        );
    }
    Ok(Some(cni::Install::new(
        plugin,
        bin_dir.clone(),
        conf_dir.clone(),
    )))
}

/// Keeps the kernel's enrollment, and what the agent publishes about it, equal to the model.
struct Reconciler {
    enroller: Arc<Mutex<Enroller>>,
    maps: Arc<KernelMaps>,
    node: String,
    run_dir: PathBuf,
    cni: bool,
    namespaces: cni::NamespacesFile,
    install: Option<cni::Install>,
    /// The loaded kernel programs (the return path attaches one per pod interface).
    kernel: aya::Ebpf,
    return_path: Option<ReturnPath>,
}

impl Reconciler {
    fn apply_model(&mut self, model: &Model) {
        if let Err(e) = exclusions::apply(&self.maps, model.redirect()) {
            tracing::error!(
                error = format!("{e:#}"),
                "updating redirect exclusions failed; previous exclusions stay"
            );
        }
        self.reconcile(model, true);
    }

    /// Puts the return path's programs where this node's enrolled pods and the other nodes
    /// are now (see `return_path`).
    fn reconcile_return_path(&mut self, model: &Model) {
        let Some(return_path) = &mut self.return_path else {
            return;
        };
        let node = &self.node;
        let pods = model
            .enrolled_on_node(node)
            .flat_map(|w| w.ips.iter().copied());
        // Waypoints serve HBONE on their own addresses: never capture it.
        let own_hbone = model
            .enrolled_on_node(node)
            .filter(|w| {
                w.labels
                    .contains_key(ambit_mesh::model::labels::GATEWAY_NAME)
            })
            .flat_map(|w| w.ips.iter().copied())
            .collect();
        // Where other nodes' traffic comes from: their addresses, and one pod address
        // each (overlays route pods through their own devices).
        let remote = model
            .nodes()
            .iter()
            .filter(|n| &n.name != node)
            .flat_map(|n| {
                let pod = model
                    .workloads()
                    .iter()
                    .find(|w| w.node == n.name)
                    .and_then(|w| w.ips.first().copied());
                std::iter::once(n.address).chain(pod)
            });
        return_path.reconcile(&mut self.kernel, pods, &own_hbone, remote);
    }

    /// Reconciles enrollment. The periodic run (`always_log` false) logs only when the
    /// enrolled set changed, so a pod whose netns is missing is reported once per change, not
    /// every tick.
    fn reconcile(&mut self, model: &Model, always_log: bool) {
        self.reconcile_return_path(model);
        let view = {
            let mut enroller = self.enroller.lock().unwrap_or_else(|e| e.into_inner());
            match enroller.reconcile(&self.maps, model, &self.node) {
                Ok(report) => {
                    if always_log || report.added + report.removed > 0 {
                        log_report(&report);
                    }
                    let mut view = run_dir::view(model, &self.node, &report, &enroller);
                    view.return_path = self.return_path.as_ref().map(ReturnPath::view);
                    Some(view)
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "enrollment failed");
                    None
                }
            }
        };
        if let Some(view) = view {
            if let Err(e) = run_dir::publish(&self.run_dir, &view) {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "publishing the workloads view failed"
                );
            }
        }
        if self.cni {
            self.namespaces.publish(&self.run_dir, model);
        }
        if let Some(install) = &mut self.install {
            install.ensure(&self.run_dir);
        }
    }
}

fn log_report(report: &crate::enroll::EnrollReport) {
    for (workload, why) in &report.failed {
        tracing::warn!(%workload, reason = %why, "not enrolled");
    }
    tracing::info!(
        enrolled = report.enrolled.len(),
        added = report.added,
        removed = report.removed,
        failed = report.failed.len(),
        provisional = report.provisional.len(),
        "enrollment reconciled"
    );
}

/// The agent's addresses as pods reach it: `--agent-ip` or the node's address in the config.
fn agent_addresses(spec: &RunArgs, model: &Model) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let ip = match spec.agent_ip {
        Some(ip) => ip,
        None => match model.node(&spec.node) {
            Some(node) => node.address,
            None => bail!(
                "node {} is not in the config's `nodes` and --agent-ip was not given (known nodes: {})",
                spec.node,
                model.nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    Ok(match ip {
        IpAddr::V4(v4) => (Some(v4), None),
        IpAddr::V6(v6) => (None, Some(v6)),
    })
}

/// Accept queue of the outbound listener. A node's pods open connections in bursts (a client
/// pool warming up); a short queue overflows and the kernel drops handshakes that the
/// clients already consider complete. The kernel caps it at net.core.somaxconn.
const OUTBOUND_BACKLOG: u32 = 65_535;

async fn bind_outbound(port: u16, ipv6: bool) -> Result<Vec<TcpListener>> {
    let v4 = tokio::net::TcpSocket::new_v4()?;
    v4.set_reuseaddr(true)?;
    v4.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .with_context(|| {
            format!("binding the outbound listener on port {port} (another agent running?)")
        })?;
    let mut listeners = vec![v4.listen(OUTBOUND_BACKLOG)?];
    if ipv6 {
        let v6 = tokio::net::TcpSocket::new_v6()?;
        v6.set_reuseaddr(true)?;
        // IPv6 only: IPv4 is served by the listener above.
        set_v6only(&v6)?;
        v6.bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))?;
        listeners.push(v6.listen(OUTBOUND_BACKLOG)?);
    }
    Ok(listeners)
}

fn set_v6only(socket: &tokio::net::TcpSocket) -> Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid fd and option buffer of the declared size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting IPV6_V6ONLY");
    }
    Ok(())
}

/// Forwards the kernel programs' aya-log records to our log.
fn spawn_kernel_log(ebpf: &mut aya::Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            tracing::debug!(error = %e, "kernel programs' log not available");
            return;
        }
    };
    // SAFETY: the logger owns its ring buffer's fd, which stays open and unchanged for as long
    // as the AsyncFd holds the logger.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut logger = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll the kernel log");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// The kubelet's pod cgroup: `kubepods.slice` (systemd driver) or `kubepods` (cgroupfs).
fn default_cgroup() -> Result<PathBuf> {
    let Some(mount) = preflight::cgroup2_mount() else {
        bail!("no cgroup v2 mount found; pass --cgroup (run `ambit-node preflight`)");
    };
    for name in ["kubepods.slice", "kubepods"] {
        let dir = mount.join(name);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!(
        "no kubepods cgroup under {}; pass --cgroup with the pods' cgroup subtree",
        mount.display()
    )
}
