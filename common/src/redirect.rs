//! Map keys and values of the outbound redirect: enrollment, original destinations, socket keys.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An IP address as the kernel hands it to socket programs: four `u32` words holding the
/// address bytes in network order. IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`), so one key
/// type serves both families and a dual-stack socket's mapped address matches its IPv4 peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpWords(pub [u32; 4]);

impl IpWords {
    /// Word 2 of an IPv4-mapped address (`00 00 ff ff` in memory).
    pub const V4_MAPPED_MARK: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

    /// From an IPv4 address as the kernel stores it (`user_ip4`, `remote_ip4`: network order).
    pub const fn from_v4_raw(raw: u32) -> Self {
        IpWords([0, 0, Self::V4_MAPPED_MARK, raw])
    }

    pub const fn is_v4_mapped(&self) -> bool {
        self.0[0] == 0 && self.0[1] == 0 && self.0[2] == Self::V4_MAPPED_MARK
    }

    /// The IPv4 address in kernel (network-order) form, if this is IPv4-mapped.
    pub const fn v4_raw(&self) -> Option<u32> {
        if self.is_v4_mapped() {
            Some(self.0[3])
        } else {
            None
        }
    }

    pub const fn is_zero(&self) -> bool {
        self.0[0] == 0 && self.0[1] == 0 && self.0[2] == 0 && self.0[3] == 0
    }

    /// 127.0.0.0/8 (mapped) or ::1.
    pub const fn is_loopback(&self) -> bool {
        match self.v4_raw() {
            Some(raw) => raw.to_ne_bytes()[0] == 127,
            None => {
                self.0[0] == 0
                    && self.0[1] == 0
                    && self.0[2] == 0
                    && self.0[3] == u32::from_ne_bytes([0, 0, 0, 1])
            }
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, w) in self.0.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        IpWords([w(0), w(4), w(8), w(12)])
    }
}

impl From<IpAddr> for IpWords {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpWords::from_v4_raw(u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => IpWords::from_bytes(v6.octets()),
        }
    }
}

impl From<IpWords> for IpAddr {
    /// IPv4-mapped addresses come back as IPv4.
    fn from(w: IpWords) -> Self {
        match w.v4_raw() {
            Some(raw) => IpAddr::V4(Ipv4Addr::from(raw.to_ne_bytes())),
            None => IpAddr::V6(Ipv6Addr::from(w.to_bytes())),
        }
    }
}

/// Where a redirected socket was going, and which network namespace it came from.
///
/// `netns_cookie` is read by the kernel from the connecting socket: it is the attested origin
/// of the connection, not something the agent infers from a source address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrigDst {
    /// Original destination address.
    pub ip: IpWords,
    /// netns cookie of the connecting socket.
    pub netns_cookie: u64,
    /// `bpf_ktime_get_ns()` at connect time; lets the agent sweep pending records that never
    /// completed.
    pub created_ns: u64,
    /// Original destination port, host order.
    pub port: u16,
    /// Address family the application used (`AF_INET` = 2, `AF_INET6` = 10).
    pub family: u16,
    /// Explicit padding so the type has none implicitly.
    pub _pad: u32,
}

impl OrigDst {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::from(self.ip), self.port)
    }
}

/// One end of a TCP connection, as seen from that end. Keys the record map (from the agent's
/// side) and the fast-path SOCKHASH (each socket under its own view).
///
/// Ports are `u32` in host order, instead of `u16`, so that the key has no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    pub local_ip: IpWords,
    pub remote_ip: IpWords,
    pub local_port: u32,
    pub remote_port: u32,
}

impl SockKey {
    /// The same connection seen from the other end.
    pub const fn peer_view(&self) -> Self {
        SockKey {
            local_ip: self.remote_ip,
            remote_ip: self.local_ip,
            local_port: self.remote_port,
            remote_port: self.local_port,
        }
    }

    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        SockKey {
            local_ip: local.ip().into(),
            remote_ip: remote.ip().into(),
            local_port: u32::from(local.port()),
            remote_port: u32::from(remote.port()),
        }
    }

    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.local_ip.into(), self.local_port as u16)
    }

    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.remote_ip.into(), self.remote_port as u16)
    }
}

/// Length of the workload name stored with an enrolled netns.
pub const WORKLOAD_NAME_LEN: usize = 64;

/// Value of `ENROLLED_NETNS`: the workload a network namespace belongs to, as
/// `namespace/name`, NUL-padded. Kept in the map so that the inspector can name workloads
/// even when the agent is not running.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrolledNetns {
    pub workload: [u8; WORKLOAD_NAME_LEN],
}

impl EnrolledNetns {
    /// Truncates names longer than [`WORKLOAD_NAME_LEN`] bytes at a character boundary.
    pub fn new(name: &str) -> Self {
        let mut workload = [0u8; WORKLOAD_NAME_LEN];
        let mut end = name.len().min(WORKLOAD_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        workload[..end].copy_from_slice(&name.as_bytes()[..end]);
        EnrolledNetns { workload }
    }

    pub fn name(&self) -> &str {
        let end = self
            .workload
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(WORKLOAD_NAME_LEN);
        core::str::from_utf8(&self.workload[..end]).unwrap_or("<invalid utf-8>")
    }
}

/// Value at index 0 of `REDIRECT_CONFIG`, written by the agent at start.
///
/// Until it is written (`outbound_port == 0`) the programs redirect nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedirectConfig {
    /// netns cookie of the agent's network namespace (the node's).
    pub agent_netns_cookie: u64,
    /// The agent's IPv6 address reachable from pods; all zero when the node has none.
    pub agent_ip6: IpWords,
    /// The agent's IPv4 address reachable from pods (network order); 0 when none.
    pub agent_ip4: u32,
    /// The outbound capture port (15001), host order.
    pub outbound_port: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
}

impl RedirectConfig {
    /// Same-node sockets join SOCK_FASTPATH (sk_msg socket-to-socket).
    pub const FLAG_FASTPATH: u16 = 1;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is #[repr(C)], Copy, made only of integers, and has no implicit
    // padding (checked by layout_tests), so every byte pattern is a valid value.
    unsafe impl aya::Pod for super::IpWords {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OrigDst {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EnrolledNetns {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RedirectConfig {}
}
