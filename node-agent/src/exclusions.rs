//! Writes the config's redirect exclusions (ports, CIDRs) into the kernel maps.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ambit_common::IpWords;
use ambit_mesh::model::RedirectSettings;
use anyhow::{anyhow, Context, Result};
use aya::maps::lpm_trie::Key;

use crate::kernel_maps::KernelMaps;

pub fn apply(maps: &KernelMaps, settings: &RedirectSettings) -> Result<()> {
    let want_ports: BTreeSet<u16> = settings.exclude_ports.iter().copied().collect();
    {
        let mut ports = maps
            .excluded_ports
            .lock()
            .map_err(|_| anyhow!("lock poisoned"))?;
        let have: Vec<u16> = ports.keys().filter_map(|k| k.ok()).collect();
        for port in have.iter().filter(|p| !want_ports.contains(p)) {
            ports.remove(port)?;
        }
        for port in &want_ports {
            ports
                .insert(port, 1, 0)
                .with_context(|| format!("excluding port {port}"))?;
        }
    }
    // Keys in the map's form: IPv4 prefixes live under ::ffff:0:0/96.
    let want_cidrs: BTreeSet<(u32, [u8; 16])> = settings
        .exclude_cidrs
        .iter()
        .map(|c| {
            let prefix = match c.addr() {
                IpAddr::V4(_) => 96 + u32::from(c.prefix_len()),
                IpAddr::V6(_) => u32::from(c.prefix_len()),
            };
            (prefix, IpWords::from(c.addr()).to_bytes())
        })
        .collect();
    let mut cidrs = maps
        .excluded_cidrs
        .lock()
        .map_err(|_| anyhow!("lock poisoned"))?;
    let have: Vec<Key<[u8; 16]>> = cidrs.keys().filter_map(|k| k.ok()).collect();
    for key in have {
        if !want_cidrs.contains(&(key.prefix_len(), key.data())) {
            cidrs.remove(&key)?;
        }
    }
    for (prefix, data) in want_cidrs {
        cidrs
            .insert(&Key::new(prefix, data), 1, 0)
            .with_context(|| format!("excluding a CIDR (prefix length {prefix})"))?;
    }
    Ok(())
}
