//! `cargo xtask demo`: a two-node mesh on the sandbox, and what did or did not go through it.
//!
//! The story: `shop` is enrolled (a client and two echo servers, one per node), `legacy` is
//! not, and `shop/batch` opts out. Each connection is checked against what the server saw and
//! what the kernel counted; every line the demo prints comes from that evidence, and a
//! connection that does not behave as the story says fails the demo. `--keep` leaves the
//! sandbox up and prints how to poke at it.

mod probe;
mod show;

use std::net::SocketAddrV4;
use std::process::Command;

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::testapp::ECHO_PORT;
use ambit_e2e::Pod;
use anyhow::{bail, Context, Result};

use probe::{Counters, Route};
use show::Outcome;

const NODES: [&str; 2] = ["node1", "node2"];
/// The namespace labelled `ambit.dev/dataplane-mode: ambient`.
const MESH_NAMESPACE: &str = "shop";
const MIB: u64 = 1024 * 1024;

/// A pod of the demo and its part in the story.
pub struct Member {
    pub node: &'static str,
    pub namespace: &'static str,
    pub name: &'static str,
    /// Runs the test app's echo and whoami servers.
    pub serves: bool,
    /// Labelled `ambit.dev/dataplane-mode: none`.
    pub opted_out: bool,
}

impl Member {
    const fn new(node: &'static str, namespace: &'static str, name: &'static str) -> Member {
        Member {
            node,
            namespace,
            name,
            serves: false,
            opted_out: false,
        }
    }

    /// What the labels ask for: in the mesh or not.
    pub fn wants_mesh(&self) -> bool {
        self.namespace == MESH_NAMESPACE && !self.opted_out
    }
}

const CAST: [Member; 5] = [
    Member::new("node1", "shop", "client"),
    Member {
        serves: true,
        ..Member::new("node1", "shop", "echo-1")
    },
    Member {
        serves: true,
        ..Member::new("node2", "shop", "echo-2")
    },
    Member::new("node1", "legacy", "old-client"),
    Member {
        opted_out: true,
        ..Member::new("node1", "shop", "batch")
    },
];

pub fn run(keep: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds network namespaces and loads eBPF programs: run it as root (sudo -E cargo xtask demo)");
    }
    crate::setup::ensure()?;
    crate::build::release_binaries()?;
    ambit_e2e::install_interrupt_cleanup()?;

    show::banner();
    let mut mesh = MeshCluster::new("demo")?;
    if let Err(e) = story(&mut mesh) {
        // The sandbox is torn down when `mesh` drops, logs included: keep their tails here.
        let logs: String = NODES
            .iter()
            .filter_map(|n| show::log_tail(n, &mesh.agent_log(n)))
            .collect();
        bail!("the demo stopped: {e:#}{logs}");
    }
    if keep {
        mesh.sb.keep();
        show::keep_instructions(&mesh, &CAST)?;
        return Ok(());
    }
    let name = mesh.sb.name().to_string();
    let report = mesh.sb.teardown();
    show::teardown(&name, &report)
}

/// Steps 1 to 7; fails as soon as something does not behave as described.
fn story(mesh: &mut MeshCluster) -> Result<()> {
    show::step(
        1,
        "Setting up two nodes, each with its node agent, and five pods",
    );
    setting_up(mesh)?;
    let pod = |ns: &str, name: &str| -> Result<Pod> {
        mesh.sb
            .pod(ns, name)
            .cloned()
            .with_context(|| format!("no pod {ns}/{name}"))
    };
    let (client, echo1, echo2) = (
        pod("shop", "client")?,
        pod("shop", "echo-1")?,
        pod("shop", "echo-2")?,
    );
    let (old_client, batch) = (pod("legacy", "old-client")?, pod("shop", "batch")?);
    let mut outcomes = Vec::new();
    let whoami = |n, from: &Pod, want: Route, note: &str, outcomes: &mut Vec<Outcome>| {
        show::step(
            n,
            &format!(
                "{} ({}) asks shop/echo-2 (node2) who is calling",
                from.id(),
                from.node
            ),
        );
        let probe = probe::whoami(mesh, from, &echo2, want)?;
        show::probe(mesh, &probe)?;
        outcomes.push(Outcome {
            what: probe.title(),
            note: note.to_string(),
            route: probe.route,
        });
        anyhow::Ok(())
    };

    whoami(
        2,
        &client,
        Route::Mesh,
        "whoami, across nodes",
        &mut outcomes,
    )?;

    show::step(
        3,
        "shop/client sends 1 MiB to shop/echo-1, on its own node, and reads it back",
    );
    echo_same_node(mesh, &client, &echo1)?;
    outcomes.push(Outcome {
        what: format!("{} -> {}", client.id(), echo1.id()),
        note: "1 MiB echo, same node".into(),
        route: Route::Mesh,
    });

    let not_labelled = "namespace legacy is not labelled";
    whoami(4, &old_client, Route::Direct, not_labelled, &mut outcomes)?;
    whoami(5, &batch, Route::Direct, "pod opted out", &mut outcomes)?;

    show::step(
        6,
        "What node1's kernel sees while shop/client holds a connection open to shop/echo-2",
    );
    inspector_view(mesh, &client, &echo2)?;
    outcomes.push(Outcome {
        what: format!("{} -> {}", client.id(), echo2.id()),
        note: "held open, seen live by the inspector".into(),
        route: Route::Mesh,
    });

    show::step(7, "Summary");
    show::summary(&outcomes, &Counters::read(mesh, "node1")?);
    Ok(())
}

