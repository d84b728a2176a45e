//! The request headers HBONE uses to describe the source: `forwarded` (RFC 7239) and `baggage`.

use std::net::{IpAddr, SocketAddr};

/// RFC 7239 header carrying the original client address.
pub const FORWARDED: &str = "forwarded";
/// W3C baggage header describing the source workload (`k8s.namespace.name=…,…`).
pub const BAGGAGE: &str = "baggage";

/// `for="<ip:port>"`, the value of [`FORWARDED`] for `client` (IPv6 in brackets; the quotes
/// are required by RFC 7239 because of the `:`).
pub fn forwarded_for(client: SocketAddr) -> String {
    format!("for=\"{client}\"")
}

/// The client address in a [`FORWARDED`] value: the `for` of its first element.
///
/// Accepts quoted or bare values, with or without a port (port 0 then), as other HBONE
/// implementations may send only the IP. Obfuscated identifiers (`for=_hidden`,
/// `for=unknown`) give `None`.
pub fn parse_forwarded_for(value: &str) -> Option<SocketAddr> {
    let first = value.split(',').next()?;
    let node = first.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })?;
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = node
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(node);
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_quotes_the_address_and_brackets_ipv6() {
        assert_eq!(
            forwarded_for("10.0.0.7:4321".parse().unwrap()),
            r#"for="10.0.0.7:4321""#
        );
        assert_eq!(
            forwarded_for("[fd00::7]:4321".parse().unwrap()),
            r#"for="[fd00::7]:4321""#
        );
    }

    #[test]
    fn forwarded_for_is_read_back_from_what_peers_send() {
        let cases = [
            (r#"for="10.0.0.7:4321""#, Some("10.0.0.7:4321")),
            (r#"for="[fd00::7]:4321""#, Some("[fd00::7]:4321")),
            ("for=10.0.0.7", Some("10.0.0.7:0")),
            (r#"For="[fd00::7]""#, Some("[fd00::7]:0")),
            (
                r#"proto=https;for="10.0.0.7:1", for=10.0.0.8"#,
                Some("10.0.0.7:1"),
            ),
            ("for=unknown", None),
            ("by=10.0.0.1", None),
        ];
        for (value, want) in cases {
            let want = want.map(|w| w.parse::<SocketAddr>().unwrap());
            assert_eq!(parse_forwarded_for(value), want, "{value}");
        }
    }
}
