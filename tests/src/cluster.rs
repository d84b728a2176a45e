//! A mesh on the sandbox: node agents, the mesh config they read, and what tests ask of them.
//!
//! The config file is built from `ambit_mesh` types and written atomically (temp file +
//! rename), exactly as an operator should; agents pick it up on their own.
//!
//! # Usage
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ambit_e2e::cluster::MeshCluster;
//! let mut mesh = MeshCluster::new("doc")?;
//! mesh.add_node("node1")?;
//! let client = mesh.add_pod("node1", "shop", "client")?;
//! mesh.enroll_namespace("shop");
//! mesh.start_agents()?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ambit_mesh::model::labels::DATAPLANE_MODE;
use ambit_mesh::model::{ClusterState, Model, Namespace, Node as MeshNode, Workload};
use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::sandbox::{Node, Pod, Process, Sandbox};
use crate::testapp::{parse_report, EchoReport, TestApp, WhoamiLine};

mod waypoint;
pub use waypoint::{WAYPOINT_HBONE_PORT, WAYPOINT_METRICS_PORT, WAYPOINT_READINESS_PORT};

/// How long an agent may take to load its programs and serve.
const AGENT_START: Duration = Duration::from_secs(20);
/// Longest a client command may run in a test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MeshCluster {
    pub sb: Sandbox,
    pub app: TestApp,
    agent_bin: PathBuf,
    config_path: PathBuf,
    state: ClusterState,
    agents: BTreeMap<String, Process>,
    /// Extra `ambit-node run` arguments for agents started afterwards (e.g. `--fastpath`).
    pub agent_args: Vec<String>,
    /// Run a mesh CA and carry mesh connections over mTLS (default). Without it agents relay
    /// in plaintext.
    pub mtls: bool,
    ca: Option<Process>,
    /// Running waypoints by `namespace/name`.
    waypoints: BTreeMap<String, Process>,
}

impl MeshCluster {
    pub fn new(label: &str) -> Result<MeshCluster> {
        let sb = Sandbox::new(label)?;
        let config_path = sb.dir().join("mesh.yaml");
        Ok(MeshCluster {
            sb,
            app: TestApp::locate()?,
            agent_bin: crate::binary("ambit-node")?,
            config_path,
            state: ClusterState::default(),
            agents: BTreeMap::new(),
            agent_args: Vec::new(),
            mtls: true,
            ca: None,
            waypoints: BTreeMap::new(),
        })
    }

    pub fn config_path(&self) -> &PathBuf {
        &self.config_path
    }

    pub fn add_node(&mut self, short: &str) -> Result<Node> {
        let node = self.sb.add_node(short)?;
        self.state.nodes.push(MeshNode {
            name: node.name.clone(),
            address: IpAddr::V4(node.address),
        });
        Ok(node)
    }

    pub fn node(&self, short: &str) -> Result<Node> {
        self.sb
            .node(short)
            .cloned()
            .with_context(|| format!("no node {short}"))
    }

    /// A pod in the sandbox and the matching workload in the config (service account = name).
    pub fn add_pod(&mut self, node: &str, namespace: &str, name: &str) -> Result<Pod> {
        let pod = self.sb.add_pod(node, namespace, name)?;
        if !self.state.namespaces.iter().any(|n| n.name == namespace) {
            self.state.namespaces.push(Namespace {
                name: namespace.to_string(),
                labels: BTreeMap::new(),
            });
        }
        self.state.workloads.push(Workload {
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid: None,
            service_account: name.to_string(),
            node: pod.node_name.clone(),
            ips: vec![IpAddr::V4(pod.ip)],
            netns: Some(pod.netns_path.clone()),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            host_network: false,
        });
        Ok(pod)
    }

    /// Labels a namespace `ambit.dev/dataplane-mode: ambient` (call `write_config` to apply).
    pub fn enroll_namespace(&mut self, namespace: &str) {
        self.set_namespace_label(namespace, Some("ambient"));
    }

    pub fn unenroll_namespace(&mut self, namespace: &str) {
        self.set_namespace_label(namespace, None);
    }

