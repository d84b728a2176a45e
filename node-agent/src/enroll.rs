//! Keeps ENROLLED_NETNS equal to the model's enrolled workloads on this node.
//!
//! Enrolling or un-enrolling is one map write: the next connect from that netns is (or is no
//! longer) redirected. Connections already open are left alone, whichever way.
//!
//! netns cookies are cached by (path, device, inode) of the namespace file, so a reconcile
//! re-enters no namespace it has seen before. Entries not seen in a reconcile are dropped, so a
//! freed inode number reused by a new namespace at the same path cannot pick up a stale cookie
//! across reconciles.
//!
//! A sandbox announced by the CNI plugin (see `cni`) is enrolled at once by the cookie the
//! plugin read, before its pod has a process in its cgroup or even reaches the model. That
//! cookie stays the pod's for as long as the model keeps the pod. A pod the model does not
//! know yet is held by its namespace's label alone for `PROVISIONAL_HOLD`, after which only
//! the model decides.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ambit_cni::protocol::PodSandbox;
use ambit_common::EnrolledNetns;
use ambit_mesh::model::{Model, Workload};
use anyhow::{anyhow, Result};

use crate::kernel_maps::KernelMaps;
use crate::{netns, pod_netns};

/// The outcome of one reconcile, for logs and the readiness page.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnrollReport {
    /// cookie -> `namespace/name` now enrolled.
    pub enrolled: BTreeMap<u64, String>,
    pub added: usize,
    pub removed: usize,
    /// `namespace/name` -> why it could not be enrolled (netns gone, no netns given, …).
    pub failed: BTreeMap<String, String>,
    /// `namespace/name` of sandboxes enrolled on their namespace's label alone: the CNI
    /// plugin announced them before the model had their pod.
    pub provisional: Vec<String>,
}

/// How long a sandbox whose pod the model does not know stays enrolled on its namespace's
/// label alone. The agent's pod watch delivers a pod well before its sandbox exists; a pod
/// still unknown after this is not coming (or the watch is broken, which readiness reports).
pub const PROVISIONAL_HOLD: Duration = Duration::from_secs(60);

/// A sandbox the CNI plugin announced, with the cookie it read inside it.
#[derive(Debug, Clone)]
struct Announced {
    sandbox: PodSandbox,
    since: Instant,
}

impl Announced {
    fn is_for(&self, workload: &Workload) -> bool {
        match (&self.sandbox.uid, &workload.uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.sandbox.namespace == workload.namespace && self.sandbox.name == workload.name,
        }
    }
}

pub struct Enroller {
    /// The kubepods cgroup (the agent's `--cgroup`): where a pod known only by its UID is
    /// looked for (see `pod_netns`).
    pods_cgroup: PathBuf,
    /// (path, device, inode) of a netns file -> its cookie.
    cookies: HashMap<(PathBuf, u64, u64), u64>,
    /// What the last reconcile wrote into ENROLLED_NETNS, for readers on the connection path.
    names: Arc<EnrolledNames>,
    /// Sandboxes announced by the CNI plugin, newest last.
    announced: Vec<Announced>,
}

/// netns cookie -> `namespace/name` of the enrolled workloads, as last written to the kernel.
///
/// The proxy names each connection's origin from here: an in-memory read, where asking the
/// kernel map would cost a syscall and a lock shared with the enroller per connection.
#[derive(Debug, Default)]
pub struct EnrolledNames(RwLock<BTreeMap<u64, String>>);

