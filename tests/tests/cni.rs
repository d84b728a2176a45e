//! The start-up race, closed by the CNI plugin: the agent installs `ambit-cni` into the node's
//! CNI config, the runtime's ADD enrolls a sandbox before any of its processes exist, and
//! without an agent the plugin holds only pods of enrolled namespaces.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::require_privileged;
use ambit_mesh::model::Workload;
use common::{assert_route, pod, two_node_shop, Route, NODE1_ENROLLED};
use serde_json::{json, Value};

const LATE_UID: &str = "5e1d2c3b-4a59-4867-8f9e-0a1b2c3d4e5f";

/// The cluster plugin's result, which Ambit must pass through untouched.
fn prev_result() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{ "name": "eth0", "sandbox": "/run/netns/x" }],
        "ips": [{ "address": "10.0.0.9/24", "interface": 0 }]
    })
}

/// Runs the installed plugin as a container runtime would: the list's version and name, the
/// plugin's own entry and the previous result on stdin, `CNI_*` in the environment.
fn run_plugin(
    bin_dir: &Path,
    list: &Value,
    command: &str,
    pod: (&str, &str, &str),
    netns: &Path,
) -> (bool, Value) {
    let entry = list["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["type"] == "ambit-cni"))
        .cloned()
        .expect("an ambit-cni entry in the list");
    let mut conf = entry;
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    conf["prevResult"] = prev_result();
    let (namespace, name, uid) = pod;
    let mut child = Command::new(bin_dir.join("ambit-cni"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "sandbox-1")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin_dir)
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the installed ambit-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("writing the network config");
    let out = child.wait_with_output().expect("ambit-cni output");
    let stdout: Value = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ambit-cni printed no JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    (out.status.success(), stdout)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

/// The agent's published view: workload -> (state, detail).
fn workloads(mesh: &MeshCluster) -> BTreeMap<String, (String, String)> {
    let report = mesh.inspect("node1").expect("inspect");
    report["workloads"]["workloads"]
        .as_array()
        .expect("the agent's workloads view in the inspector")
        .iter()
        .map(|w| {
            (
                w["workload"].as_str().unwrap_or_default().to_string(),
                (
                    w["state"].as_str().unwrap_or_default().to_string(),
                    w["detail"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_cni_plugin_enrolls_a_sandbox_before_its_pod_has_a_process() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("cni");
    let late = mesh.add_pod("node1", "shop", "late").expect("pod");
    let node1 = mesh.node("node1").expect("node1");
    {
        let state = mesh.state_mut();
        // As on a cluster: the agent knows shop/late by UID only, and its cgroup has no
        // process yet, so without the plugin it waits.
        let workload = state
            .workloads
            .iter_mut()
            .find(|w| w.name == "late")
            .expect("shop/late");
        workload.netns = None;
        workload.uid = Some(LATE_UID.to_string());
        // A host-network pod in the enrolled namespace: never enrolled, and the inspector
        // says so.
        state.workloads.push(Workload {
            name: "node-exporter".into(),
            namespace: "shop".into(),
            uid: None,
            service_account: "node-exporter".into(),
            node: node1.name.clone(),
            ips: vec![IpAddr::V4(node1.address)],
            netns: None,
            labels: BTreeMap::new(),
            host_network: true,
        });
    }

    let cni_dir = mesh.sb.dir().join("cni");
    let conf_dir = cni_dir.join("net.d");
    let bin_dir = cni_dir.join("bin");
    std::fs::create_dir_all(&conf_dir).expect("conf dir");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    let cluster_list = json!({
        "cniVersion": "1.0.0",
        "name": "sandbox-net",
        "plugins": [{ "type": "bridge", "bridge": "cni0" }]
    });
    let conflist = conf_dir.join("10-sandbox.conflist");
    std::fs::write(&conflist, cluster_list.to_string()).expect("cluster CNI config");
    let plugin: PathBuf = ambit_e2e::binary("ambit-cni").expect("ambit-cni built");
    // node2's agent runs without the plugin: one machine has one CNI config directory.
    mesh.write_config().expect("config");
    mesh.start_ca().expect("CA");
    mesh.start_agent("node2").expect("node2's agent");
    mesh.agent_args = vec![
        "--cni".into(),
        "--cni-conf-dir".into(),
        conf_dir.display().to_string(),
        "--cni-bin-dir".into(),
        bin_dir.display().to_string(),
        "--cni-plugin".into(),
        plugin.display().to_string(),
    ];
    mesh.start_agent("node1").expect("node1's agent");
    let server = pod(&mesh, "shop", "echo-2");
    let _servers = mesh.serve(&server).expect("server");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("enrolled without shop/late");

    eprintln!("the inspector names every workload on node1, including those left out");
    let view = workloads(&mesh);
    let (state, detail) = &view["shop/late"];
    assert_eq!(state, "waiting", "{view:?}");
    assert!(detail.contains(LATE_UID), "{detail}");
    let (state, detail) = &view["shop/node-exporter"];
    assert_eq!(state, "notEnrolled");
    assert!(detail.contains("host network"), "{detail}");
    assert!(
        view["shop/batch"].1.contains("dataplane-mode=none"),
        "{view:?}"
    );
    assert!(
        view["legacy/old-client"].1.contains("namespace"),
        "{view:?}"
    );
    let text = Command::new(ambit_e2e::binary("ambit-node").expect("agent"))
        .args(["inspect", "--node", &node1.name, "--run-dir"])
        .arg(mesh.run_dir())
        .output()
        .expect("inspect");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("shop/node-exporter")
            && text.contains("not enrolled: pod uses the host network"),
        "{text}"
    );

    eprintln!("the agent chained ambit-cni after the cluster's plugin and installed the binary");
    let list = read_json(&conflist);
    let plugins = list["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 2, "{list}");
    assert_eq!(plugins[0], cluster_list["plugins"][0]);
    assert_eq!(plugins[1]["type"], "ambit-cni");
    let socket = mesh.run_dir().join(&node1.name).join("cni.sock");
    assert_eq!(plugins[1]["agentSocket"], json!(socket));
    assert!(bin_dir.join("ambit-cni").is_file());

    eprintln!("the runtime's ADD for shop/late: enrolled before the plugin returns");
    let late_pod = ("shop", "late", LATE_UID);
    let (ok, result) = run_plugin(&bin_dir, &list, "ADD", late_pod, &late.netns_path);
    assert!(ok, "ADD failed: {result}");
    assert_eq!(
        result,
        prev_result(),
        "the cluster plugin's result passes through"
    );
    let enrolled = mesh.enrolled("node1").expect("enrolled");
    assert!(
        enrolled.contains(&"shop/late".to_string()),
        "enrolled as soon as ADD returned: {enrolled:?}"
    );
    assert_route(
        &mesh,
        &late,
        &server,
        Route::Mesh,
        "first connect after ADD",
    );

    eprintln!("reconciles keep it although its cgroup has no process");
    std::thread::sleep(Duration::from_secs(6));
    let view = workloads(&mesh);
    assert_eq!(view["shop/late"].0, "enrolled", "{view:?}");
    assert!(view["shop/late"].1.contains("CNI"), "{view:?}");
    assert_route(&mesh, &late, &server, Route::Mesh, "after reconciles");

    eprintln!("DEL: the sandbox is forgotten");
    let (ok, _) = run_plugin(&bin_dir, &list, "DEL", late_pod, &late.netns_path);
    assert!(ok, "DEL never fails");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("shop/late no longer enrolled");

    eprintln!("an ADD for a pod of a namespace that is not enrolled leaves it out");
    let old = pod(&mesh, "legacy", "old-client");
    let (ok, result) = run_plugin(
        &bin_dir,
        &list,
        "ADD",
        ("legacy", "old-client", "u-old"),
        &old.netns_path,
    );
    assert!(ok, "{result}");
    let enrolled = mesh.enrolled("node1").expect("enrolled");
    assert!(
        !enrolled.contains(&"legacy/old-client".to_string()),
        "{enrolled:?}"
    );

    eprintln!("the agent stops: ambit-cni leaves the CNI config");
    mesh.stop_agent("node1").expect("stop");
    assert_eq!(read_json(&conflist), cluster_list);

    eprintln!("a runtime still holding the old config: pods of enrolled namespaces wait");
    let (ok, error) = run_plugin(&bin_dir, &list, "ADD", late_pod, &late.netns_path);
    assert!(!ok, "held while the agent is away: {error}");
    assert_eq!(error["code"], json!(11), "try again later: {error}");
    let (ok, result) = run_plugin(
        &bin_dir,
        &list,
        "ADD",
        ("legacy", "old-client", "u-old"),
        &old.netns_path,
    );
    assert!(ok, "pods of other namespaces start: {result}");
    assert_eq!(result, prev_result());
}
