//! The agent's side of the CNI plugin (`ambit-cni`): closes the start-up race.
//!
//! Without the plugin a pod is enrolled when a reconcile finds a process in its cgroup, which
//! can be after its first connects. With it, the runtime's ADD for each new sandbox reaches
//! this socket before any container of the pod starts; the agent decides from its model and
//! enrolls the sandbox's namespace on the spot.
//!
//! The agent also keeps the plugin in the node's CNI config (`--cni-conf-dir`, checked at every
//! reconcile because the cluster's plugin may rewrite its file) and takes it out when it
//! stops, and publishes the namespaces it enrolls, which the plugin falls back on while the
//! agent does not answer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_cni::chain::{self, Installed};
use ambit_cni::protocol::{PodSandbox, Reply, Request, MAX_LINE};
use ambit_mesh::model::Model;
use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::enroll::Enroller;
use crate::kernel_maps::KernelMaps;

/// How long an ADD waits for the agent's watch to deliver its pod. The API server has the pod
/// bound to this node before the kubelet creates its sandbox, so this is watch latency only.
const POD_WAIT: Duration = Duration::from_secs(5);
/// Longest one plugin exchange may take before the agent hangs up.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The plugin's socket in the agent's run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("cni.sock")
}

/// The enrolled namespaces, one per line, for the plugin's fallback.
pub fn namespaces_path(run_dir: &Path) -> PathBuf {
    run_dir.join("enrolled-namespaces")
}

/// Where the plugin is installed from and into.
#[derive(Debug, Clone)]
pub struct Install {
    /// The plugin binary to copy (shipped next to the agent's).
    plugin: PathBuf,
    bin_dir: PathBuf,
    conf_dir: PathBuf,
    /// (size, modification time, inode) of the installed binary when it was last found
    /// equal to ours: while it stays so, a reconcile does not read both files again.
    verified: Option<(u64, std::time::SystemTime, u64)>,
}

impl Install {
    pub fn new(plugin: PathBuf, bin_dir: PathBuf, conf_dir: PathBuf) -> Self {
        Self {
            plugin,
            bin_dir,
            conf_dir,
            verified: None,
        }
    }

    fn installed_stamp(&self) -> Option<(u64, std::time::SystemTime, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(self.bin_dir.join(chain::PLUGIN_TYPE)).ok()?;
        Some((meta.len(), meta.modified().ok()?, meta.ino()))
    }

    /// Ambit's entry in the node's network config list.
    fn entry(&self, run_dir: &Path) -> serde_json::Value {
        json!({
            "type": chain::PLUGIN_TYPE,
            "agentSocket": socket_path(run_dir),
            "enrolledNamespaces": namespaces_path(run_dir),
        })
    }

    /// Copies the binary and puts the entry last in the primary config; logs what changed.
    pub fn ensure(&mut self, run_dir: &Path) {
        if self.verified.is_none() || self.installed_stamp() != self.verified {
            self.verified = None;
            match chain::install_binary(&self.plugin, &self.bin_dir) {
                Ok(written) => {
                    if written {
                        tracing::info!(dir = %self.bin_dir.display(), "installed the CNI plugin binary");
                    }
                    self.verified = self.installed_stamp();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "installing the CNI plugin binary failed; retrying at the next reconcile")
                }
            }
        }
        match chain::install(&self.conf_dir, &self.entry(run_dir)) {
            Ok(Installed::Written(path)) => {
                tracing::info!(config = %path.display(), "chained ambit-cni into the node's CNI config")
            }
            Ok(Installed::Unchanged(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "chaining ambit-cni failed; new pods are enrolled by reconcile only, retrying")
            }
        }
    }

    /// Takes the entry out, so that a node without an agent never waits on one.
    pub fn remove(&self) {
        match chain::uninstall(&self.conf_dir) {
            Ok(files) if !files.is_empty() => {
                tracing::info!(?files, "took ambit-cni out of the node's CNI config")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "taking ambit-cni out of the CNI config failed"),
        }
    }
}

/// Writes the namespaces the model enrolls, when they changed since the last write.
#[derive(Debug, Default)]
pub struct NamespacesFile {
    written: Option<BTreeSet<String>>,
}

impl NamespacesFile {
    pub fn publish(&mut self, run_dir: &Path, model: &Model) {
        let enrolled: BTreeSet<String> = model
            .namespaces()
            .iter()
            .filter(|ns| model.namespace_enrolls(&ns.name))
            .map(|ns| ns.name.clone())
            .collect();
        if self.written.as_ref() == Some(&enrolled) {
            return;
        }
        let text: String = enrolled.iter().map(|ns| format!("{ns}\n")).collect();
        match crate::run_dir::write_atomic(&namespaces_path(run_dir), text.as_bytes()) {
            Ok(()) => self.written = Some(enrolled),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "publishing enrolled namespaces failed"
            ),
        }
    }
}

