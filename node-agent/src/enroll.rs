//! Keeps ENROLLED_NETNS equal to the model's enrolled workloads on this node.
//!
//! Enrolling or un-enrolling is one map write: the next connect from that netns is (or is no
//! longer) redirected. Connections already open are left alone, whichever way.
//!
//! netns cookies are cached by (path, device, inode) of the namespace file, so a reconcile
//! re-enters no namespace it has seen before. Entries not seen in a reconcile are dropped, so a
//! freed inode number reused by a new namespace at the same path cannot pick up a stale cookie
//! across reconciles.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ambit_common::EnrolledNetns;
use ambit_mesh::model::Model;
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
}

pub struct Enroller {
    /// The kubepods cgroup (the agent's `--cgroup`): where a pod known only by its UID is
    /// looked for (see `pod_netns`).
    pods_cgroup: PathBuf,
    /// (path, device, inode) of a netns file -> its cookie.
    cookies: HashMap<(PathBuf, u64, u64), u64>,
    /// What the last reconcile wrote into ENROLLED_NETNS, for readers on the connection path.
    names: Arc<EnrolledNames>,
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
        }
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
        for workload in model.enrolled_on_node(node) {
            let name = format!("{}/{}", workload.namespace, workload.name);
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
                map.insert(cookie, value, 0).map_err(|e| {
                    anyhow!(e).context(format!(
                        "enrolling {name}: ENROLLED_NETNS is full ({} entries)",
                        ambit_common::maps::ENROLLED_NETNS_MAX
                    ))
                })?;
                report.added += 1;
            }
        }
        *self.names.0.write().unwrap_or_else(|e| e.into_inner()) = desired.clone();
        report.enrolled = desired;
        Ok(report)
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
