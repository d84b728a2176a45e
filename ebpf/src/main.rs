//! Ambit's kernel programs. This file holds the maps and thin entry points only; each program's
//! logic lives in the module named after what it does on the data path.
#![no_std]
#![no_main]

mod counters;
mod ctx;
mod fastpath;
mod orig_dst;
mod redirect;
mod return_path;

use ambit_common::{
    maps::{
        ENROLLED_NETNS_MAX, EXCLUDED_CIDRS_MAX, EXCLUDED_PORTS_MAX, LOCAL_PODS_MAX, ORIG_DST_MAX,
        PENDING_ORIG_DST_MAX, SOCK_FASTPATH_MAX,
    },
    Counter, EnrolledNetns, IpWords, OrigDst, RedirectConfig, SockKey,
};
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_UNSPEC, sk_action::SK_PASS},
    btf_maps::SkStorage,
    macros::{btf_map, cgroup_sock_addr, classifier, map, sk_msg, sock_ops},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, SockHash},
    programs::{SkMsgContext, SockAddrContext, SockOpsContext, TcContext},
};

/// Verdicts of cgroup socket-address programs.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[map]
static ENROLLED_NETNS: HashMap<u64, EnrolledNetns> = HashMap::pinned(ENROLLED_NETNS_MAX, 0);
#[map]
static PENDING_ORIG_DST: HashMap<u64, OrigDst> = HashMap::pinned(PENDING_ORIG_DST_MAX, 0);
#[map]
static ORIG_DST: HashMap<SockKey, OrigDst> = HashMap::pinned(ORIG_DST_MAX, 0);
#[map]
static SOCK_FASTPATH: SockHash<SockKey> = SockHash::pinned(SOCK_FASTPATH_MAX, 0);
#[map]
static REDIRECT_CONFIG: Array<RedirectConfig> = Array::pinned(1, 0);
#[map]
static EXCLUDED_PORTS: HashMap<u16, u8> = HashMap::pinned(EXCLUDED_PORTS_MAX, 0);
#[map]
static EXCLUDED_CIDRS: LpmTrie<[u8; 16], u8> =
    LpmTrie::pinned(EXCLUDED_CIDRS_MAX, BPF_F_NO_PREALLOC);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);
/// Marks sockets that must stay off the fast path (see `fastpath.rs`). Lives and dies with each
/// socket, so it needs no size bound and no cleanup.
#[btf_map]
static FASTPATH_OFF: SkStorage<u8> = SkStorage::new();

#[cgroup_sock_addr(connect4)]
pub fn redirect_connect4(ctx: SockAddrContext) -> i32 {
    match redirect::try_connect4(&ctx) {
        Ok(()) => ALLOW,
        Err(redirect::Refused) => REFUSE,
    }
}

#[cgroup_sock_addr(connect6)]
pub fn redirect_connect6(ctx: SockAddrContext) -> i32 {
    match redirect::try_connect6(&ctx) {
        Ok(()) => ALLOW,
        Err(redirect::Refused) => REFUSE,
    }
}

#[sock_ops]
pub fn record_established(ctx: SockOpsContext) -> u32 {
    orig_dst::on_sock_op(&ctx);
    // The return value of a sockops program only matters for ops that ask for a reply.
    1
}

#[sk_msg]
pub fn forward_msg(ctx: SkMsgContext) -> u32 {
    fastpath::forward(&ctx);
    // Whatever happened, never drop the application's bytes: a failed redirect falls back to
    // the TCP stack (see fastpath.rs).
    SK_PASS
}

/// The mark of pod replies steered back to the agent (see `return_path.rs`); set by the agent
/// at load time, 0 (the default) steers nothing.
#[unsafe(no_mangle)]
static REPLY_MARK: u32 = 0;
/// The agent's HBONE port, for `capture_hbone`; set at load time, 0 captures nothing.
#[unsafe(no_mangle)]
static HBONE_PORT: u16 = 0;
/// Addresses of this node's pods (IPv4-mapped for IPv4) whose HBONE port the agent serves.
/// Not pinned: it belongs to the running agent, whose listener takes what it steers.
#[map]
static LOCAL_PODS: HashMap<IpWords, u8> = HashMap::with_max_entries(LOCAL_PODS_MAX, 0);

#[classifier]
pub fn steer_replies(ctx: TcContext) -> i32 {
    // SAFETY: a read of a load-time constant; volatile so that the default is not folded in.
    let mark = unsafe { core::ptr::read_volatile(&REPLY_MARK) };
    return_path::steer(&ctx, mark);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn capture_hbone(ctx: TcContext) -> i32 {
    // SAFETY: reads of load-time constants; volatile so that the defaults are not folded in.
    let (mark, port) = unsafe {
        (
            core::ptr::read_volatile(&REPLY_MARK),
            core::ptr::read_volatile(&HBONE_PORT),
        )
    };
    return_path::capture(&ctx, mark, port);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
