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
//! The same mark and table serve `capture_hbone`, on the interfaces towards other nodes: an
//! HBONE connection addressed to a pod's own address (Istio's ztunnel makes those) is routed
//! to the agent's listener, which is transparent for the purpose.
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

use ambit_common::maps::programs::{CAPTURE_HBONE, STEER_REPLIES};
use ambit_common::maps::{LOCAL_PODS, LOCAL_PODS_MAX};
use ambit_common::IpWords;
use anyhow::{anyhow, Context, Result};
use aya::maps::{HashMap, MapData};
use aya::programs::tc::{self, SchedClassifierLinkId};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;

pub use netlink::Routing;

use crate::run_dir::ReturnPathView;
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

/// One tc program's attachments, by interface index (not name: a pod's interface name comes
/// back with the next pod, on a new device).
struct Attachments {
    program: &'static str,
    attached: BTreeMap<u32, SchedClassifierLinkId>,
    /// Interfaces that refused the program, reported once each.
    refused: BTreeSet<u32>,
}

impl Attachments {
    fn new(program: &'static str) -> Self {
        Attachments {
            program,
            attached: BTreeMap::new(),
            refused: BTreeSet::new(),
        }
    }

    /// Attaches to each of `wanted` not attached yet, detaches from the others; returns the
    /// interfaces that carry the program now.
    fn sync(&mut self, ebpf: &mut Ebpf, wanted: &BTreeSet<u32>) -> BTreeSet<u32> {
        let Some(prog) = ebpf
            .program_mut(self.program)
            .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        else {
            return BTreeSet::new();
        };
        for &oif in wanted {
            if let Entry::Vacant(slot) = self.attached.entry(oif) {
                match attach(prog, oif) {
                    Ok(link) => {
                        slot.insert(link);
                        self.refused.remove(&oif);
                    }
                    Err(e) => {
                        if self.refused.insert(oif) {
                            tracing::warn!(
                                program = self.program,
                                ifindex = oif,
                                error = format!("{e:#}"),
                                "tc program did not attach"
                            );
                        }
                    }
                }
            }
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
        self.attached.keys().copied().collect()
    }
}

/// The installed return path: the rule, the route, and the programs' attachments.
pub struct ReturnPath {
    routing: Routing,
    netlink: Rtnetlink,
    /// `steer_replies`, on the interfaces that lead to this node's pods.
    replies: Attachments,
    /// `capture_hbone`, on the interfaces that lead to other nodes.
    uplinks: Attachments,
    /// What LOCAL_PODS holds, as written by the last reconcile.
    local_pods: HashMap<MapData, IpWords, u8>,
    in_local_pods: HashSet<IpAddr>,
    steered: Arc<Steered>,
}

impl ReturnPath {
    /// Loads `steer_replies` and `capture_hbone` (their mark and port were set when the
    /// object was loaded) and installs the policy rule and local route, for IPv4 and, where
    /// the node has it, IPv6.
    pub fn install(ebpf: &mut Ebpf, routing: Routing) -> Result<Self> {
        for name in [STEER_REPLIES, CAPTURE_HBONE] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))?
                .try_into()?;
            prog.load().with_context(|| {
                format!("loading {name}: needs tc BPF (CONFIG_NET_CLS_BPF) with bpf_skc_lookup_tcp (Linux ≥ 5.2); or run with --client-address agent")
            })?;
        }
        let local_pods = ebpf
            .take_map(LOCAL_PODS)
            .ok_or_else(|| anyhow!("map {LOCAL_PODS} is missing from the eBPF object"))?;
        let local_pods = HashMap::try_from(local_pods)?;
        let netlink = Rtnetlink::open().context("opening rtnetlink")?;
        let loopback = interface_index("lo")?;
        for ipv6 in [false, true] {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            for msg in netlink::return_path_messages(true, ipv6, &routing, loopback) {
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
            routing,
            netlink,
            replies: Attachments::new(STEER_REPLIES),
            uplinks: Attachments::new(CAPTURE_HBONE),
            local_pods,
            in_local_pods: HashSet::new(),
            steered: Arc::default(),
        })
    }

    pub fn steered(&self) -> Arc<Steered> {
        Arc::clone(&self.steered)
    }

    /// Puts `steer_replies` on the interface of each of `pods` (this node's enrolled pods)
    /// and `capture_hbone` on the interfaces towards `remote` (other nodes and their pods),
    /// takes both off interfaces no longer wanted, and publishes the pods now covered. HBONE
    /// to the pods in `own_hbone` (waypoints, which serve it themselves) is not captured.
    pub fn reconcile(
        &mut self,
        ebpf: &mut Ebpf,
        pods: impl IntoIterator<Item = IpAddr>,
        own_hbone: &HashSet<IpAddr>,
        remote: impl IntoIterator<Item = IpAddr>,
    ) {
        let mut pod_interfaces = BTreeMap::new();
        for ip in pods {
            if let Some(oif) = self.interface_to(ip) {
                pod_interfaces.insert(ip, oif);
            }
        }
        let wanted = pod_interfaces.values().copied().collect();
        let carrying = self.replies.sync(ebpf, &wanted);
        let covered: HashSet<IpAddr> = pod_interfaces
            .iter()
            .filter(|(_, oif)| carrying.contains(oif))
            .map(|(ip, _)| *ip)
            .collect();
        let uplinks = remote
            .into_iter()
            .filter_map(|ip| self.interface_to(ip))
            .filter(|oif| !wanted.contains(oif))
            .collect();
        self.uplinks.sync(ebpf, &uplinks);
        let captured = covered.difference(own_hbone).copied().collect();
        self.write_local_pods(&captured);
        self.steered.replace(covered);
    }

    /// What the inspector shows of the return path.
    pub fn view(&self) -> ReturnPathView {
        let names = |a: &Attachments| {
            a.attached
                .keys()
                .map(|&i| interface_name(i).unwrap_or_else(|_| format!("ifindex {i}")))
                .collect()
        };
        let mut kept_pods: Vec<IpAddr> = self
            .steered
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        kept_pods.sort();
        ReturnPathView {
            mark: format!("{:#x}", self.routing.mark),
            table: self.routing.table,
            kept_pods,
            reply_interfaces: names(&self.replies),
            hbone_interfaces: names(&self.uplinks),
        }
    }

    /// Makes LOCAL_PODS hold `pods`.
    fn write_local_pods(&mut self, pods: &HashSet<IpAddr>) {
        for gone in self.in_local_pods.difference(pods) {
            let _ = self.local_pods.remove(&IpWords::from(*gone));
        }
        self.in_local_pods.retain(|ip| pods.contains(ip));
        for &ip in pods {
            if self.in_local_pods.contains(&ip) {
                continue;
            }
            match self.local_pods.insert(IpWords::from(ip), 1, 0) {
                Ok(()) => {
                    self.in_local_pods.insert(ip);
                }
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "LOCAL_PODS is full ({LOCAL_PODS_MAX}): HBONE to this pod's own address is not served")
                }
            }
        }
    }

    /// The interface the node routes `ip` through, if it is a unicast route off this node.
    fn interface_to(&self, ip: IpAddr) -> Option<u32> {
        let route = self
            .netlink
            .request(&netlink::route_get_message(ip))
            .and_then(|reply| netlink::parse_route(&reply));
        match route {
            // Host-network pods (a local route) get no steering.
            Ok(route) => route.oif.filter(|_| route.unicast),
            Err(e) => {
                tracing::debug!(%ip, error = %e, "no route");
                None
            }
        }
    }

    /// Removes the rule and the route (on `ambit-node unload`).
    pub fn uninstall(routing: Routing) -> Result<()> {
        let netlink = Rtnetlink::open().context("opening rtnetlink")?;
        let loopback = interface_index("lo")?;
        for ipv6 in [false, true] {
            for msg in netlink::return_path_messages(false, ipv6, &routing, loopback) {
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
