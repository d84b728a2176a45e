//! sk_msg: same-node sockets in SOCK_FASTPATH hand their bytes to the peer socket directly,
//! without walking the TCP/IP stack twice.
//!
//! # Invariants
//! - Bytes are never dropped: with no peer socket in the map, the message takes the TCP stack.
//! - A socket that sent once through the TCP stack stays there (FASTPATH_OFF). Otherwise a
//!   later message could reach the peer's fast-path queue before earlier bytes still waiting in
//!   its TCP receive queue, and the peer would read them out of order. This happens when the
//!   first bytes are sent before the peer's end has joined the map.

use ambit_common::{Counter, IpWords, SockKey};
use aya_ebpf::{
    bindings::{sk_action::SK_PASS, BPF_F_INGRESS, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_sk_storage_get,
    programs::SkMsgContext,
};

use crate::counters::count;
use crate::{FASTPATH_OFF, SOCK_FASTPATH};

const AF_INET: u32 = 2;

pub fn forward(ctx: &SkMsgContext) {
    // SAFETY: the context pointer is valid for the program's run.
    let md = unsafe { &*ctx.msg };
    // SAFETY: reading the socket pointer field of sk_msg_md.
    let sk = unsafe { md.__bindgen_anon_3.sk };
    let storage = core::ptr::addr_of!(FASTPATH_OFF).cast_mut().cast();
    // SAFETY: `sk` is the message's socket (never null in sk_msg); the map pointer is the
    // relocated address of FASTPATH_OFF.
    if !unsafe { bpf_sk_storage_get(storage, sk.cast(), core::ptr::null_mut(), 0) }.is_null() {
        count(Counter::FastpathPassed);
        return;
    }
    let (local_ip, remote_ip) = if md.family == AF_INET {
        (
            IpWords::from_v4_raw(md.local_ip4),
            IpWords::from_v4_raw(md.remote_ip4),
        )
    } else {
        (IpWords(md.local_ip6), IpWords(md.remote_ip6))
    };
    // The peer socket is keyed under its own view: our remote end is its local end.
    let mut peer = SockKey {
        local_ip: remote_ip,
        remote_ip: local_ip,
        local_port: u32::from_be(md.remote_port),
        remote_port: md.local_port,
    };
    if SOCK_FASTPATH.redirect_msg(ctx, &mut peer, u64::from(BPF_F_INGRESS)) == i64::from(SK_PASS)
    {
        count(Counter::FastpathRedirected);
        return;
    }
    // SAFETY: as above; creating the storage marks this socket as off the fast path for good.
    unsafe {
        bpf_sk_storage_get(
            storage,
            sk.cast(),
            core::ptr::null_mut(),
            u64::from(BPF_SK_STORAGE_GET_F_CREATE),
        )
    };
    count(Counter::FastpathPassed);
}
