//! The few rtnetlink requests the return path needs: add and delete its policy rule and its
//! local route, and ask the kernel which interface leads to an address.
//!
//! Messages are laid out by hand (a header, one fixed struct, a few attributes): the agent
//! needs four message kinds, which does not justify a netlink stack of crates.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FR_ACT_TO_TBL: u8 = 1;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const RT_SCOPE_HOST: u8 = 254;
const RTPROT_STATIC: u8 = 4;

const NLMSG_HDRLEN: usize = 16;

/// The policy rule and route table of the return path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// Packets carrying this mark (all of its bits) are routed by `table`.
    pub mark: u32,
    pub table: u32,
    /// The rule's priority: before the main table's (32766).
    pub priority: u32,
}

/// Where the kernel routes an address, as `ip route get` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTo {
    pub oif: Option<u32>,
    /// A unicast route, as opposed to local, blackhole, …
    pub unicast: bool,
}

fn family(ipv6: bool) -> u8 {
    if ipv6 {
        libc::AF_INET6 as u8
    } else {
        libc::AF_INET as u8
    }
}

/// Builds one message: header, fixed part, attributes (each padded to 4 bytes).
fn message(kind: u16, flags: u16, fixed: [u8; 12], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = vec![0u8; NLMSG_HDRLEN];
    msg.extend_from_slice(&fixed);
    for (kind, payload) in attrs {
        let len = 4 + payload.len();
        msg.extend_from_slice(&(len as u16).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let total = msg.len() as u32;
    msg[0..4].copy_from_slice(&total.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg
}

/// The message kind and flags of an acknowledged add (failing if it exists) or delete.
fn add_or_delete(add: bool, new: u16, delete: u16) -> (u16, u16) {
    if add {
        (new, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    } else {
        (delete, NLM_F_ACK)
    }
}

/// `ip rule add fwmark <mark>/<mark> lookup <table> priority <priority>` (or `del`).
pub(super) fn rule_message(add: bool, ipv6: bool, routing: &Routing) -> Vec<u8> {
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags.
    let mut fixed = [0u8; 12];
    fixed[0] = family(ipv6);
    fixed[7] = FR_ACT_TO_TBL;
    let (kind, flags) = add_or_delete(add, RTM_NEWRULE, RTM_DELRULE);
    message(
        kind,
        flags,
        fixed,
        &[
            (FRA_PRIORITY, &routing.priority.to_ne_bytes()),
            (FRA_FWMARK, &routing.mark.to_ne_bytes()),
            (FRA_FWMASK, &routing.mark.to_ne_bytes()),
            (FRA_TABLE, &routing.table.to_ne_bytes()),
        ],
    )
}

/// `ip route add local default dev lo table <table>` (or `del`).
pub(super) fn local_route_message(add: bool, ipv6: bool, table: u32, loopback: u32) -> Vec<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut fixed = [0u8; 12];
    fixed[0] = family(ipv6);
    fixed[5] = RTPROT_STATIC;
    fixed[6] = RT_SCOPE_HOST;
    fixed[7] = RTN_LOCAL;
    let (kind, flags) = add_or_delete(add, RTM_NEWROUTE, RTM_DELROUTE);
    message(
        kind,
        flags,
        fixed,
        &[
            (RTA_TABLE, &table.to_ne_bytes()),
            (RTA_OIF, &loopback.to_ne_bytes()),
        ],
    )
}

/// The return path's two requests for one family: its rule, then its local route.
pub(super) fn return_path_messages(
    add: bool,
    ipv6: bool,
    routing: &Routing,
    loopback: u32,
) -> [Vec<u8>; 2] {
    [
        rule_message(add, ipv6, routing),
        local_route_message(add, ipv6, routing.table, loopback),
    ]
}

/// `ip route get <ip>`.
pub(super) fn route_get_message(ip: IpAddr) -> Vec<u8> {
    let mut fixed = [0u8; 12];
    fixed[0] = family(ip.is_ipv6());
    let octets: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    fixed[1] = (octets.len() * 8) as u8;
    message(RTM_GETROUTE, 0, fixed, &[(RTA_DST, &octets)])
}

/// Reads a route reply: its type and `RTA_OIF`.
pub(super) fn parse_route(reply: &[u8]) -> io::Result<RouteTo> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short rtnetlink route reply");
    let header = reply.get(..NLMSG_HDRLEN).ok_or_else(bad)?;
    let len = u32::from_ne_bytes(header[0..4].try_into().map_err(|_| bad())?) as usize;
    let kind = u16::from_ne_bytes(header[4..6].try_into().map_err(|_| bad())?);
    if kind == NLMSG_ERROR {
        return Err(ack_error(reply).unwrap_or_else(bad));
    }
    if kind != RTM_NEWROUTE {
        return Err(bad());
    }
    let body = reply
        .get(NLMSG_HDRLEN..len.min(reply.len()))
        .ok_or_else(bad)?;
    let fixed = body.get(..12).ok_or_else(bad)?;
    let mut route = RouteTo {
        oif: None,
        unicast: fixed[7] == RTN_UNICAST,
    };
    let mut attrs = &body[12..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let akind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        if akind == RTA_OIF && alen == 8 {
            route.oif = Some(u32::from_ne_bytes([attrs[4], attrs[5], attrs[6], attrs[7]]));
        }
        attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
    }
    Ok(route)
}

/// The errno of an `NLMSG_ERROR` reply; `None` for an acknowledgement (error 0).
fn ack_error(reply: &[u8]) -> Option<io::Error> {
    let code = i32::from_ne_bytes(reply.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)?.try_into().ok()?);
    (code != 0).then(|| io::Error::from_raw_os_error(-code))
}

/// A NETLINK_ROUTE socket of the agent's network namespace.
pub(super) struct Rtnetlink(OwnedFd);

impl Rtnetlink {
    pub(super) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Rtnetlink(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `msg` and returns the kernel's first reply.
    pub(super) fn request(&self, msg: &[u8]) -> io::Result<Vec<u8>> {
        let fd = self.0.as_raw_fd();
        // SAFETY: `msg` is a valid buffer of its length; the kernel is the default peer.
        let sent = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = vec![0u8; 8192];
        // SAFETY: `reply` is writable for its length.
        let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        reply.truncate(n as usize);
        Ok(reply)
    }

    /// Sends a request that asks for an acknowledgement, and returns its error, if any.
    pub(super) fn ack(&self, msg: &[u8]) -> io::Result<()> {
        let reply = self.request(msg)?;
        match ack_error(&reply) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(msg: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(msg[at..at + 4].try_into().unwrap())
    }

    fn u16_at(msg: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(msg[at..at + 2].try_into().unwrap())
    }

    #[test]
    fn a_rule_carries_mark_mask_table_and_priority() {
        let routing = Routing {
            mark: 0x1000,
            table: 15008,
            priority: 1000,
        };
        let msg = rule_message(true, false, &routing);
        assert_eq!(u32_at(&msg, 0) as usize, msg.len());
        assert_eq!(u16_at(&msg, 4), RTM_NEWRULE);
        assert_eq!(
            u16_at(&msg, 6),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        assert_eq!(msg[16], libc::AF_INET as u8);
        assert_eq!(msg[16 + 7], FR_ACT_TO_TBL);
        // Four 8-byte attributes after the 12-byte fib_rule_hdr.
        assert_eq!(msg.len(), 16 + 12 + 4 * 8);
        let attrs: Vec<(u16, u32)> = (0..4)
            .map(|i| {
                let at = 28 + i * 8;
                assert_eq!(u16_at(&msg, at), 8);
                (u16_at(&msg, at + 2), u32_at(&msg, at + 4))
            })
            .collect();
        assert_eq!(
            attrs,
            [
                (FRA_PRIORITY, 1000),
                (FRA_FWMARK, 0x1000),
                (FRA_FWMASK, 0x1000),
                (FRA_TABLE, 15008)
            ]
        );
        let del = rule_message(false, true, &routing);
        assert_eq!(u16_at(&del, 4), RTM_DELRULE);
        assert_eq!(del[16], libc::AF_INET6 as u8);
    }

    #[test]
    fn the_local_route_is_a_host_scoped_local_default() {
        let msg = local_route_message(true, true, 15008, 1);
        assert_eq!(u16_at(&msg, 4), RTM_NEWROUTE);
        let rtm = &msg[16..28];
        assert_eq!(rtm[0], libc::AF_INET6 as u8);
        assert_eq!(rtm[1], 0, "default: no destination prefix");
        assert_eq!((rtm[6], rtm[7]), (RT_SCOPE_HOST, RTN_LOCAL));
        assert_eq!((u16_at(&msg, 30), u32_at(&msg, 32)), (RTA_TABLE, 15008));
        assert_eq!((u16_at(&msg, 38), u32_at(&msg, 40)), (RTA_OIF, 1));
    }

    #[test]
    fn a_route_reply_gives_its_interface_and_type() {
        let mut fixed = [0u8; 12];
        fixed[7] = RTN_UNICAST;
        let mut reply = message(RTM_NEWROUTE, 0, fixed, &[(RTA_DST, &[10, 0, 0, 1])]);
        let tail = message(RTM_NEWROUTE, 0, fixed, &[(RTA_OIF, &7u32.to_ne_bytes())]);
        reply.extend_from_slice(&tail[28..]);
        let len = reply.len() as u32;
        reply[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            parse_route(&reply).unwrap(),
            RouteTo {
                oif: Some(7),
                unicast: true
            }
        );

        let mut error = message(NLMSG_ERROR, 0, [0; 12], &[]);
        error[16..20].copy_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        let err = parse_route(&error).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH));
        assert!(parse_route(&[0u8; 8]).is_err());
    }
}
