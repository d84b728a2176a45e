//! What the plugin and the node agent say to each other on the agent's unix socket.
//!
//! One JSON line each way per connection: the plugin is run once per pod sandbox, so there is
//! nothing to multiplex, and a line of JSON is easy to read in a trace. The socket is the
//! agent's (`<run-dir>/<node>/cni.sock`, root only).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest request or reply line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// A pod sandbox, as the container runtime describes it to CNI plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSandbox {
    pub namespace: String,
    pub name: String,
    /// `K8S_POD_UID`, when the runtime passes it (containerd and CRI-O do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The sandbox's network namespace file (`CNI_NETNS`), for logs.
    pub netns: PathBuf,
    /// Its cookie, read by the plugin inside the namespace. 0 on `Del` when the namespace is
    /// already gone.
    pub netns_cookie: u64,
    pub container_id: String,
}

impl PodSandbox {
    /// `namespace/name`, as logs and the inspector name workloads.
    pub fn workload(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Request {
    /// A sandbox was created: enroll it now if its pod belongs in the mesh.
    Add(PodSandbox),
    /// A sandbox is being torn down.
    Del(PodSandbox),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Reply {
    /// The namespace is in ENROLLED_NETNS: the pod's first connect is redirected.
    Enrolled,
    /// The pod stays out of the mesh; `reason` says why (the enrollment decision's words).
    NotEnrolled { reason: String },
    /// The agent cannot decide yet (for example it has not seen the pod's namespace): the
    /// runtime should try the sandbox again.
    TryAgain { reason: String },
    /// Done (`Del`).
    Forgotten,
}
