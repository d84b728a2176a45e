//! The `ambit-controller` binary end to end: init, node certificates, serving, config reload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ambit_mesh::identity::{CaClient, SpiffeId};

const MESH: &str = "
trustDomain: cluster.local
nodes:
  - {name: n1, address: 192.168.50.1}
  - {name: n2, address: 192.168.50.2}
namespaces:
  - {name: shop, labels: {ambit.dev/dataplane-mode: ambient}}
workloads:
  - {name: client, namespace: shop, serviceAccount: client, node: n1, ips: [10.10.1.2]}
  - {name: payments, namespace: shop, serviceAccount: payments, node: PAYMENTS_NODE, ips: [10.10.2.3]}
";

/// The controller process, killed on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ambit-controller"));
    command.args(args);
    command
}

fn run(args: &[&str]) {
    let status = controller(args).status().expect("runs");
    assert!(status.success(), "ambit-controller {args:?}: {status}");
}

fn write_mesh(path: &Path, payments_node: &str) {
    std::fs::write(path, MESH.replace("PAYMENTS_NODE", payments_node)).expect("writes the mesh");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("has an address").port()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ambit-controller-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates the test directory");
    dir
}

#[tokio::test]
async fn served_ca_signs_for_pods_on_the_node_and_follows_the_config() {
    let dir = temp_dir();
    let (ca, n1, mesh, ready) = (
        dir.join("ca"),
        dir.join("n1"),
        dir.join("mesh.yaml"),
        dir.join("ready"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    write_mesh(&mesh, "n2");
    run(&["init-ca", "--dir", &s(&ca)]);
    run(&[
        "issue-node-cert",
        "--ca-dir",
        &s(&ca),
        "--node",
        "n1",
        "--out-dir",
        &s(&n1),
    ]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _controller = Controller(
        controller(&[
            "serve",
            "--ca-dir",
            &s(&ca),
            "--config",
            &s(&mesh),
            "--listen",
            &addr.to_string(),
            "--ready-file",
            &s(&ready),
        ])
        .spawn()
        .unwrap(),
    );
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the CA never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let client = CaClient::from_dir(addr, &n1).unwrap();
    let roots = ambit_mesh::identity::load_trust_bundle(&n1).unwrap();
    assert_eq!(roots.len(), 1);
    let shop_client = SpiffeId::new("cluster.local", "shop", "client").unwrap();
    let payments = SpiffeId::new("cluster.local", "shop", "payments").unwrap();
    let svid = client.sign(&shop_client).await.unwrap();
    assert_eq!(svid.id, shop_client);

    let err = client.sign(&payments).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    assert!(err.to_string().contains("scheduled on n1"), "{err}");

    // payments moves to n1: n1 may now have its identity.
    write_mesh(&mesh, "n1");
    let start = Instant::now();
    loop {
        match client.sign(&payments).await {
            Ok(svid) => break assert_eq!(svid.id, payments),
            Err(e) if start.elapsed() > Duration::from_secs(4) => panic!("still refused: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[test]
fn kube_mode_without_a_cluster_says_so_and_a_bad_service_account_is_named() {
    // Not under temp_dir(), which the other test empties.
    let dir = std::env::temp_dir().join(format!("ambit-controller-kube-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca");
    run(&["init-ca", "--dir", ca.to_str().unwrap()]);
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--ca-dir",
            ca.to_str().unwrap(),
            "--config-source",
            "kube",
        ];
        args.extend_from_slice(extra);
        let out = controller(&args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
            .env("HOME", &dir)
            .output()
            .expect("runs");
        assert!(
            !out.status.success(),
            "serve {extra:?} started without a cluster"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = serve(&[]);
    assert!(
        stderr.contains("no Kubernetes client config (in-cluster or kubeconfig)"),
        "{stderr}"
    );
    let stderr = serve(&["--node-agent-service-account", "ambit-node"]);
    assert!(
        stderr.contains("--node-agent-service-account \"ambit-node\" is not namespace/name"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