    fn set_namespace_label(&mut self, namespace: &str, mode: Option<&str>) {
        let ns = match self
            .state
            .namespaces
            .iter_mut()
            .find(|n| n.name == namespace)
        {
            Some(ns) => ns,
            None => {
                self.state.namespaces.push(Namespace {
                    name: namespace.to_string(),
                    labels: BTreeMap::new(),
                });
                self.state.namespaces.last_mut().expect("just pushed")
            }
        };
        match mode {
            Some(mode) => ns
                .labels
                .insert(DATAPLANE_MODE.to_string(), mode.to_string()),
            None => ns.labels.remove(DATAPLANE_MODE),
        };
    }

    /// Labels a pod `ambit.dev/dataplane-mode: none` (per-pod opt-out).
    pub fn opt_out_pod(&mut self, pod: &Pod) {
        if let Some(w) = self
            .state
            .workloads
            .iter_mut()
            .find(|w| w.namespace == pod.namespace && w.name == pod.name)
        {
            w.labels
                .insert(DATAPLANE_MODE.to_string(), "none".to_string());
        }
    }

    pub fn state_mut(&mut self) -> &mut ClusterState {
        &mut self.state
    }

    /// Writes the config (validated first, so a test cannot write a config the agent rejects
    /// by accident) with temp file + rename.
    pub fn write_config(&self) -> Result<()> {
        let model =
            Model::new(self.state.clone()).context("the test's cluster state is invalid")?;
        let yaml = serde_yaml::to_string(&model).context("serializing the mesh config")?;
        self.write_config_text(&yaml)
    }

