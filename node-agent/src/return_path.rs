//! The return path of connections delivered from the caller's address (`--client-address
//! preserve`): the pod sees who called, not the agent.
//!
//! The agent opens such a connection with `IP_TRANSPARENT`, bound to the caller's address.
//! The pod's replies are addressed to the caller, so routing would send them off the node.
//! Two pieces bring them back to the agent's socket:
//! - the kernel program `steer_replies` (tc ingress on every interface that leads to a pod of
//!   this node) marks packets that belong to a TCP socket of the node's namespace;
//! - a policy rule routes marked packets through a table whose only route is local.
//!
//! Delivery is transparent only to pods whose interface carries the program: [`Steered`] is
//! that set of addresses, and the inbound side asks it per connection. Any other pod is
//! delivered from the agent's address, as without this feature.

mod netlink;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ambit_common::maps::programs::STEER_REPLIES;
use anyhow::{anyhow, Context, Result};
use aya::programs::tc::{self, SchedClassifierLinkId};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;

pub use netlink::Routing;
use netlink::Rtnetlink;

/// Pod addresses whose replies are steered back: transparent delivery is safe to them.
#[derive(Debug, Default)]
pub struct Steered(RwLock<HashSet<IpAddr>>);

impl Steered {
    /// Whether a connection from `caller` to the pod at `target` may leave from the caller's
    /// address: `target`'s replies are steered back, and the caller is another host.
    pub fn keeps(&self, caller: IpAddr, target: IpAddr) -> bool {
        // A pod calling itself through a service would answer itself, not the agent.
        let usable = caller.is_ipv4() == target.is_ipv4()
            && caller != target
            && !caller.is_unspecified()
            && !caller.is_loopback();
        usable
            && self
                .0
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&target)
    }

    pub(crate) fn replace(&self, ips: HashSet<IpAddr>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ips;
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The installed return path: the rule, the route, and the program's attachments.
pub struct ReturnPath {
    netlink: Rtnetlink,
    /// ifindex -> the program's link on its ingress. Keyed by index, not name: a pod's
    /// interface name comes back with the next pod, on a new device.
    attached: BTreeMap<u32, SchedClassifierLinkId>,
    /// Interfaces that refused the program, reported once each.
    refused: BTreeSet<u32>,
    steered: Arc<Steered>,
}

impl ReturnPath {
    /// Loads `steer_replies` (its mark was set when the object was loaded) and installs the
    /// policy rule and local route, for IPv4 and, where the node has it, IPv6.
    pub fn install(ebpf: &mut Ebpf, routing: Routing) -> Result<Self> {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(STEER_REPLIES)
            .ok_or_else(|| anyhow!("program {STEER_REPLIES} is missing from the eBPF object"))?
            .try_into()?;
        prog.load().with_context(|| {
            format!("loading {STEER_REPLIES}: needs tc BPF (CONFIG_NET_CLS_BPF) with bpf_skc_lookup_tcp (Linux ≥ 5.2); or run with --client-address agent")
        })?;
        let netlink = Rtnetlink::open().context("opening rtnetlink")?;
        let loopback = interface_index("lo")?;
        for ipv6 in [false, true] {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            let rule = netlink::rule_message(true, ipv6, &routing);
            let route = netlink::local_route_message(true, ipv6, routing.table, loopback);
            for msg in [rule, route] {
                match netlink.ack(&msg) {
                    Ok(()) => {}
                    // An agent restarting finds its own rule and route in place.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) if ipv6 && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                        tracing::info!("IPv6 is disabled on this node: IPv4 replies only");
                        break;
                    }
                    Err(e) => {
                        return Err(anyhow!(e).context(format!(
                            "adding the {family} policy rule (fwmark {:#x} lookup {}) or its local route: needs CAP_NET_ADMIN; or run with --client-address agent",
                            routing.mark, routing.table
                        )))
                    }
                }
            }
        }
        Ok(ReturnPath {
            netlink,
            attached: BTreeMap::new(),
            refused: BTreeSet::new(),
            steered: Arc::default(),
        })
    }

    pub fn steered(&self) -> Arc<Steered> {
        Arc::clone(&self.steered)
    }

    /// Attaches the program to the interface of each of `pods`, detaches it from interfaces
    /// that no longer lead to one, and publishes the pods now covered.
    pub fn reconcile(&mut self, ebpf: &mut Ebpf, pods: impl IntoIterator<Item = IpAddr>) {
        let Some(prog) = ebpf
            .program_mut(STEER_REPLIES)
            .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        else {
            return;
        };
        let mut covered = HashSet::new();
        let mut wanted = BTreeSet::new();
        for ip in pods {
            let oif = match self.interface_to(ip) {
                Ok(Some(oif)) => oif,
                // Host-network pods and addresses without a route get no steering.
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(%ip, error = %e, "no route to the pod; its callers' addresses are not kept");
                    continue;
                }
            };
            wanted.insert(oif);
            if let Entry::Vacant(slot) = self.attached.entry(oif) {
                match attach(prog, oif) {
                    Ok(link) => {
                        slot.insert(link);
                        self.refused.remove(&oif);
                    }
                    Err(e) => {
                        if self.refused.insert(oif) {
                            tracing::warn!(ifindex = oif, error = format!("{e:#}"), "steer_replies did not attach; pods behind this interface see the agent's address");
                        }
                        continue;
                    }
                }
            }
            covered.insert(ip);
        }
        let gone: Vec<u32> = self
            .attached
            .keys()
            .filter(|i| !wanted.contains(i))
            .copied()
            .collect();
        for oif in gone {
            if let Some(link) = self.attached.remove(&oif) {
                // Fails when the interface went with its pod, which took the link along.
                let _ = prog.detach(link);
            }
        }
        self.refused.retain(|i| wanted.contains(i));
        self.steered.replace(covered);
    }

    /// The interface the node routes `ip` through, if it is a unicast route off this node.
    fn interface_to(&self, ip: IpAddr) -> io::Result<Option<u32>> {
        let reply = self.netlink.request(&netlink::route_get_message(ip))?;
        let route = netlink::parse_route(&reply)?;
        Ok(route.oif.filter(|_| route.unicast))
    }

    /// Removes the rule and the route (on `ambit-node unload`).
    pub fn uninstall(routing: Routing) -> Result<()> {
        let netlink = Rtnetlink::open().context("opening rtnetlink")?;
        let loopback = interface_index("lo")?;
        for ipv6 in [false, true] {
            for msg in [
                netlink::rule_message(false, ipv6, &routing),
                netlink::local_route_message(false, ipv6, routing.table, loopback),
            ] {
                match netlink.ack(&msg) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ENOENT | libc::ESRCH | libc::EAFNOSUPPORT)
                        ) => {}
                    Err(e) => return Err(anyhow!(e).context("removing the return path's rule")),
                }
            }
        }
        Ok(())
    }
}

/// Attaches to the ingress of interface `oif`; kernels before tcx (6.6) need a clsact qdisc
/// first.
fn attach(prog: &mut SchedClassifier, oif: u32) -> Result<SchedClassifierLinkId> {
    let name = interface_name(oif)?;
    match prog.attach(&name, TcAttachType::Ingress) {
        Ok(link) => Ok(link),
        Err(first) => {
            if tc::qdisc_add_clsact(&name).is_err() {
                return Err(anyhow!(first).context(format!("attaching to {name}")));
            }
            prog.attach(&name, TcAttachType::Ingress)
                .with_context(|| format!("attaching to {name} after adding clsact"))
        }
    }
}

fn interface_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(anyhow!(io::Error::last_os_error()).context(format!("no interface {name}"))),
        index => Ok(index),
    }
}

fn interface_name(index: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return Err(anyhow!(io::Error::last_os_error()).context(format!("interface {index}")));
    }
    // SAFETY: on success, `buf` holds a NUL-terminated name.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}
