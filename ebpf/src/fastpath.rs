//! sk_msg: same-node sockets in SOCK_FASTPATH hand their bytes to the peer socket directly,
//! without walking the TCP/IP stack twice.
//!
//! # Invariants
//! - Bytes are never dropped: with no peer socket in the map, the message takes the TCP stack.
//! - A socket that sent once through the TCP stack stays there (FASTPATH_OFF). Otherwise a
//!   later message could reach the peer's fast-path queue before earlier bytes still waiting in
//!   its TCP receive queue, and the peer would read them out of order. This happens when the
//!   first bytes are sent before the peer's end has joined the map.

use ambit_common::{Counter, SockKey};
use aya_ebpf::{
    bindings::{sk_action::SK_PASS, BPF_F_INGRESS, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_sk_storage_get,
    programs::SkMsgContext,
};

use crate::counters::count;
use crate::ctx::{read_ends, read_u32};
use crate::{FASTPATH_OFF, SOCK_FASTPATH};


pub fn forward(ctx: &SkMsgContext) {
    let md = ctx.msg;
    // SAFETY: reading the socket pointer field of sk_msg_md (an 8-byte context load).
    let sk = unsafe { (*md).__bindgen_anon_3.sk };
    let storage = core::ptr::addr_of!(FASTPATH_OFF).cast_mut().cast();
    // SAFETY: `sk` is the message's socket (never null in sk_msg); the map pointer is the
    // relocated address of FASTPATH_OFF.
    if !unsafe { bpf_sk_storage_get(storage, sk.cast(), core::ptr::null_mut(), 0) }.is_null() {
        count(Counter::FastpathPassed);
        return;
    }
    let (local_ip, remote_ip) = read_ends!(md);
    // The peer socket is keyed under its own view: our remote end is its local end.
    let mut peer = SockKey {
        local_ip: remote_ip,
        remote_ip: local_ip,
        local_port: u32::from_be(read_u32!(md, remote_port)),
        remote_port: read_u32!(md, local_port),
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
