//! Enrolling and un-enrolling by config reload, without restarting pods or the agent.

mod common;

use std::net::SocketAddrV4;

use ambit_e2e::require_privileged;
use ambit_e2e::testapp::ECHO_PORT;
use common::{assert_route, running_shop, Route, RunningShop, NODE1_ENROLLED};

#[test]
fn unenrolling_stops_new_redirects_and_keeps_open_connections() {
    if !require_privileged() {
        return;
    }
    let RunningShop {
        mut mesh,
        client,
        server,
        ..
    } = running_shop("unenroll", &[], "echo-2");

    eprintln!("a connection opened while shop is enrolled goes through the agent");
    let mut held = mesh
        .hold(&client, SocketAddrV4::new(server.ip, ECHO_PORT))
        .expect("hold");
    mesh.wait_records("node1", 1).expect("one live record");

    eprintln!("un-enroll shop by editing the config; the agent reloads it on its own");
    mesh.unenroll_namespace("shop");
    mesh.write_config().expect("config");
    mesh.wait_enrolled("node1", &[]).expect("nothing enrolled");

    eprintln!("new connections go direct; the open one still works");
    assert_route(&mesh, &client, &server, Route::Direct, "after un-enrolling");
    for _ in 0..3 {
        held.ping()
            .expect("the open connection survives un-enrolling");
    }

    eprintln!("enroll again: new connections are redirected, with no pod restart");
    mesh.enroll_namespace("shop");
    mesh.write_config().expect("config");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("enrolled again");
    assert_route(&mesh, &client, &server, Route::Mesh, "after re-enrolling");
    held.ping().expect("still open");
}

/// As on a Kubernetes node: the config knows `shop/client` only by its pod UID, and the agent
/// finds its network namespace through a process in the kubelet's cgroup for that UID
/// (systemd driver layout, burstable QoS).
#[test]
fn a_pod_known_by_uid_is_found_through_its_kubelet_cgroup() {
    if !require_privileged() {
        return;
    }
    const UID: &str = "0c3f5e2a-7b1d-4e8f-9a6b-5d4c3b2a1908";
    let RunningShop {
        mut mesh,
        client,
        server,
        ..
    } = running_shop("poduid", &[], "echo-2");

    eprintln!("the config gives shop/client's UID instead of its netns path");
    let workload = mesh
        .state_mut()
        .workloads
        .iter_mut()
        .find(|w| w.namespace == "shop" && w.name == "client")
        .expect("shop/client in the config");
    workload.netns = None;
    workload.uid = Some(UID.to_string());
    mesh.write_config().expect("config");

    eprintln!("no cgroup for that UID yet: shop/client is not enrolled, and says why");
    mesh.wait_enrolled("node1", &["shop/echo-1"])
        .expect("only echo-1 enrolled");
    assert_route(&mesh, &client, &server, Route::Direct, "not redirected");

    eprintln!("a process of the pod appears in the kubelet's cgroup for the UID");
    // The agent's `--cgroup` in the sandbox is the node's cgroup (`<node>/pods/<pod>` are
    // its pods): there the agent looks for kubelet-named pod cgroups.
    let kubepods = client
        .cgroup_dir
        .parent()
        .and_then(|pods| pods.parent())
        .expect("the node's cgroup");
    let container = kubepods
        .join("kubepods-burstable.slice")
        .join(format!(
            "kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        ))
        .join("cri-containerd-pause.scope");
    std::fs::create_dir_all(&container).expect("creating the kubelet-style cgroup");
    let mut sleep = std::process::Command::new("sleep");
    sleep.arg("600");
    let pause = mesh
        .sb
        .spawn_in_pod(&client, sleep)
        .expect("a long-lived process in shop/client");
    std::fs::write(container.join("cgroup.procs"), pause.pid().to_string())
        .expect("moving the process into the container's cgroup");

    eprintln!("the agent finds the netns from the UID and enrolls shop/client");
    mesh.wait_enrolled("node1", &NODE1_ENROLLED)
        .expect("shop/client enrolled by UID");
    assert_route(
        &mesh,
        &client,
        &server,
        Route::Mesh,
        "redirected through the agents",
    );
}
