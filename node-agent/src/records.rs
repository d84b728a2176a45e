//! Sweeps original-destination records that no live connection owns.
//!
//! The kernel removes a record when the agent's end of its connection closes, and a pending
//! record when its connect fails. The sweep is the safety net for what those paths cannot see:
//! a handshake the client saw complete but the agent's listener dropped (accept queue full),
//! so no agent-side socket ever existed to clean up after it; and records left by a crash.
//!
//! # Invariants
//! - A record is removed only when two sweeps in a row found no socket for it, so a connection
//!   whose agent side is still being created is never swept.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ambit_common::SockKey;
use anyhow::{anyhow, Result};

use crate::kernel_maps::KernelMaps;

/// A pending record older than this belongs to a connect that can no longer complete
/// (the kernel gives up on SYN retries after about two minutes).
pub const PENDING_MAX_AGE_NS: u64 = 180 * 1_000_000_000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub stale_records: usize,
    pub stale_pending: usize,
}

/// Remembers which records had no socket at the previous sweep.
#[derive(Debug, Default)]
pub struct Sweeper {
    suspects: HashSet<SockKey>,
}

impl Sweeper {
    /// Removes records whose agent-side socket was missing now and at the previous sweep, and
    /// pending records older than [`PENDING_MAX_AGE_NS`].
    pub fn sweep(&mut self, maps: &KernelMaps) -> Result<SweepReport> {
        let live = live_tcp_connections()?;
        let mut report = SweepReport::default();
        let mut orig = maps
            .orig_dst
            .write()
            .map_err(|_| anyhow!("record map lock poisoned"))?;
        let orphans: HashSet<SockKey> = orig
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !live.contains(&(k.local(), k.remote())))
            .collect();
        for key in orphans.intersection(&self.suspects) {
            if orig.remove(key).is_ok() {
                report.stale_records += 1;
            }
        }
        drop(orig);
        self.suspects = orphans;
        report.stale_pending = sweep_pending(maps)?;
        if report != SweepReport::default() {
            tracing::info!(
                records = report.stale_records,
                pending = report.stale_pending,
                "swept stale records"
            );
        }
        Ok(report)
    }
}

/// Removes pending records older than [`PENDING_MAX_AGE_NS`].
fn sweep_pending(maps: &KernelMaps) -> Result<usize> {
    let now = monotonic_ns();
    let mut pending = maps
        .pending
        .lock()
        .map_err(|_| anyhow!("pending map lock poisoned"))?;
    let old: Vec<u64> = pending
        .iter()
        .filter_map(|r| r.ok())
        .filter(|(_, orig)| now.saturating_sub(orig.created_ns) > PENDING_MAX_AGE_NS)
        .map(|(cookie, _)| cookie)
        .collect();
    let mut removed = 0;
    for cookie in old {
        if pending.remove(&cookie).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// (local, remote) of every TCP socket in this network namespace, from /proc/net/tcp{,6}.
pub fn live_tcp_connections() -> Result<HashSet<(SocketAddr, SocketAddr)>> {
    let mut out = HashSet::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(pair) = parse_proc_net_tcp_line(line, v6) {
                out.insert(pair);
            }
        }
    }
    Ok(out)
}

/// One line of /proc/net/tcp: `sl local rem st …`, addresses as hex words in host order.
fn parse_proc_net_tcp_line(line: &str, v6: bool) -> Option<(SocketAddr, SocketAddr)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_hex_addr(fields.next()?, v6)?;
    let remote = parse_hex_addr(fields.next()?, v6)?;
    Some((local, remote))
}

fn parse_hex_addr(field: &str, v6: bool) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = if v6 {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        let v6 = Ipv6Addr::from(b);
        // Dual-stack sockets show IPv4 peers mapped; records store them the same way, and
        // SockKey::local()/remote() give them back as IPv4.
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_parse_to_socket_pairs() {
        let line = "   0: 0B00C80A:3A99 0201F40A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1";
        let (local, remote) = parse_proc_net_tcp_line(line, false).expect("valid line");
        assert_eq!(local, "10.200.0.11:15001".parse().unwrap());
        assert_eq!(remote, "10.244.1.2:40000".parse().unwrap());
    }

    #[test]
    fn proc_net_tcp6_mapped_addresses_come_back_as_ipv4() {
        let line = "   0: 0000000000000000FFFF00000B00C80A:3A99 0000000000000000FFFF00000201F40A:9C40 01 0:0 0:0 0 0 0 1";
        let (local, remote) = parse_proc_net_tcp_line(line, true).expect("valid line");
        assert_eq!(local, "10.200.0.11:15001".parse().unwrap());
        assert_eq!(remote, "10.244.1.2:40000".parse().unwrap());
    }
}
