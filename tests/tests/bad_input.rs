//! Bad input gets a clear message and a counter, and loses nothing: an invalid config, a
//! vanished network namespace, a full record map, a node without bpffs, cgroup v2 or
//! capabilities.

mod common;

use std::net::{IpAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::{ECHO_PORT, WHOAMI_PORT};
use common::{pod, running_shop, two_node_shop, RunningShop, NODE1_ENROLLED};

/// Waits until the agent's log on `node` contains `needle`.
fn wait_for_log(mesh: &ambit_e2e::cluster::MeshCluster, node: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = mesh.agent_log(node);
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the agent log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn invalid_config_keeps_the_last_good_one_and_names_the_field() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mut mesh,
        client,
        server,
        ..
    } = running_shop("bad-config", &[], "echo-2");

    eprintln!("an operator writes a config with a bad IP address");
    let good = std::fs::read_to_string(mesh.config_path()).unwrap();
    let bad = good.replacen(&client.ip.to_string(), "10.0.0.300", 1);
    assert_ne!(good, bad);
    mesh.write_config_text(&bad).expect("write");
    let log = wait_for_log(&mesh, "node1", "10.0.0.300");
    let line = log.lines().find(|l| l.contains("10.0.0.300")).unwrap();
    assert!(
        line.contains("workloads[") && line.contains(".ips[0]"),
        "the rejection names no field: {line}"
    );

    assert!(mesh.metric("node1", "ambit_config_rejected_total").unwrap() >= 1);
    let ready = mesh.agent_http("node1", 15021, "/healthz/ready").unwrap();
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("config rejected"),
        "{ready}"
    );

    eprintln!("the last good config stays in force: still enrolled, still redirected");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("still enrolled");
    let streams = "ambit_hbone_inbound_streams_total{status=\"200\"}";
    let (redirected, delivered) = (
        mesh.counter("node1", "redirected").unwrap(),
        mesh.metric("node2", streams).unwrap_or(0),
    );
    let seen = mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("whoami");
    // node2's agent delivers from the client's address: the counters show the route.
    assert_eq!(seen.peer.ip(), IpAddr::V4(client.ip), "{seen:?}");
    assert!(mesh.counter("node1", "redirected").unwrap() > redirected);
    assert!(mesh.metric("node2", streams).unwrap() > delivered);

    eprintln!("a fixed config (shop un-enrolled) is picked up");
    mesh.unenroll_namespace("shop");
    mesh.write_config().expect("config");
    mesh.wait_enrolled("node1", &[]).expect("un-enrolled");
}

#[test]
fn vanished_network_namespace_is_reported_and_the_rest_stay_enrolled() {
    if !require_privileged() {
        return;
    }
    let mut mesh = two_node_shop("netns-gone");
    mesh.start_agents().expect("agents");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("enrolled");
    let echo1 = pod(&mesh, "shop", "echo-1");

    eprintln!("shop/echo-1's network namespace disappears (its pod was deleted)");
    let status = Command::new("ip")
        .args(["netns", "del", &echo1.netns])
        .status()
        .unwrap();
    assert!(status.success());
    mesh.wait_enrolled("node1", &["shop/client"])
        .expect("echo-1 dropped, client kept");
    let log = wait_for_log(&mesh, "node1", "is gone");
    assert!(
        log.lines()
            .any(|l| l.contains("is gone") && l.contains("shop/echo-1")),
        "{log}"
    );
}

#[test]
fn full_record_map_refuses_new_connects_and_counts_them() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mesh,
        client,
        server,
        ..
    } = running_shop("map-full", &["--max-connections", "4"], "echo-2");
    let report = mesh.inspect("node1").unwrap();
    assert_eq!(report["limits"]["ORIG_DST"], 4, "{report}");

    eprintln!("four connections fill the record map");
    let mut held: Vec<_> = (0..4)
        .map(|_| {
            mesh.hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
                .expect("hold")
        })
        .collect();
    mesh.wait_records("node1", 4).expect("four records");

    eprintln!("a fifth connect fails in the kernel rather than bypassing the mesh");
    let before = mesh.counter("node1", "orig_dst_map_full").unwrap();
    assert!(mesh
        .whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .is_err());
    assert!(mesh.counter("node1", "orig_dst_map_full").unwrap() > before);
    for h in &mut held {
        h.ping().expect("the connections already open keep working");
    }

    eprintln!("when one closes, new connects work again");
    held.pop();
    mesh.wait_records("node1", 3).expect("three records");
    mesh.whoami(&client, SocketAddrV4::new(server.ip, WHOAMI_PORT))
        .expect("room again");
}

fn agent() -> Command {
    Command::new(ambit_e2e::binary("ambit-node").expect("ambit-node is built"))
}

#[test]
fn node_without_bpffs_or_cgroup_v2_is_told_how_to_fix_it() {
    if !require_privileged() {
        return;
    }
    let not_bpffs = std::env::temp_dir();
    let out = agent()
        .args(["preflight", "--bpffs"])
        .arg(&not_bpffs)
        .args(["--cgroup", "/proc"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("mount -t bpf bpf"), "{text}");
    assert!(
        text.contains("/proc is not a cgroup v2 directory"),
        "{text}"
    );

    eprintln!("`run` refuses to start with the same explanation");
    let out = agent()
        .args(["run", "--node", "n", "--config", "/nonexistent", "--bpffs"])
        .arg(&not_bpffs)
        .args(["--cgroup", "/proc"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot run Ambit") && err.contains("mount -t bpf bpf"),
        "{err}"
    );
}

#[test]
fn missing_capabilities_are_named() {
    if !require_privileged() {
        return;
    }
    eprintln!("preflight as an unprivileged user (setpriv drops to nobody)");
    let bin = ambit_e2e::binary("ambit-node").unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .arg("preflight")
        .output()
        .expect("setpriv (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("missing CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN"),
        "{text}"
    );
}