/// Nodes, pods, labels, agents and servers; waits until each agent enrolled what the labels
/// ask for, then prints the table with the inspector's view of enrollment.
fn setting_up(mesh: &mut MeshCluster) -> Result<()> {
    for node in NODES {
        mesh.add_node(node)?;
    }
    for member in &CAST {
        let pod = mesh.add_pod(member.node, member.namespace, member.name)?;
        if member.opted_out {
            mesh.opt_out_pod(&pod);
        }
    }
    mesh.enroll_namespace(MESH_NAMESPACE);
    mesh.start_agents()?;
    for member in CAST.iter().filter(|m| m.serves) {
        let pod = mesh
            .sb
            .pod(member.namespace, member.name)
            .cloned()
            .context("pod just added")?;
        // The sandbox stops the servers on teardown.
        mesh.serve(&pod)?;
    }
    for node in NODES {
        let expected: Vec<String> = CAST
            .iter()
            .filter(|m| m.node == node && m.wants_mesh())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        mesh.wait_enrolled(node, &expected)?;
    }
    show::cluster(mesh, &CAST)
}

/// Step 3: an echo between two pods of node1, verified byte for byte, and the kernel's count
/// of the redirect.
fn echo_same_node(mesh: &MeshCluster, client: &Pod, server: &Pod) -> Result<()> {
    let before = Counters::read(mesh, &client.node)?;
    let report = mesh.echo(client, SocketAddrV4::new(server.ip, ECHO_PORT), MIB)?;
    let after = Counters::read(mesh, &client.node)?;
    if !report.ok || report.bytes != MIB {
        bail!(
            "the echo through {}'s agent came back wrong: {} of {MIB} bytes, first mismatch at \
             {:?}, error {:?}",
            client.node,
            report.bytes,
            report.first_mismatch,
            report.error
        );
    }
    let (redirected, established) = (
        after.since(&before, "redirected"),
        after.since(&before, "established"),
    );
    if redirected == 0 || established == 0 {
        bail!(
            "the echo worked, but {}'s kernel counted redirected +{redirected}, established \
             +{established}: it did not go through the agent",
            client.node
        );
    }
    show::echo(client, server, report.bytes, redirected, established);
    Ok(())
}

/// Step 6: opens one long-lived connection, shows `ambit-node inspect` for node1, and checks
/// that its live record names the client and the original destination.
fn inspector_view(mesh: &MeshCluster, client: &Pod, server: &Pod) -> Result<()> {
    let target = SocketAddrV4::new(server.ip, ECHO_PORT);
    // One round trip done: the connection is established and its record in place.
    let held = mesh.hold(client, target)?;
    let node = mesh.node(&client.node)?;
    let text = Command::new(ambit_e2e::binary("ambit-node")?)
        .args(["inspect", "--node", &node.name, "--run-dir"])
        .arg(mesh.run_dir())
        .output()
        .context("running ambit-node inspect")?;
    if !text.status.success() {
        bail!(
            "ambit-node inspect failed: {}",
            String::from_utf8_lossy(&text.stderr).trim()
        );
    }
    let report = mesh.inspect(&client.node)?;
    let record = report["records"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["original_destination"].as_str() == Some(&target.to_string())
                && r["origin_workload"].as_str() == Some(&client.id())
        })
        .cloned();
    // Closing its stdin ends `hold`, and the connection with it.
    drop(held);
    let Some(record) = record else {
        bail!(
            "the inspector shows no live record for {} -> {target} while the connection was \
             open:\n{}",
            client.id(),
            String::from_utf8_lossy(&text.stdout)
        );
    };
    let command = format!("ambit-node inspect --node {}", node.name);
    show::inspector(
        &command,
        &String::from_utf8_lossy(&text.stdout),
        &record,
        client,
    );
    Ok(())
}
