//! tc ingress on the interfaces that lead to this node's enrolled pods: the return path of
//! connections the agent delivers from the caller's own address.
//!
//! The agent opens such a connection with `IP_TRANSPARENT`, bound to the caller's address, so
//! the pod sees who called. The pod's replies are addressed to the caller, which lives on
//! another node (or behind another veth): routing would forward them away from the agent.
//! When a packet from a pod belongs to a TCP socket of this namespace, it is marked, and the
//! agent's policy rule sends marked packets to the local stack, where that socket takes it.
//!
//! The same mark serves `capture`, on the interfaces towards other nodes: HBONE connections
//! addressed to a pod of this node (as Istio's ztunnel makes them) are routed to the agent's
//! transparent listener instead of into the pod.
//!
//! # Invariants
//! - Only packets of an existing, non-listening TCP socket of this namespace are marked: a
//!   pod's reply to anything else (a client that reached it without the agent) is routed as
//!   before. Packets to the agent's own address (redirected connections) are local anyway and
//!   are left alone, so the counter counts steered replies only.
//! - Never drops, never redirects: returns `TC_ACT_UNSPEC`, so programs of other owners on the
//!   same interface still run.

use ambit_common::{Counter, IpWords};
use aya_ebpf::{
    bindings::{bpf_sock_tuple, BPF_F_CURRENT_NETNS},
    helpers::generated::{bpf_sk_release, bpf_skc_lookup_tcp},
    programs::TcContext,
};

use crate::counters::count;
use crate::orig_dst::is_agent_ip;
use crate::{LOCAL_PODS, REDIRECT_CONFIG};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
/// `BPF_TCP_LISTEN`: a listener matches any reply to its port; only connected sockets count.
const TCP_LISTEN: u32 = 10;
/// `bpf_sock_tuple`'s IPv4 and IPv6 sizes, as `bpf_skc_lookup_tcp` wants them.
const TUPLE4: u32 = 12;
const TUPLE6: u32 = 36;

/// The addresses and ports of a TCP packet, as on the wire (network order).
struct Packet {
    src: IpWords,
    dst: IpWords,
    sport: u16,
    dport: u16,
}

/// Marks `ctx` with `mark` when it belongs to a connected TCP socket of this namespace.
pub fn steer(ctx: &TcContext, mark: u32) {
    if mark == 0 {
        return;
    }
    let Some(packet) = parse(ctx) else {
        return;
    };
    let Some(cfg) = REDIRECT_CONFIG.get(0) else {
        return;
    };
    // Redirected connections: addressed to the agent, local anyway.
    if is_agent_ip(cfg, &packet.dst) {
        return;
    }
    // SAFETY: an all-zero tuple is a valid value of this plain C union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = match (packet.src.v4_raw(), packet.dst.v4_raw()) {
        (Some(saddr), Some(daddr)) => {
            // SAFETY: writing the IPv4 member of the union.
            let v4 = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
            v4.saddr = saddr;
            v4.daddr = daddr;
            v4.sport = packet.sport;
            v4.dport = packet.dport;
            TUPLE4
        }
        _ => {
            // SAFETY: writing the IPv6 member of the union.
            let v6 = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
            v6.saddr = packet.src.0;
            v6.daddr = packet.dst.0;
            v6.sport = packet.sport;
            v6.dport = packet.dport;
            TUPLE6
        }
    };
    // SAFETY: the context's skb pointer and a tuple of the size given; the returned socket is
    // released below on every path.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.skb.skb.cast(),
            &mut tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return;
    }
    // SAFETY: `sk` is a non-null socket from the lookup; `state` is readable from it.
    let state = unsafe { (*sk).state };
    // SAFETY: releases the reference the lookup took.
    unsafe { bpf_sk_release(sk.cast()) };
    if state != TCP_LISTEN {
        ctx.set_mark(mark);
        count(Counter::RepliesSteered);
    }
}

/// On the interfaces that lead to other nodes: marks TCP to `port` (HBONE, 15008) of a pod
/// of this node in LOCAL_PODS, so that the agent's transparent listener takes it. Istio's
/// ztunnel dials the destination pod's own address there.
pub fn capture(ctx: &TcContext, mark: u32, port: u16) {
    if mark == 0 || port == 0 {
        return;
    }
    let Some(packet) = parse(ctx) else {
        return;
    };
    if u16::from_be(packet.dport) != port {
        return;
    }
    // SAFETY: only tested for presence.
    if unsafe { LOCAL_PODS.get(&packet.dst) }.is_some() {
        ctx.set_mark(mark);
        count(Counter::HboneCaptured);
    }
}

/// Reads a TCP packet's addresses (IPv4 as IPv4-mapped) and ports.
fn parse(ctx: &TcContext) -> Option<Packet> {
    let proto = u16::from_be(ctx.load::<u16>(12).ok()?);
    match proto {
        ETH_P_IP => {
            let version_ihl = ctx.load::<u8>(ETH_HLEN).ok()?;
            let frag = u16::from_be(ctx.load::<u16>(ETH_HLEN + 6).ok()?);
            // Later fragments carry no TCP header.
            if ctx.load::<u8>(ETH_HLEN + 9).ok()? != IPPROTO_TCP || frag & 0x1fff != 0 {
                return None;
            }
            let tcp = ETH_HLEN + usize::from(version_ihl & 0x0f) * 4;
            Some(Packet {
                src: IpWords::from_v4_raw(ctx.load(ETH_HLEN + 12).ok()?),
                dst: IpWords::from_v4_raw(ctx.load(ETH_HLEN + 16).ok()?),
                sport: ctx.load(tcp).ok()?,
                dport: ctx.load(tcp + 2).ok()?,
            })
        }
        ETH_P_IPV6 => {
            // Extension headers are not walked: TCP of the mesh carries none.
            if ctx.load::<u8>(ETH_HLEN + 6).ok()? != IPPROTO_TCP {
                return None;
            }
            let tcp = ETH_HLEN + 40;
            Some(Packet {
                src: IpWords(ctx.load(ETH_HLEN + 8).ok()?),
                dst: IpWords(ctx.load(ETH_HLEN + 24).ok()?),
                sport: ctx.load(tcp).ok()?,
                dport: ctx.load(tcp + 2).ok()?,
            })
        }
        _ => None,
    }
}