/// What a request handler needs: the enroller is shared with the reconcile loop.
pub struct Handler {
    pub node: String,
    pub enroller: Arc<Mutex<Enroller>>,
    pub maps: Arc<KernelMaps>,
    pub model: watch::Receiver<Arc<Model>>,
}

/// Binds the plugin's socket (root only), replacing one a previous agent left.
pub fn bind(run_dir: &Path) -> Result<UnixListener> {
    let path = socket_path(run_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, handler: Arc<Handler>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a CNI plugin connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(stream, &handler)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "CNI plugin request failed"),
                Err(_) => tracing::warn!("CNI plugin request timed out"),
            }
        });
    }
}

async fn exchange(stream: UnixStream, handler: &Handler) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_LINE as u64))
        .read_line(&mut line)
        .await
        .context("reading the request")?;
    let request: Request = serde_json::from_str(line.trim())
        .with_context(|| format!("unreadable request {:?}", line.trim()))?;
    let reply = handle(handler, request).await;
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    write
        .write_all(out.as_bytes())
        .await
        .context("writing the reply")?;
    Ok(())
}

/// Decides and acts on one request; every outcome is logged with the pod's name.
pub async fn handle(handler: &Handler, request: Request) -> Reply {
    match request {
        Request::Add(sandbox) => {
            let reply = add(handler, &sandbox).await;
            match &reply {
                Reply::Enrolled => {
                    tracing::info!(workload = %sandbox.workload(), netns = sandbox.netns_cookie, "enrolled at sandbox creation (CNI)")
                }
                Reply::NotEnrolled { reason } => {
                    tracing::debug!(workload = %sandbox.workload(), %reason, "CNI ADD: not enrolled")
                }
                Reply::TryAgain { reason } => {
                    tracing::warn!(workload = %sandbox.workload(), %reason, "CNI ADD: asked the runtime to try again")
                }
                Reply::Forgotten => {}
            }
            reply
        }
        Request::Del(sandbox) => {
            let model = handler.model.borrow().clone();
            let mut enroller = handler.enroller.lock().unwrap_or_else(|e| e.into_inner());
            enroller.forget_sandbox(&sandbox);
            if let Err(e) = enroller.reconcile(&handler.maps, &model, &handler.node) {
                tracing::warn!(error = format!("{e:#}"), "reconcile after CNI DEL failed");
            }
            tracing::debug!(workload = %sandbox.workload(), "sandbox torn down (CNI DEL)");
            Reply::Forgotten
        }
    }
}

async fn add(handler: &Handler, sandbox: &PodSandbox) -> Reply {
    let model = wait_for_pod(handler, sandbox).await;
    let pod = model
        .workload(&sandbox.namespace, &sandbox.name)
        .filter(|w| {
            w.node == handler.node
                && (sandbox.uid.is_none() || w.uid.is_none() || w.uid == sandbox.uid)
        });
    let enroll = match pod {
        Some(pod) => {
            let enrollment = model.enrollment(pod);
            if !enrollment.is_enrolled() {
                return Reply::NotEnrolled {
                    reason: enrollment.to_string(),
                };
            }
            true
        }
        // Not delivered yet: the namespace's label decides until the pod arrives.
        None if model.namespace(&sandbox.namespace).is_none() => {
            return Reply::TryAgain {
                reason: format!(
                    "the agent has seen neither pod {} nor its namespace yet",
                    sandbox.workload()
                ),
            }
        }
        None => model.namespace_enrolls(&sandbox.namespace),
    };
    if !enroll {
        return Reply::NotEnrolled {
            reason: format!(
                "namespace {} is not labelled for the mesh",
                sandbox.namespace
            ),
        };
    }
    let mut enroller = handler.enroller.lock().unwrap_or_else(|e| e.into_inner());
    match enroller.enroll_sandbox(&handler.maps, sandbox) {
        Ok(()) => Reply::Enrolled,
        Err(e) => Reply::TryAgain {
            reason: format!("{e:#}"),
        },
    }
}

/// The model once it has the pod, or as it stands after `POD_WAIT`.
async fn wait_for_pod(handler: &Handler, sandbox: &PodSandbox) -> Arc<Model> {
    let mut model_rx = handler.model.clone();
    let deadline = tokio::time::Instant::now() + POD_WAIT;
    loop {
        let model = model_rx.borrow_and_update().clone();
        if model.workload(&sandbox.namespace, &sandbox.name).is_some() {
            return model;
        }
        match tokio::time::timeout_at(deadline, model_rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return model,
        }
    }
}
