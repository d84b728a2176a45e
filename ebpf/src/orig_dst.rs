//! sockops: move original-destination records to the agent's key, join same-node sockets to
//! the fast path, and remove records when connections close.
//!
//! The agent holds the accepted socket, not the client's, so it cannot use the client's socket
//! cookie. On `ACTIVE_ESTABLISHED` of a redirected client socket the record moves from the
//! cookie to the connection's 4-tuple as the agent sees it (`local` = agent, `remote` = client).
//!
//! # Invariants
//! - A record lives as long as the agent's end of the connection: it is removed on that
//!   socket's `TCP_CLOSE`, whether the agent closed it, crashed, or never accepted it. A
//!   client that writes and closes before the agent accepts still has its record.
//! - A pending record of a connect that never completes is removed on that socket's close.

use ambit_common::{Counter, IpWords, RedirectConfig, SockKey};
use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE,
    },
    helpers::bpf_get_socket_cookie,
    programs::SockOpsContext,
    EbpfContext,
};
use aya_log_ebpf::debug;

use crate::counters::count;
use crate::ctx::{read_ends, read_u32};
use crate::{ORIG_DST, PENDING_ORIG_DST, REDIRECT_CONFIG, SOCK_FASTPATH};


pub fn on_sock_op(ctx: &SockOpsContext) {
    let Some(cfg) = REDIRECT_CONFIG.get(0) else {
        return;
    };
    if cfg.outbound_port == 0 {
        return;
    }
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(ctx),
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => on_active_established(ctx, cfg),
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => on_passive_established(ctx, cfg),
        BPF_SOCK_OPS_STATE_CB => {
            if ctx.arg(1) == BPF_TCP_CLOSE {
                on_close(ctx, cfg);
            }
        }
        _ => {}
    }
}

/// A redirected connect is about to send its SYN: ask for state callbacks so that a pending
/// record of a connect that fails is removed.
fn on_connect(ctx: &SockOpsContext) {
    let cookie = socket_cookie(ctx);
    // SAFETY: only tested for presence.
    if unsafe { PENDING_ORIG_DST.get(&cookie) }.is_some() {
        let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
    }
}

/// Client side established. For a redirected socket: move its record to the agent's key and
/// join the fast path.
fn on_active_established(ctx: &SockOpsContext, cfg: &RedirectConfig) {
    let cookie = socket_cookie(ctx);
    let Some(orig) = PENDING_ORIG_DST.get_ptr(&cookie) else {
        return;
    };
    // SAFETY: the pointer comes from a successful lookup; the value is copied immediately.
    let orig = unsafe { *orig };
    let own = own_view(ctx);
    // The agent computes this key from its accepted socket: (local_addr, peer_addr).
    if ORIG_DST.insert(&own.peer_view(), &orig, 0).is_err() {
        // The agent will find no record and refuse the connection: the client sees a reset
        // rather than a connection that bypassed the mesh.
        count(Counter::OrigDstMapFull);
    } else {
        count(Counter::Established);
    }
    let _ = PENDING_ORIG_DST.remove(&cookie);
    debug!(ctx, "established redirected connection, local port {}", own.local_port);
    if cfg.flags & RedirectConfig::FLAG_FASTPATH != 0 {
        join_fastpath(ctx, own);
    }
}

/// Server side established. Two cases matter: the agent accepting a redirected connection
/// (record cleanup, fast path) and a same-node pod accepting a connection from the agent
/// (fast path). The agent's own outbound sockets are joined by the agent itself, because only
/// it knows which of them lead to a pod on this node.
fn on_passive_established(ctx: &SockOpsContext, cfg: &RedirectConfig) {
    let own = own_view(ctx);
    let fastpath = cfg.flags & RedirectConfig::FLAG_FASTPATH != 0;
    if is_agent_listener(cfg, &own) {
        let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
        // SAFETY: only tested for presence.
        if unsafe { ORIG_DST.get(&own) }.is_none() {
            count(Counter::RecordMissing);
        }
        if fastpath {
            join_fastpath(ctx, own);
        }
    } else if fastpath && is_agent_ip(cfg, &own.remote_ip) {
        join_fastpath(ctx, own);
    }
}

fn on_close(ctx: &SockOpsContext, cfg: &RedirectConfig) {
    let own = own_view(ctx);
    if is_agent_listener(cfg, &own) {
        if ORIG_DST.remove(&own).is_ok() {
            count(Counter::RecordClosed);
        }
    } else {
        // A redirected connect that never reached ESTABLISHED.
        let _ = PENDING_ORIG_DST.remove(&socket_cookie(ctx));
    }
}

fn join_fastpath(ctx: &SockOpsContext, mut own: SockKey) {
    // SAFETY: ctx.ops is the valid sock_ops context of this run.
    if SOCK_FASTPATH.update(&mut own, unsafe { &mut *ctx.ops }, 0).is_err() {
        count(Counter::FastpathInsertFailed);
    }
}

#[inline(always)]
fn is_agent_listener(cfg: &RedirectConfig, own: &SockKey) -> bool {
    own.local_port == u32::from(cfg.outbound_port) && is_agent_ip(cfg, &own.local_ip)
}

/// Whether `ip` is the agent's address (IPv4-mapped for IPv4).
#[inline(always)]
pub(crate) fn is_agent_ip(cfg: &RedirectConfig, ip: &IpWords) -> bool {
    match ip.v4_raw() {
        Some(raw) => raw == cfg.agent_ip4,
        None => !cfg.agent_ip6.is_zero() && *ip == cfg.agent_ip6,
    }
}

#[inline(always)]
fn socket_cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: the helper only reads the context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// This socket's connection as seen from this socket.
#[inline(always)]
fn own_view(ctx: &SockOpsContext) -> SockKey {
    let ops = ctx.ops;
    let (local_ip, remote_ip) = read_ends!(ops);
    SockKey {
        local_ip,
        remote_ip,
        local_port: read_u32!(ops, local_port),
        // Network order in the upper 16 bits; from_be brings it down to host order.
        remote_port: u32::from_be(read_u32!(ops, remote_port)),
    }
}
