//! The sandbox's naming and address plan: pure functions, so the scheme is testable without root.
//!
//! A sandbox owns one *subnet index* `s` in `1..=MAX_SUBNET`, claimed atomically (see
//! `claim.rs`), and everything it addresses derives from it:
//!
//! | what | value |
//! | --- | --- |
//! | sandbox name | `ambit-sb-<label>-<s>` (label: sanitized, ≤ 12 chars) |
//! | fabric netns / bridge | `<sandbox>-fabric` / `br0` |
//! | node `i` (1-based) | netns `<sandbox>-<node>`, `eth0` = `10.200.<s>.<10+i>/24` |
//! | pod CIDR of node `i` | `10.<s>.<i>.0/24`; gateway `10.<s>.<i>.1` on the node side of each pod veth |
//! | pod `k` on node `i` | `10.<s>.<i>.<k+1>/32` (k from 1), netns `<sandbox>-<node>-<namespace>_<pod>` |
//! | service VIPs | `10.<s>.0.<n>` (never routed; for the mesh config) |
//!
//! Because `s` ≤ 199, pod and VIP addresses (`10.<s>.…`) never overlap the fabric range
//! (`10.200.…`), and two live sandboxes never share an address.

use std::fmt;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};

/// Every object a sandbox creates carries this prefix; cleanup never touches anything else.
pub const PREFIX: &str = "ambit-sb-";
/// The highest subnet index; the second octet of pod addresses stays below the fabric's 200.
pub const MAX_SUBNET: u8 = 199;
/// Nodes per sandbox: the node octet of pod CIDRs and the `10+i` fabric host part must fit.
pub const MAX_NODES: u8 = 200;
/// Pods per node: host octets 2..=254 of the node's pod CIDR.
pub const MAX_PODS_PER_NODE: u8 = 253;
const MAX_LABEL: usize = 12;

/// An IPv4 prefix such as `10.7.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Turns a free-form label (usually a test name) into `[a-z0-9-]`, at most 12 characters.
pub fn sanitize_label(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_LABEL);
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "sandbox".to_string()
    } else {
        trimmed.to_string()
    }
}

/// `ambit-sb-<label>-<subnet>`.
pub fn sandbox_name(label: &str, subnet: u8) -> String {
    format!("{PREFIX}{}-{subnet}", sanitize_label(label))
}

/// Checks a node's short name or a pod's namespace/name: a DNS label without `_`, so the
/// `_` in pod netns names keeps them apart from node names.
pub fn validate_dns_label(kind: &str, value: &str) -> Result<()> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if value.is_empty() || value.len() > 63 || !ok_chars || value.starts_with('-') {
        bail!("{kind} {value:?} must be 1-63 characters of [a-z0-9-], not starting with '-'");
    }
    Ok(())
}

/// The fabric network namespace of a sandbox.
pub fn fabric_netns(sandbox: &str) -> String {
    format!("{sandbox}-fabric")
}

/// A node's full name (also its netns name and its bpffs pin directory name).
pub fn node_name(sandbox: &str, short: &str) -> String {
    format!("{sandbox}-{short}")
}

/// A pod's netns name.
pub fn pod_netns(node_name: &str, namespace: &str, pod: &str) -> String {
    format!("{node_name}-{namespace}_{pod}")
}

/// A pod's directory under its node's `pods/` cgroup.
pub fn pod_cgroup_leaf(namespace: &str, pod: &str) -> String {
    format!("{namespace}_{pod}")
}

/// The fabric subnet that joins the nodes of sandbox `subnet`.
pub fn fabric_cidr(subnet: u8) -> Ipv4Cidr {
    Ipv4Cidr {
        network: Ipv4Addr::new(10, 200, subnet, 0),
        prefix_len: 24,
    }
}

/// Node `index` (1-based)'s address on the fabric.
pub fn node_address(subnet: u8, index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, subnet, 10 + index)
}

/// The pod CIDR routed to node `index`.
pub fn pod_cidr(subnet: u8, index: u8) -> Ipv4Cidr {
    Ipv4Cidr {
        network: Ipv4Addr::new(10, subnet, index, 0),
        prefix_len: 24,
    }
}

/// The address pods on node `index` use as their default gateway.
pub fn pod_gateway(subnet: u8, index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, subnet, index, 1)
}

/// The address of the `ordinal`-th pod (1-based) on node `index`.
pub fn pod_address(subnet: u8, index: u8, ordinal: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, subnet, index, ordinal + 1)
}

/// The range service VIPs of this sandbox come from; nothing routes it.
pub fn service_cidr(subnet: u8) -> Ipv4Cidr {
    Ipv4Cidr {
        network: Ipv4Addr::new(10, subnet, 0, 0),
        prefix_len: 24,
    }
}

/// Interface name, inside a node's netns, of the veth towards its `ordinal`-th pod.
pub fn pod_veth(ordinal: u8) -> String {
    format!("pod{ordinal}")
}

/// Interface name, inside the fabric netns, of the veth towards node `index`.
pub fn fabric_port(index: u8) -> String {
    format!("node{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_short_lowercase_dns_words() {
        assert_eq!(sanitize_label("redirect_echo"), "redirect-ech");
        assert_eq!(sanitize_label("Pod::To--Pod"), "pod-to-pod");
        assert_eq!(sanitize_label("a_____________b"), "a-b");
        assert_eq!(sanitize_label("__"), "sandbox");
        assert_eq!(sanitize_label("abcdefghijk_lm"), "abcdefghijk");
    }

    #[test]
    fn every_name_carries_the_prefix() {
        let sb = sandbox_name("x", 7);
        assert_eq!(sb, "ambit-sb-x-7");
        let node = node_name(&sb, "node1");
        for name in [
            fabric_netns(&sb),
            node.clone(),
            pod_netns(&node, "shop", "web"),
        ] {
            assert!(name.starts_with(PREFIX), "{name}");
        }
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        assert!(pod_veth(MAX_PODS_PER_NODE).len() <= 15);
        assert!(fabric_port(MAX_NODES).len() <= 15);
    }

    #[test]
    fn pod_and_service_ranges_never_overlap_any_fabric() {
        for s in 1..=MAX_SUBNET {
            for fabric_subnet in [1, MAX_SUBNET] {
                let fabric = fabric_cidr(fabric_subnet);
                assert!(!fabric.contains(pod_address(s, 1, 1)));
                assert!(!fabric.contains(service_cidr(s).network));
            }
        }
    }

    #[test]
    fn pods_sit_in_their_nodes_cidr_beside_the_gateway() {
        let cidr = pod_cidr(9, 3);
        assert_eq!(cidr.to_string(), "10.9.3.0/24");
        assert!(cidr.contains(pod_gateway(9, 3)));
        assert!(cidr.contains(pod_address(9, 3, MAX_PODS_PER_NODE)));
        assert_ne!(pod_address(9, 3, 1), pod_gateway(9, 3));
        assert!(!pod_cidr(9, 4).contains(pod_address(9, 3, 1)));
        assert_eq!(node_address(9, 2), Ipv4Addr::new(10, 200, 9, 12));
    }

    #[test]
    fn dns_labels_reject_separators() {
        assert!(validate_dns_label("pod", "client-1").is_ok());
        assert!(validate_dns_label("pod", "a_b").is_err());
        assert!(validate_dns_label("pod", "").is_err());
        assert!(validate_dns_label("pod", "Web").is_err());
    }
}
