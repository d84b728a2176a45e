//! How the demo talks: step headers, the cluster table, each connection's verdict in plain
//! words, and the `--keep` instructions. Only prints what the caller measured.

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::testapp::{ECHO_PORT, WHOAMI_PORT};
use ambit_e2e::{Pod, Report};
use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::probe::{Counters, Probe, Route};
use super::{Member, CAST, MESH_NAMESPACE, NODES};

const LABEL: &str = "ambit.dev/dataplane-mode";

pub fn banner() {
    println!("Ambit demo: two nodes, a namespace in the mesh, and pods that stay outside it.");
    println!("Every verdict below is read from what the servers saw and the kernel counted.");
}

pub fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// Step 1's tables: nodes with their agents, pods with the inspector's view of enrollment.
pub fn cluster(mesh: &MeshCluster, cast: &[Member]) -> Result<()> {
    println!("   {:<7} {:<14} agent", "node", "address");
    let mut enrolled = Vec::new();
    for short in NODES {
        let node = mesh.node(short)?;
        let on_node = mesh.enrolled(short)?;
        println!(
            "   {:<7} {:<14} ready, {}",
            short,
            node.address.to_string(),
            plural(on_node.len(), "pod", "pods") + " enrolled"
        );
        enrolled.extend(on_node);
    }
    println!();
    println!(
        "   {:<18} {:<6} {:<11} {:<13} in the mesh?",
        "pod", "node", "address", "servers"
    );
    for member in cast {
        let pod = pod(mesh, member)?;
        let in_mesh = enrolled.contains(&pod.id());
        if in_mesh != member.wants_mesh() {
            bail!(
                "{} is {}enrolled, against its labels",
                pod.id(),
                if in_mesh { "" } else { "not " }
            );
        }
        println!(
            "   {:<18} {:<6} {:<11} {:<13} {} ({})",
            pod.id(),
            member.node,
            pod.ip.to_string(),
            if member.serves { "echo, whoami" } else { "-" },
            if in_mesh { "yes" } else { "no" },
            why(member)
        );
    }
    println!("   Labels: namespace {MESH_NAMESPACE} has {LABEL}=ambient");
    for member in cast.iter().filter(|m| m.opted_out) {
        println!(
            "           pod {}/{} has {LABEL}=none",
            member.namespace, member.name
        );
    }
    println!(
        "   Servers: echo on :{ECHO_PORT}; whoami on :{WHOAMI_PORT} answers with the caller's \
         address.\n   \"in the mesh?\" is what the agents' inspector shows enrolled."
    );
    Ok(())
}

