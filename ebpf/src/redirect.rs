//! cgroup/connect4 and cgroup/connect6: send an enrolled pod's TCP connects to the node agent.
//!
//! The destination the application asked for is recorded under the socket's cookie and the
//! connect is rewritten to the agent's outbound listener. `orig_dst.rs` moves the record to a
//! key the agent can compute once the handshake completes.
//!
//! # Invariants
//! - Only TCP stream sockets of enrolled network namespaces are touched; everything else is
//!   allowed unchanged and counted by reason.
//! - A connect is never redirected without a record: if the record cannot be stored (map
//!   full) the connect fails with EPERM instead of bypassing the mesh.

use ambit_common::{Counter, IpWords, OrigDst, RedirectConfig};
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_ns},
    maps::lpm_trie::Key,
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::debug;

use crate::counters::count;
use crate::ctx::{read_ip6, read_u32};
use crate::{EXCLUDED_CIDRS, EXCLUDED_PORTS, ENROLLED_NETNS, PENDING_ORIG_DST, REDIRECT_CONFIG};

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The connect must fail: redirecting it without a record would bypass the mesh.
pub struct Refused;

/// What the program decided for one connect, before touching the socket.
enum Verdict {
    Skip(Counter),
    Redirect { to: IpWords, port: u16 },
}

pub fn try_connect4(ctx: &SockAddrContext) -> Result<(), Refused> {
    let sa = ctx.sock_addr;
    let dst = IpWords::from_v4_raw(read_u32!(sa, user_ip4));
    let port = u16::from_be(read_u32!(sa, user_port) as u16);
    match decide(ctx, sa, dst, port) {
        Verdict::Skip(reason) => {
            count(reason);
            Ok(())
        }
        Verdict::Redirect { to, port: agent_port } => {
            let Some(agent_ip4) = to.v4_raw() else {
                count(Counter::SkippedAgentAddress);
                return Ok(());
            };
            record(ctx, dst, port, AF_INET)?;
            // SAFETY: connect4 may write user_ip4 and user_port (4-byte stores).
            unsafe {
                (*sa).user_ip4 = agent_ip4;
                (*sa).user_port = u32::from(agent_port.to_be());
            }
            count(Counter::Redirected);
            debug!(ctx, "redirect {:i}:{} -> agent", u32::from_be(dst.0[3]), port);
            Ok(())
        }
    }
}

pub fn try_connect6(ctx: &SockAddrContext) -> Result<(), Refused> {
    let sa = ctx.sock_addr;
    let dst = IpWords(read_ip6!(sa, user_ip6));
    let port = u16::from_be(read_u32!(sa, user_port) as u16);
    match decide(ctx, sa, dst, port) {
        Verdict::Skip(reason) => {
            count(reason);
            Ok(())
        }
        Verdict::Redirect { to, port: agent_port } => {
            record(ctx, dst, port, AF_INET6)?;
            // SAFETY: connect6 may write user_ip6 (word by word) and user_port.
            unsafe {
                (*sa).user_ip6[0] = to.0[0];
                (*sa).user_ip6[1] = to.0[1];
                (*sa).user_ip6[2] = to.0[2];
                (*sa).user_ip6[3] = to.0[3];
                (*sa).user_port = u32::from(agent_port.to_be());
            }
            count(Counter::Redirected);
            debug!(ctx, "redirect ipv6 destination port {} -> agent", port);
            Ok(())
        }
    }
}

/// The decision table: which connects are redirected, and where to.
#[inline(always)]
fn decide(ctx: &SockAddrContext, sa: *mut bpf_sock_addr, dst: IpWords, port: u16) -> Verdict {
    if read_u32!(sa, type_) != SOCK_STREAM || read_u32!(sa, protocol) != IPPROTO_TCP {
        return Verdict::Skip(Counter::SkippedNotTcp);
    }
    let Some(cfg) = REDIRECT_CONFIG.get(0) else {
        return Verdict::Skip(Counter::SkippedNoConfig);
    };
    if cfg.outbound_port == 0 {
        return Verdict::Skip(Counter::SkippedNoConfig);
    }
    // SAFETY: the helper only reads the context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    if netns == cfg.agent_netns_cookie {
        return Verdict::Skip(Counter::SkippedNodeNetns);
    }
    // SAFETY: only tested for presence.
    if unsafe { ENROLLED_NETNS.get(&netns) }.is_none() {
        return Verdict::Skip(Counter::SkippedNotEnrolled);
    }
    if dst.is_loopback() {
        return Verdict::Skip(Counter::SkippedLoopback);
    }
    if is_agent_address(cfg, &dst) {
        return Verdict::Skip(Counter::SkippedAgentAddress);
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { EXCLUDED_PORTS.get(&port) }.is_some() {
        return Verdict::Skip(Counter::SkippedExcludedPort);
    }
    if EXCLUDED_CIDRS.get(Key::new(128, dst.to_bytes())).is_some() {
        return Verdict::Skip(Counter::SkippedExcludedCidr);
    }
    let to = if dst.is_v4_mapped() {
        IpWords::from_v4_raw(cfg.agent_ip4)
    } else if cfg.agent_ip6.is_zero() {
        return Verdict::Skip(Counter::SkippedNoAgentIpv6);
    } else {
        cfg.agent_ip6
    };
    if to.v4_raw() == Some(0) {
        return Verdict::Skip(Counter::SkippedNoConfig);
    }
    Verdict::Redirect {
        to,
        port: cfg.outbound_port,
    }
}

#[inline(always)]
fn is_agent_address(cfg: &RedirectConfig, dst: &IpWords) -> bool {
    match dst.v4_raw() {
        Some(raw) => raw == cfg.agent_ip4,
        None => !cfg.agent_ip6.is_zero() && *dst == cfg.agent_ip6,
    }
}

/// Stores the original destination under the socket cookie until the handshake completes.
#[inline(always)]
fn record(ctx: &SockAddrContext, ip: IpWords, port: u16, family: u16) -> Result<(), Refused> {
    // SAFETY: the helpers only read the context.
    let (cookie, netns_cookie) =
        unsafe { (bpf_get_socket_cookie(ctx.as_ptr()), bpf_get_netns_cookie(ctx.as_ptr())) };
    let orig = OrigDst {
        ip,
        netns_cookie,
        // SAFETY: no preconditions.
        created_ns: unsafe { bpf_ktime_get_ns() },
        port,
        family,
        _pad: 0,
    };
    if PENDING_ORIG_DST.insert(&cookie, &orig, 0).is_err() {
        count(Counter::OrigDstMapFull);
        return Err(Refused);
    }
    Ok(())
}
