//! Address ranges written as CIDR blocks, such as `10.0.0.0/8` or `fd00::/8`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A network: an address whose host bits are all zero, and a prefix length.
///
/// # Invariants
/// - `prefix_len` is at most 32 for IPv4 and 128 for IPv6;
/// - no bit after the prefix is set in `addr` (`10.0.0.1/8` is refused, not silently widened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a text is not a CIDR block. Each message quotes the text and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "invalid CIDR {text:?}: expected ADDRESS/PREFIX, such as \"10.0.0.0/8\" or \"fd00::/8\""
    )]
    Syntax { text: String },
    #[error("invalid CIDR {text:?}: {addr:?} is not an IP address")]
    Address { text: String, addr: String },
    #[error("invalid CIDR {text:?}: the prefix length must be a number from 0 to {max}")]
    PrefixLength { text: String, max: u8 },
    #[error(
        "invalid CIDR {text:?}: host bits are set after the prefix; did you mean \"{network}\"?"
    )]
    HostBitsSet { text: String, network: Cidr },
}

impl Cidr {
    /// The block `addr/prefix_len`, refused if the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let text = || format!("{addr}/{prefix_len}");
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(CidrError::PrefixLength { text: text(), max });
        }
        let network = Cidr {
            addr: mask(addr, prefix_len),
            prefix_len,
        };
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                text: text(),
                network,
            });
        }
        Ok(network)
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in this block. An IPv4 address never lies in an IPv6 block, and the reverse.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix_len) == self.addr
    }
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit after the first `prefix_len` cleared; `prefix_len` is at most the family's width.
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax {
            text: text.to_owned(),
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address {
            text: text.to_owned(),
            addr: addr.to_owned(),
        })?;
        let max = max_prefix_len(addr);
        let prefix_len = Some(prefix)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u8>().ok())
            .filter(|len| *len <= max)
            .ok_or_else(|| CidrError::PrefixLength {
                text: text.to_owned(),
                max,
            })?;
        Cidr::new(addr, prefix_len).map_err(|err| match err {
            CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
                text: text.to_owned(),
                network,
            },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Written as text (`"10.0.0.0/8"`), the form the file source reads.
impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_blocks_parse_and_print_back() {
        for text in [
            "10.0.0.0/8",
            "fd00::/8",
            "0.0.0.0/0",
            "::/0",
            "192.168.1.7/32",
        ] {
            let cidr: Cidr = text.parse().unwrap();
            assert_eq!(cidr.to_string(), text);
        }
    }

    #[test]
    fn host_bits_set_is_refused_with_the_network_as_hint() {
        let err = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CIDR \"10.1.2.3/8\": host bits are set after the prefix; did you mean \"10.0.0.0/8\"?"
        );
        let err = "fd00::1/8".parse::<Cidr>().unwrap_err();
        assert!(
            err.to_string().contains("did you mean \"fd00::/8\""),
            "{err}"
        );
    }

    #[test]
    fn prefix_longer_than_the_family_allows_is_refused() {
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(
            matches!(err, CidrError::PrefixLength { max: 32, .. }),
            "{err}"
        );
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
    }

    #[test]
    fn missing_prefix_or_bad_address_is_refused() {
        assert!(matches!(
            "10.0.0.0".parse::<Cidr>(),
            Err(CidrError::Syntax { .. })
        ));
        assert!(matches!(
            "10.0.0.300/8".parse::<Cidr>(),
            Err(CidrError::Address { .. })
        ));
    }

    #[test]
    fn contains_checks_the_prefix_and_the_family() {
        let v4: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(v4.contains("10.255.0.1".parse().unwrap()));
        assert!(!v4.contains("11.0.0.1".parse().unwrap()));
        assert!(!v4.contains("::a00:1".parse().unwrap()));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("fd00::1".parse().unwrap()));
        assert!(!all.contains("10.0.0.1".parse().unwrap()));
    }
}
