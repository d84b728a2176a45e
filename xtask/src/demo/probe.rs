//! One connection of the demo and the evidence of where it went: the peer address the server
//! saw, and how the source node's kernel counters moved meanwhile.
//!
//! A connection counts as "through the mesh" when the source node's kernel counted a redirect
//! and an established record for it. The server's view must agree: through the mesh it sees
//! the pod's own address (the destination agent keeps the caller's address) or, where that is
//! off, the delivering agent's; directly, always the pod's own. Anything else fails the demo
//! with a message that says what was seen.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use ambit_e2e::cluster::MeshCluster;
use ambit_e2e::testapp::WHOAMI_PORT;
use ambit_e2e::{Node, Pod};
use anyhow::{bail, Context, Result};

/// A node's kernel counters at one moment, as the inspector reports them.
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    pub fn read(mesh: &MeshCluster, node: &str) -> Result<Counters> {
        let report = mesh.inspect(node)?;
        let counters = report["counters"]
            .as_object()
            .with_context(|| format!("the inspector's report for {node} has no counters"))?
            .iter()
            .filter_map(|(name, v)| Some((name.clone(), v.as_u64()?)))
            .collect();
        Ok(Counters(counters))
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How much `name` grew since `before`.
    pub fn since(&self, before: &Counters, name: &str) -> u64 {
        self.get(name).saturating_sub(before.get(name))
    }
}

/// Where a connection went, judged from the source node's kernel counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The source node's agent captured it; the destination node's agent delivered it (over
    /// the mTLS tunnel when the nodes differ).
    Mesh,
    /// The client pod reached the server itself.
    Direct,
}

/// One probe's evidence.
pub struct Probe {
    pub from: Pod,
    pub to: Pod,
    pub route: Route,
    /// The client address the server saw.
    pub peer: SocketAddr,
    /// Through the mesh: the server saw the pod's own address, not an agent's.
    pub address_kept: bool,
    /// The caller identity the destination's agent verified (mTLS), from its log.
    pub caller_identity: Option<String>,
    /// Growth of the source node's kernel counters during the probe.
    pub redirected: u64,
    pub established: u64,
    pub skipped_not_enrolled: u64,
}

impl Probe {
    /// `shop/client -> shop/echo-2`.
    pub fn title(&self) -> String {
        format!("{} -> {}", self.from.id(), self.to.id())
    }
}

/// Asks `to`'s whoami server who is calling, from `from`, and checks the answer against `want`.
pub fn whoami(mesh: &MeshCluster, from: &Pod, to: &Pod, want: Route) -> Result<Probe> {
    let node = mesh.node(&from.node)?;
    let delivering = mesh.node(&to.node)?;
    let before = Counters::read(mesh, &from.node)?;
    let seen = mesh.whoami(from, SocketAddrV4::new(to.ip, WHOAMI_PORT))?;
    let after = Counters::read(mesh, &from.node)?;
    if seen.server != to.name {
        bail!(
            "{} answered as {:?}: the connection reached the wrong server",
            to.id(),
            seen.server
        );
    }
    let redirected = after.since(&before, "redirected");
    let route = if redirected > 0 {
        Route::Mesh
    } else {
        Route::Direct
    };
    let own_address = seen.peer.ip() == IpAddr::V4(from.ip);
    let agents_address = route == Route::Mesh && is_agent_address(&delivering, seen.peer.ip());
    if !own_address && !agents_address {
        bail!(
            "{} saw the connection from {} coming from {}, which is neither the pod ({}) nor \
             {}'s agent ({})",
            to.id(),
            from.id(),
            seen.peer,
            from.ip,
            delivering.short_name,
            delivering.address
        );
    }
    let caller_identity = (route == Route::Mesh && to.node != from.node)
        .then(|| verified_caller(mesh, &to.node, SocketAddrV4::new(to.ip, WHOAMI_PORT)))
        .flatten();
    let probe = Probe {
        from: from.clone(),
        to: to.clone(),
        route,
        peer: seen.peer,
        address_kept: route == Route::Mesh && own_address,
        caller_identity,
        redirected,
        established: after.since(&before, "established"),
        skipped_not_enrolled: after.since(&before, "skipped_not_enrolled"),
    };
    check(&probe, want, &node)?;
    Ok(probe)
}

/// The caller identity `node`'s agent logged for its latest inbound tunnel to `target`.
fn verified_caller(mesh: &MeshCluster, node: &str, target: SocketAddrV4) -> Option<String> {
    let log = mesh.agent_log(node);
    let needle = format!("target={target}");
    log.lines()
        .rev()
        .filter(|l| l.contains("inbound connection") && l.contains(&needle))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("caller="))
                .map(String::from)
        })
}

/// The addresses the agent of `node` connects from: its fabric address towards other nodes,
/// the pods' gateway address towards its own pods.
pub fn is_agent_address(node: &Node, ip: IpAddr) -> bool {
    ip == IpAddr::V4(node.address) || ip == IpAddr::V4(node.pod_gateway)
}

/// Fails unless the kernel counters say `want`, consistently.
fn check(probe: &Probe, want: Route, node: &Node) -> Result<()> {
    let what = probe.title();
    match (want, probe.route) {
        (Route::Mesh, Route::Direct) => bail!(
            "{what} should have gone through {}'s agent, but {}'s kernel did not redirect it \
             (redirected +0; {} saw {})",
            node.short_name,
            node.short_name,
            probe.to.name,
            probe.peer
        ),
        (Route::Direct, Route::Mesh) => bail!(
            "{what} should have gone directly, but {}'s kernel redirected it (redirected +{}): \
             a pod outside the mesh was redirected",
            node.short_name,
            probe.redirected
        ),
        (Route::Mesh, Route::Mesh) if probe.established == 0 => bail!(
            "{what}: {}'s kernel counted redirected +{} but established +0: the agent did not \
             take the connection",
            node.short_name,
            probe.redirected
        ),
        _ => Ok(()),
    }
}
