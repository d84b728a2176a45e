//! The plugin as the container runtime runs it: environment and network config in, a CNI
//! result or error out.
//!
//! Ambit is chained after the cluster's own CNI plugin, which has already wired the pod's
//! network: on `ADD` the plugin passes the previous result through unchanged and only asks
//! the node agent to enroll the sandbox's network namespace. The runtime starts no container
//! before every plugin has returned, so a pod that belongs in the mesh is redirected from its
//! first connect.
//!
//! When the agent does not answer (restarting, crashed), the plugin fails closed for pods of
//! namespaces the agent last published as enrolled: it returns CNI error 11, "try again later",
//! and the runtime retries the sandbox. Every other pod starts normally.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::netns;
use crate::protocol::{PodSandbox, Reply, Request, MAX_LINE};

/// CNI versions whose results this plugin passes through (it never builds one itself).
pub const SUPPORTED_VERSIONS: [&str; 6] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "1.2.0"];

/// CNI's well-known error codes (spec, "Error").
pub mod code {
    pub const INVALID_CONFIG: u32 = 4;
    pub const INVALID_ENV: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// First plugin-specific code: the agent answered something this plugin does not expect.
    pub const UNEXPECTED_REPLY: u32 = 100;
}

/// How long the plugin waits for the agent by default. The agent may wait up to a few seconds
/// for its watch to deliver the pod.
const DEFAULT_AGENT_TIMEOUT_MS: u64 = 10_000;

/// Ambit's entry in the network config list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConf {
    pub cni_version: String,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// The node agent's socket.
    pub agent_socket: PathBuf,
    /// Namespaces the agent last published as enrolled, one per line: pods of these are held
    /// (error 11) while the agent does not answer.
    #[serde(default)]
    pub enrolled_namespaces: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub agent_timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_AGENT_TIMEOUT_MS
}

/// What the plugin prints and its exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    /// Details for the runtime's log (stderr); empty when there is nothing to say.
    pub stderr: String,
    pub exit: u8,
}

impl Outcome {
    fn success(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            exit: 0,
        }
    }

    fn error(version: &str, code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        let msg = msg.into();
        let details = details.into();
        let stderr = format!("ambit-cni: {msg}: {details}");
        let body = json!({ "cniVersion": version, "code": code, "msg": msg, "details": details });
        Self {
            stdout: body.to_string(),
            stderr,
            exit: 1,
        }
    }
}