impl EnrolledNames {
    pub fn name_of(&self, netns_cookie: u64) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&netns_cookie)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Enroller {
    pub fn new(pods_cgroup: PathBuf) -> Self {
        Self {
            pods_cgroup,
            cookies: HashMap::new(),
            names: Arc::default(),
            announced: Vec::new(),
        }
    }

    /// Enrolls a sandbox the CNI plugin announced, now: one map write, before the runtime
    /// starts the pod's containers. The next reconciles keep it (see the module docs).
    pub fn enroll_sandbox(&mut self, maps: &KernelMaps, sandbox: &PodSandbox) -> Result<()> {
        let name = sandbox.workload();
        {
            let mut map = maps
                .enrolled
                .lock()
                .map_err(|_| anyhow!("enrollment map lock poisoned"))?;
            map.insert(sandbox.netns_cookie, EnrolledNetns::new(&name), 0)
                .map_err(|e| map_full(&name, e))?;
        }
        self.names
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sandbox.netns_cookie, name);
        // A re-created sandbox replaces the pod's earlier one.
        self.announced.retain(|a| !same_pod(&a.sandbox, sandbox));
        self.announced.push(Announced {
            sandbox: sandbox.clone(),
            since: Instant::now(),
        });
        Ok(())
    }

    /// Forgets a sandbox being torn down; the next reconcile takes its cookie out.
    pub fn forget_sandbox(&mut self, sandbox: &PodSandbox) {
        self.announced.retain(|a| {
            !(same_pod(&a.sandbox, sandbox)
                && (sandbox.netns_cookie == 0 || a.sandbox.netns_cookie == sandbox.netns_cookie))
        });
    }

    /// The names this enroller publishes after each reconcile.
    pub fn names(&self) -> Arc<EnrolledNames> {
        Arc::clone(&self.names)
    }

    pub fn reconcile(
        &mut self,
        maps: &KernelMaps,
        model: &Model,
        node: &str,
    ) -> Result<EnrollReport> {
        let mut report = EnrollReport::default();
        let mut desired: BTreeMap<u64, String> = BTreeMap::new();
        let mut seen = HashMap::new();
        let mut claimed = vec![false; self.announced.len()];
        for workload in model.enrolled_on_node(node) {
            let name = format!("{}/{}", workload.namespace, workload.name);
            if let Some(i) = self.announced.iter().rposition(|a| a.is_for(workload)) {
                claimed[i] = true;
                desired.insert(self.announced[i].sandbox.netns_cookie, name);
                continue;
            }
            // A file source names the netns; Kubernetes names the pod UID, whose cgroup
            // leads to a process in the pod's netns.
            let found;
            let path = match (workload.netns.as_deref(), workload.uid.as_deref()) {
                (Some(path), _) => path,
                (None, Some(uid)) => {
                    match pod_netns::pod_netns(&self.pods_cgroup, Path::new("/proc"), uid) {
                        Ok(path) => {
                            found = path;
                            &found
                        }
                        Err(e) => {
                            report.failed.insert(name, e.to_string());
                            continue;
                        }
                    }
                }
                (None, None) => {
                    report.failed.insert(
                        name,
                        "neither a network namespace path nor a pod UID in the config".into(),
                    );
                    continue;
                }
            };
            match self.cookie(path, &mut seen) {
                Ok(cookie) => {
                    desired.insert(cookie, name);
                }
                Err(e) => {
                    report.failed.insert(name, e.to_string());
                }
            }
        }
        self.cookies = seen;
        // Announced sandboxes no enrolled workload claimed: kept only while their pod is
        // unknown to the model, recent, and in a namespace labelled for the mesh.
        let mut kept = Vec::new();
        for (announced, claimed) in std::mem::take(&mut self.announced).into_iter().zip(claimed) {
            let sandbox = &announced.sandbox;
            let known = model
                .workloads()
                .iter()
                .any(|w| w.node == node && announced.is_for(w));
            if claimed {
                kept.push(announced);
            } else if !known
                && announced.since.elapsed() < PROVISIONAL_HOLD
                && model.namespace_enrolls(&sandbox.namespace)
            {
                desired.insert(sandbox.netns_cookie, sandbox.workload());
                report.provisional.push(sandbox.workload());
                kept.push(announced);
            }
        }
        self.announced = kept;

        let mut map = maps
            .enrolled
            .lock()
            .map_err(|_| anyhow!("enrollment map lock poisoned"))?;
        let current: Vec<u64> = map.keys().filter_map(|k| k.ok()).collect();
        for cookie in current {
            if !desired.contains_key(&cookie) {
                map.remove(&cookie)?;
                report.removed += 1;
            }
        }
        for (cookie, name) in &desired {
            let value = EnrolledNetns::new(name);
            if map.get(cookie, 0).ok() != Some(value) {
                map.insert(cookie, value, 0)
                    .map_err(|e| map_full(name, e))?;
                report.added += 1;
            }
        }
        *self.names.0.write().unwrap_or_else(|e| e.into_inner()) = desired.clone();
        report.enrolled = desired;
        Ok(report)
    }

    /// Whether the CNI plugin's announcement is what enrolls this workload.
    pub fn announced(&self, workload: &Workload) -> bool {
        self.announced.iter().any(|a| a.is_for(workload))
    }

    fn cookie(
        &mut self,
        path: &Path,
        seen: &mut HashMap<(PathBuf, u64, u64), u64>,
    ) -> Result<u64, netns::NetnsError> {
        let meta = std::fs::metadata(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                netns::NetnsError::Gone {
                    path: path.to_owned(),
                }
            } else {
                netns::NetnsError::Open {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let id = (path.to_owned(), meta.dev(), meta.ino());
        let cookie = match self.cookies.get(&id) {
            Some(cookie) => *cookie,
            None => netns::cookie_of(path)?,
        };
        seen.insert(id, cookie);
        Ok(cookie)
    }
}

/// A failed ENROLLED_NETNS insert: the map is bounded, and being full is why an insert fails.
fn map_full(name: &str, e: aya::maps::MapError) -> anyhow::Error {
    anyhow!(e).context(format!(
        "enrolling {name}: ENROLLED_NETNS is full ({} entries)",
        ambit_common::maps::ENROLLED_NETNS_MAX
    ))
}

/// The same pod: by UID when both sides know it, else by namespace and name.
fn same_pod(a: &PodSandbox, b: &PodSandbox) -> bool {
    match (&a.uid, &b.uid) {
        (Some(x), Some(y)) => x == y,
        _ => a.namespace == b.namespace && a.name == b.name,
    }
}
