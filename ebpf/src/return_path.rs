//! tc ingress on the interfaces that lead to this node's enrolled pods: the return path of
//! connections the agent delivers from the caller's own address.
//!
//! The agent opens such a connection with `IP_TRANSPARENT`, bound to the caller's address, so
//! the pod sees who called. The pod's replies are addressed to the caller, which lives on
//! another node (or behind another veth): routing would forward them away from the agent.
//! When a packet from a pod belongs to a TCP socket of this namespace, it is marked, and the
//! agent's policy rule sends marked packets to the local stack, where that socket takes it.
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
use crate::REDIRECT_CONFIG;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
/// `BPF_TCP_LISTEN`: a listener matches any reply to its port; only connected sockets count.
const TCP_LISTEN: u32 = 10;
/// `bpf_sock_tuple`'s IPv4 and IPv6 sizes, as `bpf_skc_lookup_tcp` wants them.
const TUPLE4: u32 = 12;
const TUPLE6: u32 = 36;

/// Marks `ctx` with `mark` when it belongs to a connected TCP socket of this namespace.
pub fn steer(ctx: &TcContext, mark: u32) {
    if mark == 0 {
        return;
    }
    // SAFETY: an all-zero tuple is a valid value of this plain C union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let Some(size) = read_tuple(ctx, &mut tuple) else {
        return;
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

/// Fills `tuple` from a TCP packet's addresses and ports, as they are on the wire (the
/// lookup takes them in network order, source first). Returns the tuple's size.
fn read_tuple(ctx: &TcContext, tuple: &mut bpf_sock_tuple) -> Option<u32> {
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
            // SAFETY: writing the IPv4 member of the union.
            let v4 = unsafe { &mut tuple.__bindgen_anon_1.ipv4 };
            v4.saddr = ctx.load(ETH_HLEN + 12).ok()?;
            v4.daddr = ctx.load(ETH_HLEN + 16).ok()?;
            v4.sport = ctx.load(tcp).ok()?;
            v4.dport = ctx.load(tcp + 2).ok()?;
            let cfg = REDIRECT_CONFIG.get(0)?;
            if v4.daddr == cfg.agent_ip4 {
                return None;
            }
            Some(TUPLE4)
        }
        ETH_P_IPV6 => {
            // Extension headers are not walked: TCP replies of the mesh carry none.
            if ctx.load::<u8>(ETH_HLEN + 6).ok()? != IPPROTO_TCP {
                return None;
            }
            let tcp = ETH_HLEN + 40;
            // SAFETY: writing the IPv6 member of the union.
            let v6 = unsafe { &mut tuple.__bindgen_anon_1.ipv6 };
            v6.saddr = ctx.load(ETH_HLEN + 8).ok()?;
            v6.daddr = ctx.load(ETH_HLEN + 24).ok()?;
            v6.sport = ctx.load(tcp).ok()?;
            v6.dport = ctx.load(tcp + 2).ok()?;
            let cfg = REDIRECT_CONFIG.get(0)?;
            if IpWords(v6.daddr) == cfg.agent_ip6 {
                return None;
            }
            Some(TUPLE6)
        }
        _ => None,
    }
}
