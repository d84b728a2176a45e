//! The manifests start the binaries with flags they have, or say what they wait for.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::Command;

use ambit_e2e::deploy::{object_key, output};
use serde_json::Value;

use crate::{by_key, kustomize};

/// `<binary> <subcommand> --help`.
fn help(binary: &str, subcommand: &str) -> String {
    let path = ambit_e2e::binary(binary).unwrap_or_else(|e| panic!("{e:#}"));
    output(
        Command::new(&path).args([subcommand, "--help"]),
        "the binary is needed",
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn manifests_use_only_flags_the_binaries_have() {
    let objects = crate::with_waypoint("default");
    let mut checked = 0;
    for object in objects.values() {
        let containers = object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for container in containers {
            let image = container["image"].as_str().unwrap_or_default();
            let binary = image
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            let args: Vec<&str> = container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some((subcommand, flags)) = args.split_first() else {
                continue;
            };
            eprintln!("{binary} {subcommand}: {} flags", flags.len());
            let help = help(binary, subcommand);
            for flag in flags {
                let name = flag.split('=').next().unwrap_or_default();
                let has = help
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w == name);
                assert!(
                    has,
                    "{} passes {name}, which `{binary} {subcommand}` does not have:\n{help}",
                    object_key(object)
                );
                checked += 1;
            }
            for env in container["env"].as_array().into_iter().flatten() {
                let name = env["name"].as_str().unwrap_or_default();
                if name.starts_with("AMBIT_") {
                    assert!(
                        help.contains(&format!("[env: {name}")),
                        "{binary} {subcommand} does not read {name}:\n{help}"
                    );
                }
            }
        }
    }
    assert!(checked > 0, "no flags found in the manifests");
    eprintln!(
        "the preStop hook runs `ambit-node unload`, which must find the node in the environment"
    );
    assert!(help("ambit-node", "unload").contains("[env: AMBIT_NODE_NAME"));
}

#[test]
fn node_agent_runs_on_every_node_with_capabilities_not_privileged() {
    let objects = by_key(&kustomize("default"));
    let ds = &objects["DaemonSet ambit-system/ambit-node"];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["hostPID"], true,
        "pods' netns are found through /proc/<pid>"
    );
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let agent = &pod["containers"][0];
    assert!(
        agent["securityContext"].get("privileged").is_none(),
        "{}",
        agent["securityContext"]
    );
    let caps: BTreeSet<&str> = agent["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // What `ambit-node preflight` checks for, at least.
    for cap in ["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"] {
        assert!(caps.contains(cap), "missing CAP_{cap}: {caps:?}");
    }
    assert_eq!(
        agent["readinessProbe"]["httpGet"],
        serde_json::json!({"path": "/healthz/ready", "port": 15021})
    );
    assert_eq!(
        agent["lifecycle"]["preStop"]["exec"]["command"],
        serde_json::json!(["/usr/local/bin/ambit-node", "unload"])
    );
    let node_name = agent["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "AMBIT_NODE_NAME")
        .expect("AMBIT_NODE_NAME, read by run and unload");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let mounts: BTreeMap<&str, &Value> = agent["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap_or_default(), m))
        .collect();
    for path in ["/sys/fs/bpf", "/sys/fs/cgroup", "/run/netns"] {
        assert!(
            mounts.contains_key(path),
            "no mount at {path}: {:?}",
            mounts.keys()
        );
    }
}