/// Runs one invocation. `env` reads the runtime's `CNI_*` variables.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &str) -> Outcome {
    let command = env("CNI_COMMAND").unwrap_or_default();
    if command == "VERSION" {
        return Outcome::success(
            json!({ "cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS }).to_string(),
        );
    }
    let conf: PluginConf = match serde_json::from_str(stdin) {
        Ok(conf) => conf,
        Err(e) => {
            return Outcome::error(
                "1.0.0",
                code::INVALID_CONFIG,
                "invalid network config for ambit-cni",
                e.to_string(),
            )
        }
    };
    match command.as_str() {
        "ADD" => add(env, &conf),
        "DEL" => {
            del(env, &conf);
            Outcome::success(String::new())
        }
        // Enrollment is the agent's to keep; CHECK, STATUS and GC have nothing to verify here.
        "CHECK" | "STATUS" | "GC" => Outcome::success(String::new()),
        other => Outcome::error(
            &conf.cni_version,
            code::INVALID_ENV,
            "unknown CNI_COMMAND",
            format!("{other:?}"),
        ),
    }
}

/// The previous plugin's result, stamped with this config's version, or an empty result when
/// Ambit is (mis)configured as the only plugin.
fn pass_through(conf: &PluginConf) -> Outcome {
    let mut result = conf.prev_result.clone().unwrap_or_else(|| json!({}));
    if let Value::Object(fields) = &mut result {
        fields.insert("cniVersion".into(), Value::String(conf.cni_version.clone()));
    }
    Outcome::success(result.to_string())
}

fn add(env: &dyn Fn(&str) -> Option<String>, conf: &PluginConf) -> Outcome {
    let args = parse_args(&env("CNI_ARGS").unwrap_or_default());
    let (Some(namespace), Some(name)) = (args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME"))
    else {
        // Not a Kubernetes pod (a runtime's own test sandbox): nothing to enroll.
        return pass_through(conf);
    };
    let Some(netns) = env("CNI_NETNS").filter(|n| !n.is_empty()) else {
        return Outcome::error(
            &conf.cni_version,
            code::INVALID_ENV,
            "CNI_NETNS is not set",
            format!("ADD for {namespace}/{name}"),
        );
    };
    let netns = PathBuf::from(netns);
    let netns_cookie = match netns::cookie_of(&netns) {
        Ok(cookie) => cookie,
        Err(e) => return fallback(conf, namespace, name, &format!("{e}")),
    };
    let sandbox = pod_sandbox(env, &args, netns, netns_cookie);
    match ask(conf, &Request::Add(sandbox)) {
        Ok(Reply::Enrolled) | Ok(Reply::NotEnrolled { .. }) => pass_through(conf),
        Ok(Reply::TryAgain { reason }) => Outcome::error(
            &conf.cni_version,
            code::TRY_AGAIN_LATER,
            format!("Ambit's node agent cannot enroll {namespace}/{name} yet"),
            reason,
        ),
        Ok(other) => Outcome::error(
            &conf.cni_version,
            code::UNEXPECTED_REPLY,
            "unexpected reply from Ambit's node agent",
            format!("{other:?}"),
        ),
        Err(e) => fallback(conf, namespace, name, &e),
    }
}

/// The agent could not be asked: hold pods of enrolled namespaces, let the others start.
fn fallback(conf: &PluginConf, namespace: &str, name: &str, why: &str) -> Outcome {
    let enrolled = conf
        .enrolled_namespaces
        .as_deref()
        .map(|path| namespace_listed(path, namespace))
        .unwrap_or(false);
    if enrolled {
        return Outcome::error(
            &conf.cni_version,
            code::TRY_AGAIN_LATER,
            format!(
                "Ambit's node agent did not answer; {namespace}/{name} is in an enrolled namespace and waits for it"
            ),
            why.to_string(),
        );
    }
    let mut outcome = pass_through(conf);
    outcome.stderr = format!(
        "ambit-cni: node agent not reached ({why}); {namespace}/{name} is not in an enrolled namespace and starts unenrolled"
    );
    outcome
}

fn del(env: &dyn Fn(&str) -> Option<String>, conf: &PluginConf) {
    let args = parse_args(&env("CNI_ARGS").unwrap_or_default());
    if !args.contains_key("K8S_POD_NAMESPACE") || !args.contains_key("K8S_POD_NAME") {
        return;
    }
    let netns = PathBuf::from(env("CNI_NETNS").unwrap_or_default());
    // DEL may come after the namespace is gone; the agent forgets the pod by name and UID.
    let netns_cookie = if netns.as_os_str().is_empty() {
        0
    } else {
        netns::cookie_of(&netns).unwrap_or(0)
    };
    let sandbox = pod_sandbox(env, &args, netns, netns_cookie);
    // Best effort: DEL must not fail because the agent is away; its reconcile drops the entry.
    let _ = ask(conf, &Request::Del(sandbox));
}

/// The sandbox as the agent is told of it, from the runtime's `CNI_ARGS` (which name a pod).
fn pod_sandbox(
    env: &dyn Fn(&str) -> Option<String>,
    args: &BTreeMap<String, String>,
    netns: PathBuf,
    netns_cookie: u64,
) -> PodSandbox {
    let arg = |key: &str| args.get(key).cloned().unwrap_or_default();
    PodSandbox {
        namespace: arg("K8S_POD_NAMESPACE"),
        name: arg("K8S_POD_NAME"),
        uid: args.get("K8S_POD_UID").cloned(),
        netns,
        netns_cookie,
        container_id: env("CNI_CONTAINERID").unwrap_or_default(),
    }
}

/// One request, one reply, on the agent's socket.
fn ask(conf: &PluginConf, request: &Request) -> Result<Reply, String> {
    let path = &conf.agent_socket;
    let timeout = Some(Duration::from_millis(conf.agent_timeout_ms.max(1)));
    let mut stream =
        UnixStream::connect(path).map_err(|e| format!("connecting to {}: {e}", path.display()))?;
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| format!("setting timeouts on {}: {e}", path.display()))?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("writing to {}: {e}", path.display()))?;
    let mut reply = String::new();
    BufReader::new(std::io::Read::take(stream, MAX_LINE as u64))
        .read_line(&mut reply)
        .map_err(|e| format!("no reply from {}: {e}", path.display()))?;
    serde_json::from_str(reply.trim()).map_err(|e| format!("unreadable reply {reply:?}: {e}"))
}

/// `CNI_ARGS`: `K1=V1;K2=V2`.
pub fn parse_args(text: &str) -> BTreeMap<String, String> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn namespace_listed(path: &Path, namespace: &str) -> bool {
    std::fs::read_to_string(path)
        .map(|text| text.lines().any(|line| line.trim() == namespace))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
