//! Sizes and offsets that the kernel programs and user space both rely on.

extern crate std;

use core::mem::{offset_of, size_of};
use core::net::{IpAddr, SocketAddr};

use crate::{EnrolledNetns, IpWords, OrigDst, RedirectConfig, SockKey};

#[test]
fn map_types_have_no_implicit_padding() {
    assert_eq!(size_of::<IpWords>(), 16);
    assert_eq!(size_of::<OrigDst>(), 16 + 8 + 8 + 2 + 2 + 4);
    assert_eq!(size_of::<SockKey>(), 16 + 16 + 4 + 4);
    assert_eq!(size_of::<EnrolledNetns>(), 64);
    assert_eq!(size_of::<RedirectConfig>(), 8 + 16 + 4 + 2 + 2);
    assert_eq!(offset_of!(OrigDst, port), 32);
    assert_eq!(offset_of!(RedirectConfig, outbound_port), 28);
}

#[test]
fn ipv4_round_trips_through_mapped_words() {
    let ip: IpAddr = "10.244.1.7".parse().expect("literal");
    let w = IpWords::from(ip);
    assert!(w.is_v4_mapped());
    assert_eq!(w.to_bytes()[10..], [0xff, 0xff, 10, 244, 1, 7]);
    assert_eq!(IpAddr::from(w), ip);
}

#[test]
fn ipv6_round_trips() {
    let ip: IpAddr = "fd00::12".parse().expect("literal");
    let w = IpWords::from(ip);
    assert!(!w.is_v4_mapped());
    assert_eq!(IpAddr::from(w), ip);
}

#[test]
fn loopback_is_recognised_in_both_families() {
    for lo in ["127.0.0.1", "127.3.2.1", "::1"] {
        let ip: IpAddr = lo.parse().expect("literal");
        assert!(IpWords::from(ip).is_loopback(), "{lo}");
    }
    let ip: IpAddr = "10.0.0.1".parse().expect("literal");
    assert!(!IpWords::from(ip).is_loopback());
}

#[test]
fn peer_view_swaps_ends() {
    let a: SocketAddr = "10.244.1.2:40000".parse().expect("literal");
    let b: SocketAddr = "10.200.0.11:15001".parse().expect("literal");
    let k = SockKey::new(a, b);
    assert_eq!(k.peer_view(), SockKey::new(b, a));
    assert_eq!(k.local(), a);
    assert_eq!(k.remote(), b);
}

#[test]
fn workload_names_truncate_on_char_boundary() {
    let long = "é".repeat(40);
    let e = EnrolledNetns::new(&long);
    assert_eq!(e.name().len(), 64);
    assert_eq!(EnrolledNetns::new("shop/client").name(), "shop/client");
}