/// The label that decides a pod's enrollment, in a few words.
fn why(member: &Member) -> String {
    if member.opted_out {
        "pod opted out".to_string()
    } else if member.namespace == MESH_NAMESPACE {
        format!("namespace {} is ambient", member.namespace)
    } else {
        format!("namespace {} is not labelled", member.namespace)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One whoami probe, in plain words.
pub fn probe(mesh: &MeshCluster, p: &Probe) -> Result<()> {
    let node = mesh.node(&p.from.node)?;
    let short = &node.short_name;
    match p.route {
        Route::Mesh => {
            let delivering = mesh.node(&p.to.node)?;
            if p.address_kept {
                println!(
                    "   {} saw the call come from {}, the pod's own address: {}'s agent delivered it\n   \
                     from the caller's address (--client-address preserve).",
                    p.to.name, p.peer, delivering.short_name
                );
            } else {
                println!(
                    "   {} saw the call come from {}, {}'s agent, not from the pod ({}).",
                    p.to.name, p.peer, delivering.short_name, p.from.ip
                );
            }
            match &p.caller_identity {
                Some(id) => {
                    println!(
                        "   => through the mesh: {short}'s agent captured it and carried it over mutual TLS\n      \
                         (HBONE) to {}'s agent, which verified the caller's certificate:\n      {id}",
                        delivering.short_name
                    );
                }
                None => println!(
                    "   => through the mesh: {short}'s agent captured it and delivered it on the same node."
                ),
            }
            kernel(
                short,
                &[("redirected", p.redirected), ("established", p.established)],
            );
        }
        Route::Direct => {
            println!(
                "   {} saw the call come from {}, the pod's own address.",
                p.to.name, p.peer
            );
            println!("   => not in the mesh: {}.", why(member_of(&p.from)?));
            kernel(
                short,
                &[
                    ("redirected", p.redirected),
                    ("skipped_not_enrolled", p.skipped_not_enrolled),
                ],
            );
        }
    }
    Ok(())
}

/// `(node1's kernel: redirected +1, established +1)`
fn kernel(node: &str, deltas: &[(&str, u64)]) {
    let deltas: Vec<String> = deltas.iter().map(|(n, d)| format!("{n} +{d}")).collect();
    println!("      ({node}'s kernel: {})", deltas.join(", "));
}

/// Step 3's verdict.
pub fn echo(client: &Pod, server: &Pod, bytes: u64, redirected: u64, established: u64) {
    println!(
        "   {bytes} bytes ({} MiB) went to {} ({}) and came back byte for byte.",
        bytes / (1024 * 1024),
        server.name,
        server.ip
    );
    println!("   => through the mesh, even between two pods of the same node.");
    kernel(
        &client.node,
        &[("redirected", redirected), ("established", established)],
    );
}

/// Step 6: the inspector's own output, then the live record explained.
pub fn inspector(command: &str, text: &str, record: &Value, client: &Pod) {
    println!("   $ {command}");
    for line in text.lines() {
        println!("   | {line}");
    }
    let field = |name: &str| record[name].as_str().unwrap_or("?").to_string();
    println!(
        "   The live record: {} ({}) called {};\n   the kernel steered it to the agent at {} \
         and recorded where it was going.",
        client.id(),
        field("client"),
        field("original_destination"),
        field("agent")
    );
}

/// One connection of the story and where it went.
pub struct Outcome {
    /// `shop/client -> shop/echo-2`.
    pub what: String,
    /// A few words: what was sent, or why it stayed outside the mesh.
    pub note: String,
    pub route: Route,
}

/// Step 7: the connections by route, and node1's counters when they add up.
pub fn summary(outcomes: &[Outcome], node1: &Counters) {
    let mut counts = [0u64; 2];
    for (i, (route, title)) in [
        (Route::Mesh, "Through the mesh"),
        (Route::Direct, "Directly, as the labels ask"),
    ]
    .into_iter()
    .enumerate()
    {
        let these: Vec<&Outcome> = outcomes.iter().filter(|o| o.route == route).collect();
        counts[i] = these.len() as u64;
        println!("   {title} ({}):", these.len());
        for o in these {
            println!("     {:<34} {}", o.what, o.note);
        }
    }
    let [mesh, direct] = counts;
    let (redirected, established, skipped, node_netns) = (
        node1.get("redirected"),
        node1.get("established"),
        node1.get("skipped_not_enrolled"),
        node1.get("skipped_node_netns"),
    );
    println!(
        "   node1's kernel counted redirected {redirected}, established {established}, \
         skipped_not_enrolled {skipped}, skipped_node_netns {node_netns}."
    );
    if redirected == mesh && established == mesh && skipped == direct && node_netns == mesh {
        println!(
            "   That is {mesh} connections into the mesh, the {direct} direct ones left alone, and the\n   \
             agent's own {mesh} upstream connects, made from the node's network namespace."
        );
    }
    println!(
        "\n   Try next: `cargo xtask demo --keep` leaves it all up to poke at by hand;\n   \
         `cargo xtask test` runs the end-to-end tests."
    );
}

/// The end of a run without `--keep`.
pub fn teardown(name: &str, report: &Report) -> Result<()> {
    if !report.is_clean() {
        bail!("tearing down sandbox {name} left something behind:\n{report}");
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running ip netns list")?;
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .map(String::from)
        .collect();
    if !left.is_empty() {
        bail!("after teardown, network namespaces remain: {left:?}");
    }
    println!(
        "\nTorn down: {} objects removed (namespaces, cgroups, pinned maps); no {name}-* network namespace is left.",
        report.removed.len()
    );
    Ok(())
}

/// What `--keep` leaves, and how to use it by hand.
pub fn keep_instructions(mesh: &MeshCluster, cast: &[Member]) -> Result<()> {
    let sb = &mesh.sb;
    println!("\nThe sandbox {} stays up. To poke at it:", sb.name());
    println!(
        "   network namespaces (`ip netns list | grep {}`):",
        sb.name()
    );
    for short in NODES {
        println!("     {:<18} {}", short, mesh.node(short)?.netns);
    }
    for member in cast {
        let pod = pod(mesh, member)?;
        println!("     {:<18} {}", pod.id(), pod.netns);
    }
    let node1 = mesh.node("node1")?;
    let agent = std::fs::canonicalize(ambit_e2e::binary("ambit-node")?)?;
    println!("   the inspector:");
    println!("     cargo xtask inspect --node {}", node1.name);
    println!("     {} inspect --node {}", agent.display(), node1.name);
    let client = pod(mesh, &cast[0])?;
    let echo2 = sb.pod("shop", "echo-2").context("no pod shop/echo-2")?;
    println!(
        "   a client in {} by hand: join the pod's cgroup (the redirect hooks cgroups), then \
         its netns:",
        client.id()
    );
    println!("     POD={}", client.netns);
    println!("     CG={}", client.cgroup_dir.display());
    println!(
        "     APP={}",
        std::fs::canonicalize(mesh.app.path())?.display()
    );
    println!(
        "     sh -c \"echo \\$\\$ > $CG/cgroup.procs && exec ip netns exec $POD $APP whoami \
         --addr {}:{WHOAMI_PORT}\"",
        echo2.ip
    );
    println!(
        "     (`hold --addr {}:{ECHO_PORT}` instead of `whoami ...` keeps a connection open for \
         the inspector;\n     type `ping`, Ctrl-D to close. Leave out the cgroup step and \
         compare what whoami reports.)",
        echo2.ip
    );
    println!(
        "   agent logs: {}/agent-node1.log, agent-node2.log",
        sb.dir().display()
    );
    println!("   remove everything: cargo xtask sandbox down");
    Ok(())
}

/// The last lines of an agent's log (without colours), for an error message; `None` if empty.
pub fn log_tail(node: &str, log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    if lines.is_empty() {
        return None;
    }
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Some(format!(
        "\n--- last lines of {node}'s agent log ---\n{}",
        strip_colours(&tail)
    ))
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

fn pod(mesh: &MeshCluster, member: &Member) -> Result<Pod> {
    mesh.sb
        .pod(member.namespace, member.name)
        .cloned()
        .with_context(|| format!("no pod {}/{}", member.namespace, member.name))
}

fn member_of(pod: &Pod) -> Result<&'static Member> {
    CAST.iter()
        .find(|m| m.namespace == pod.namespace && m.name == pod.name)
        .with_context(|| format!("{} is not in the demo's cast", pod.id()))
}
