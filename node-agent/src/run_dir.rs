//! The agent's run directory, `<run-dir>/<node>/`: what it publishes as files, so that the
//! inspector and the CNI plugin read it without talking to the agent, even after it stopped.
//!
//! - `workloads.json`: every workload the model places on this node and its state (enrolled
//!   and how, waiting and why, or left out and why: host network, opted out, namespace not
//!   labelled). The pinned maps only hold what is enrolled; this says what is not.
//! - `enrolled-namespaces` and `cni.sock`: see `cni`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ambit_mesh::model::Model;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::enroll::{EnrollReport, Enroller};

pub const WORKLOADS: &str = "workloads.json";

pub fn node_dir(run_dir: &Path, node: &str) -> PathBuf {
    run_dir.join(node)
}

/// Creates the node's run directory (root only: it holds the plugin's socket).
pub fn prepare(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the run directory {}", dir.display()))
}

/// Temp file and rename: readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
}

/// The agent's view of this node's workloads, as of `written_unix_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsView {
    pub node: String,
    pub written_unix_secs: u64,
    pub agent_pid: u32,
    pub workloads: Vec<WorkloadState>,
    /// With `--client-address preserve`: what the return path covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_path: Option<ReturnPathView>,
}

/// The return path as the agent last set it up (see `return_path`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnPathView {
    /// The reply mark and route table, e.g. `0x1000` and 15008.
    pub mark: String,
    pub table: u32,
    /// Pod addresses delivered to from their callers' addresses.
    pub kept_pods: Vec<std::net::IpAddr>,
    /// Interfaces carrying `steer_replies` (towards this node's pods).
    pub reply_interfaces: Vec<String>,
    /// Interfaces carrying `capture_hbone` (towards other nodes).
    pub hbone_interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadState {
    /// `namespace/name`.
    pub workload: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_cookie: Option<u64>,
    /// Enrolled: how its namespace was found. Otherwise: why it is not enrolled.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Enrolled,
    /// Belongs in the mesh, but its namespace is not found yet (or is gone).
    Waiting,
    NotEnrolled,
}

/// The view after a reconcile that produced `report`.
pub fn view(
    model: &Model,
    node: &str,
    report: &EnrollReport,
    enroller: &Enroller,
) -> WorkloadsView {
    let cookie_of: BTreeMap<&str, u64> = report
        .enrolled
        .iter()
        .map(|(cookie, name)| (name.as_str(), *cookie))
        .collect();
    let mut workloads: Vec<WorkloadState> = model
        .workloads()
        .iter()
        .filter(|w| w.node == node)
        .map(|w| {
            let name = format!("{}/{}", w.namespace, w.name);
            let enrollment = model.enrollment(w);
            let (state, detail) = if !enrollment.is_enrolled() {
                (State::NotEnrolled, enrollment.to_string())
            } else if let Some(why) = report.failed.get(&name) {
                (State::Waiting, why.clone())
            } else if enroller.announced(w) {
                (
                    State::Enrolled,
                    "sandbox announced by the CNI plugin".into(),
                )
            } else if w.netns.is_some() {
                (
                    State::Enrolled,
                    "network namespace file in the config".into(),
                )
            } else {
                (State::Enrolled, "a process in the pod's cgroup".into())
            };
            WorkloadState {
                netns_cookie: cookie_of.get(name.as_str()).copied(),
                workload: name,
                state,
                detail,
            }
        })
        .collect();
    for name in &report.provisional {
        workloads.push(WorkloadState {
            netns_cookie: cookie_of.get(name.as_str()).copied(),
            workload: name.clone(),
            state: State::Enrolled,
            detail: "sandbox announced by the CNI plugin; pod not in the model yet (namespace label decides)".into(),
        });
    }
    workloads.sort_by(|a, b| a.workload.cmp(&b.workload));
    WorkloadsView {
        node: node.to_string(),
        written_unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        agent_pid: std::process::id(),
        workloads,
        return_path: None,
    }
}

pub fn publish(dir: &Path, view: &WorkloadsView) -> Result<()> {
    let json = serde_json::to_vec_pretty(view)?;
    write_atomic(&dir.join(WORKLOADS), &json)
}

/// The last view an agent published for `node`, if any.
pub fn read(run_dir: &Path, node: &str) -> Result<Option<WorkloadsView>> {
    let path = node_dir(run_dir, node).join(WORKLOADS);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
