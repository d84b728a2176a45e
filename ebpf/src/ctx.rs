//! Reads of program context fields that the verifier accepts.
//!
//! The verifier only allows context loads at constant offsets of the field's own size. LLVM
//! turns `if v4 { local_ip4 } else { local_ip6[0] }` into one load at a selected offset, which
//! is rejected, even with volatile loads in each branch. So callers load every field they might
//! need unconditionally, each with its own volatile 4-byte load, and choose among the values.

/// Reads `(*$ptr).$field` (a `u32`) with one volatile load.
macro_rules! read_u32 {
    ($ptr:expr, $($field:tt)+) => {
        // SAFETY: $ptr is the program's context pointer, valid for the whole run, and the field
        // is readable by this program type.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$ptr).$($field)+)) }
    };
}

/// Reads a `[u32; 4]` IPv6 field word by word.
macro_rules! read_ip6 {
    ($ptr:expr, $field:ident) => {
        [
            $crate::ctx::read_u32!($ptr, $field[0]),
            $crate::ctx::read_u32!($ptr, $field[1]),
            $crate::ctx::read_u32!($ptr, $field[2]),
            $crate::ctx::read_u32!($ptr, $field[3]),
        ]
    };
}


/// Both ends of a socket's connection, read from a context that has the
/// `family`, `{local,remote}_ip4` and `{local,remote}_ip6` fields (sock_ops, sk_msg).
macro_rules! read_ends {
    ($ptr:expr) => {{
        let family = $crate::ctx::read_u32!($ptr, family);
        let local4 = $crate::ctx::read_u32!($ptr, local_ip4);
        let remote4 = $crate::ctx::read_u32!($ptr, remote_ip4);
        let local6 = $crate::ctx::read_ip6!($ptr, local_ip6);
        let remote6 = $crate::ctx::read_ip6!($ptr, remote_ip6);
        if family == 2 {
            (
                ambit_common::IpWords::from_v4_raw(local4),
                ambit_common::IpWords::from_v4_raw(remote4),
            )
        } else {
            (ambit_common::IpWords(local6), ambit_common::IpWords(remote6))
        }
    }};
}

pub(crate) use {read_ends, read_ip6, read_u32};