    /// Writes arbitrary text as the config (for bad-input tests).
    pub fn write_config_text(&self, text: &str) -> Result<()> {
        let tmp = self.config_path.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.config_path).context("renaming the config into place")
    }

    /// Writes the config and starts an agent on every node (and, with `mtls`, the mesh CA
    /// first), waiting until each serves.
    pub fn start_agents(&mut self) -> Result<()> {
        self.write_config()?;
        if self.mtls && self.ca.is_none() {
            self.start_ca()?;
        }
        let nodes: Vec<String> = self
            .sb
            .nodes()
            .iter()
            .map(|n| n.short_name.clone())
            .collect();
        for node in nodes {
            self.start_agent(&node)?;
        }
        Ok(())
    }

    /// The mesh CA's address: node1's address, port 15012.
    pub fn ca_addr(&self) -> Result<std::net::SocketAddr> {
        let first = self
            .sb
            .nodes()
            .first()
            .context("the CA runs on the first node; add one")?;
        Ok(std::net::SocketAddr::from((first.address, 15012)))
    }

    /// Creates the CA's keys, a credential directory per node, and serves the CA in node1's
    /// network namespace (`ambit-controller serve`).
    pub fn start_ca(&mut self) -> Result<()> {
        let controller = crate::binary("ambit-controller")?;
        let ca_dir = self.sb.dir().join("ca");
        run_host(
            Command::new(&controller)
                .arg("init-ca")
                .arg("--dir")
                .arg(&ca_dir),
        )?;
        for node in self.sb.nodes() {
            run_host(
                Command::new(&controller)
                    .arg("issue-node-cert")
                    .arg("--ca-dir")
                    .arg(&ca_dir)
                    .args([
                        "--node",
                        &node.name,
                        "--trust-domain",
                        &self.state.trust_domain,
                    ])
                    .arg("--out-dir")
                    .arg(self.identity_dir(&node.short_name)),
            )?;
        }
        let first = self.node(
            &self
                .sb
                .nodes()
                .first()
                .context("no node")?
                .short_name
                .clone(),
        )?;
        let ready = self.sb.dir().join("ca.ready");
        let mut cmd = Command::new(&controller);
        cmd.arg("serve")
            .arg("--ca-dir")
            .arg(&ca_dir)
            .arg("--config")
            .arg(&self.config_path)
            .args(["--listen", &self.ca_addr()?.to_string()])
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null());
        let log = self.sb.capture_to_log(&mut cmd, "ca")?;
        // In node1's network, but outside its pod cgroup subtree: like a CA elsewhere in the
        // cluster, the node's redirect programs never see its sockets.
        let placement = crate::sandbox::Placement {
            netns_path: first.netns_path.clone(),
            cgroup_dir: self.sb.cgroup_dir().to_path_buf(),
        };
        let ca = self.sb.spawn_at(&placement, cmd, "ca")?;
        wait_ready(&ca, &ready, &log, "the mesh CA")?;
        self.ca = Some(ca);
        Ok(())
    }

    fn identity_dir(&self, short: &str) -> PathBuf {
        self.sb.dir().join(format!("identity-{short}"))
    }

    pub fn start_agent(&mut self, short: &str) -> Result<()> {
        let node = self.node(short)?;
        let ready = self.sb.dir().join(format!("agent-{short}.ready"));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(&self.agent_bin);
        cmd.arg("run")
            .args(["--node", &node.name])
            .arg("--config")
            .arg(&self.config_path)
            .arg("--cgroup")
            .arg(&node.cgroup_dir)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(&self.agent_args)
            .args(if self.ca.is_some() {
                vec![
                    "--ca-addr".to_string(),
                    self.ca_addr()?.to_string(),
                    "--identity-dir".to_string(),
                    self.identity_dir(short).display().to_string(),
                ]
            } else {
                Vec::new()
            })
            .env(
                "RUST_LOG",
                std::env::var("AMBIT_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let log = self
            .sb
            .capture_to_log(&mut cmd, &format!("agent-{short}"))?;
        let agent = self.sb.spawn_in_node_agent(&node, cmd)?;
        let deadline = Instant::now() + AGENT_START;
        while !ready.exists() {
            if let Some(status) = agent.try_wait()? {
                bail!("agent on {short} exited ({status}):\n{}", tail(&log));
            }
            if Instant::now() > deadline {
                bail!(
                    "agent on {short} not ready after {AGENT_START:?}:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.agents.insert(short.to_string(), agent);
        Ok(())
    }

    /// The agents' `--run-dir`: each publishes under `<run-dir>/<node>/`.
    pub fn run_dir(&self) -> PathBuf {
        self.sb.dir().join("run")
    }

    /// SIGTERM, then wait for the agent to exit.
    pub fn stop_agent(&mut self, short: &str) -> Result<()> {
        let agent = self
            .agents
            .remove(short)
            .with_context(|| format!("no agent on {short}"))?;
        agent.terminate(Duration::from_secs(10))?;
        Ok(())
    }

    pub fn agent_log(&self, short: &str) -> String {
        std::fs::read_to_string(self.sb.dir().join(format!("agent-{short}.log")))
            .unwrap_or_default()
    }

    /// `ambit-node inspect --json` for one node, run from outside the sandbox as an operator
    /// would.
    pub fn inspect(&self, short: &str) -> Result<Value> {
        let node = self.node(short)?;
        let out = Command::new(&self.agent_bin)
            .args(["inspect", "--json", "--node", &node.name, "--run-dir"])
            .arg(self.run_dir())
            .output()
            .context("running ambit-node inspect")?;
        if !out.status.success() {
            bail!(
                "ambit-node inspect failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let reports: Value =
            serde_json::from_slice(&out.stdout).context("parsing inspect --json")?;
        Ok(reports[0].clone())
    }

    /// GET `path` from the agent of node `short` on `port` (15020 metrics, 15021 readiness),
    /// from inside the node's network namespace.
    pub fn agent_http(&self, short: &str, port: u16, path: &str) -> Result<String> {
        let node = self.node(short)?;
        http_get_in(
            &node.netns_path,
            std::net::SocketAddr::from((node.address, port)),
            path,
        )
    }

    /// The value of one metric sample (`name{labels}` exactly as exported) on node `short`.
    pub fn metric(&self, short: &str, sample: &str) -> Result<u64> {
        let text = self.agent_http(short, 15020, "/metrics")?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .with_context(|| format!("no sample {sample} in the agent's metrics:\n{text}"))
    }

    /// Live original-destination records on a node, from the inspector.
    pub fn records(&self, short: &str) -> Result<usize> {
        Ok(self.inspect(short)?["records"]
            .as_array()
            .map_or(0, Vec::len))
    }

    /// Waits until a node has `expected` live records and no pending ones.
    pub fn wait_records(&self, short: &str, expected: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let report = self.inspect(short)?;
            let live = report["records"].as_array().map_or(0, Vec::len);
            let pending = report["pending"].as_array().map_or(0, Vec::len);
            if live == expected && pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {short}: {live} live and {pending} pending records, expected {expected} and 0");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ip rule show` in node `short`'s namespace (IPv4).
    pub fn ip_rules(&self, short: &str) -> Result<String> {
        let node = self.node(short)?;
        let out = Command::new("ip")
            .args(["-n", &node.netns, "rule", "show"])
            .output()
            .context("running ip rule show")?;
        if !out.status.success() {
            bail!("ip rule show: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A kernel counter of a node, from the inspector.
    pub fn counter(&self, short: &str, name: &str) -> Result<u64> {
        let report = self.inspect(short)?;
        report["counters"][name]
            .as_u64()
            .with_context(|| format!("no counter {name} in the inspector's report"))
    }

    /// The workloads the inspector shows as enrolled on a node.
    pub fn enrolled(&self, short: &str) -> Result<Vec<String>> {
        let report = self.inspect(short)?;
        Ok(report["enrolled"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["workload"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until the inspector shows exactly `expected` (as `namespace/name`) enrolled.
    pub fn wait_enrolled(&self, short: &str, expected: &[&str]) -> Result<()> {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut got = self.enrolled(short)?;
            got.sort();
            if got == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {short}: enrolled {got:?}, expected {want:?}\nagent log:\n{}",
                    tail_text(&self.agent_log(short))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the test app's servers in a pod.
    pub fn serve(&self, pod: &Pod) -> Result<Process> {
        self.app.serve_in_pod(&self.sb, pod, &pod.name)
    }

    pub fn run_client(&self, from: &Pod, cmd: Command) -> Result<Output> {
        self.sb.run_in_pod(from, cmd, CLIENT_TIMEOUT)
    }

    /// Who the server at `to` saw connecting (`peer` is the client's address as the server saw it).
    pub fn whoami(&self, from: &Pod, to: SocketAddrV4) -> Result<WhoamiLine> {
        let out = self.run_client(from, self.app.whoami(to))?;
        if !out.status.success() {
            bail!(
                "whoami {to} from {} failed: {}",
                from.id(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        WhoamiLine::parse(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Opens one connection from `from` to the echo server at `to` and keeps it open.
    pub fn hold(&self, from: &Pod, to: SocketAddrV4) -> Result<HeldConnection> {
        let mut cmd = self.app.hold(to);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = self.sb.spawn_in_pod(from, cmd)?;
        let stdin = process.take_stdin().context("hold: no stdin")?;
        let lines = process.stdout_lines()?;
        let mut held = HeldConnection {
            _process: process,
            stdin,
            lines,
        };
        held.ping()
            .context("the held connection's first round trip")?;
        Ok(held)
    }

    pub fn echo(&self, from: &Pod, to: SocketAddrV4, bytes: u64) -> Result<EchoReport> {
        let out = self.run_client(from, self.app.echo(to, bytes))?;
        parse_report(&out)
    }
}

/// Waits until `process` writes its ready file; fails with its log if it exits or stalls.
fn wait_ready(
    process: &Process,
    ready: &std::path::Path,
    log: &std::path::Path,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + AGENT_START;
    while !ready.exists() {
        if let Some(status) = process.try_wait()? {
            bail!("{what} exited ({status}):\n{}", tail(log));
        }
        if Instant::now() > deadline {
            bail!("{what} not ready after {AGENT_START:?}:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The whole HTTP/1.1 answer to `GET path` from `addr`, asked from inside `netns`.
fn http_get_in(netns: &std::path::Path, addr: std::net::SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    crate::sandbox::run_inside(netns, || {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
}

/// Runs a host command to completion, failing with its stderr.
fn run_host(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// One open connection (the test app's `hold`): each `ping` is an echo round trip on it.
pub struct HeldConnection {
    _process: Process,
    stdin: std::process::ChildStdin,
    lines: crate::sandbox::OutputLines,
}

impl HeldConnection {
    pub fn ping(&mut self) -> Result<()> {
        use std::io::Write as _;
        writeln!(self.stdin, "ping").context("writing to hold")?;
        self.stdin.flush().context("flushing hold's stdin")?;
        match self.lines.next_line(Duration::from_secs(10))? {
            Some(line) if line.trim() == "ok" => Ok(()),
            Some(line) => bail!("held connection: {line}"),
            None => bail!("held connection: the client exited"),
        }
    }
}

fn tail(log: &std::path::Path) -> String {
    tail_text(&std::fs::read_to_string(log).unwrap_or_default())
}

fn tail_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
