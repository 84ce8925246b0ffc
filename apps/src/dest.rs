//! Which destinations the SOCKS server connects to on a client's behalf.
//!
//! A client of the server acts with the server host's network position: without a filter it
//! reaches the host's own services on 127.0.0.1 and ::1, link-local and metadata addresses,
//! the host's LAN and other nodes' overlay services, all under the server's identity. By
//! default the server refuses, after name resolution:
//!
//! * loopback (127.0.0.0/8, ::1), unspecified (0.0.0.0/8, ::), link-local (169.254.0.0/16,
//!   fe80::/10), multicast and the IPv4 broadcast address;
//! * the host's own addresses (an address the host can bind is its own);
//! * the private ranges: RFC 1918 (10/8, 172.16/12, 192.168/16), CGNAT (100.64.0.0/10) and
//!   ULA (fc00::/7), which `--allow-private` opens;
//! * the Skywire overlay (fd73:6b79::/32, inside fc00::/7 but not opened by `--allow-private`).
//!
//! `--allow-dst CIDR` (repeatable) opens a prefix whatever its class. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry.

use netbase::Prefix;
use std::net::{IpAddr, Ipv6Addr, UdpSocket};

/// The overlay prefix, fd73:6b79::/32.
fn overlay() -> Prefix {
    let [a, b, c, d] = controlplane::identity::OVERLAY_PREFIX;
    let ip = Ipv6Addr::new(
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
        0,
        0,
        0,
        0,
        0,
        0,
    );
    Prefix::new(IpAddr::V6(ip), 32).expect("/32 fits an IPv6 address")
}

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Loopback, unspecified, link-local, multicast or broadcast.
    Special,
    /// One of the server host's own addresses.
    Own,
    /// RFC 1918, CGNAT or ULA (opened by `--allow-private`).
    Private,
    /// The Skywire overlay.
    Overlay,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Special => {
                "a loopback, link-local, unspecified, multicast or broadcast address"
            }
            Refusal::Own => "one of this host's addresses",
            Refusal::Private => "a private address (RFC 1918, CGNAT or ULA)",
            Refusal::Overlay => "a Skywire overlay address",
        })
    }
}

/// The destination filter.
#[derive(Debug, Clone, Default)]
pub struct DstFilter {
    /// Open RFC 1918, CGNAT and ULA (not the overlay).
    pub allow_private: bool,
    /// Prefixes opened whatever their class.
    pub allow: Vec<Prefix>,
}

/// The class of `ip` when it is one the filter refuses by default, without looking at the
/// host's own addresses.
fn class(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_loopback()
                || o[0] == 0
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
            {
                Some(Refusal::Special)
            } else if a.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some(Refusal::Private)
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            if a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
            {
                Some(Refusal::Special)
            } else if overlay().contains(ip) {
                Some(Refusal::Overlay)
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some(Refusal::Private)
            } else {
                None
            }
        }
    }
}

/// Whether `ip` is one of this host's addresses: the host can bind it. (With
/// `net.ipv4.ip_nonlocal_bind` every address binds, and every address is refused: the filter
/// fails closed.)
fn is_own(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

impl DstFilter {
    /// `Ok(())` when the server may connect to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if self.allow.iter().any(|p| p.contains(ip)) {
            return Ok(());
        }
        match class(ip) {
            Some(Refusal::Private) if self.allow_private => {}
            Some(r) => return Err(r),
            None => {}
        }
        if is_own(ip) {
            return Err(Refusal::Own);
        }
        Ok(())
    }

    /// Parses an `--allow-dst` value (a CIDR prefix or a bare address).
    pub fn parse_allow(s: &str) -> Result<Prefix, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Prefix::host(ip.to_canonical()));
        }
        s.parse::<Prefix>()
            .map_err(|e| format!("{s:?} is not a prefix (like 10.0.0.0/8): {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An IPv4 address as a mapped IPv6 one.
    fn mapped(a: Ipv4Addr) -> IpAddr {
        IpAddr::V6(a.to_ipv6_mapped())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_refuses_the_local_and_private_ranges() {
        let f = DstFilter::default();
        for (a, why) in [
            ("127.0.0.1", Refusal::Special),
            ("127.1.2.3", Refusal::Special),
            ("::1", Refusal::Special),
            ("0.0.0.0", Refusal::Special),
            ("::", Refusal::Special),
            ("169.254.169.254", Refusal::Special),
            ("fe80::1", Refusal::Special),
            ("224.0.0.1", Refusal::Special),
            ("ff02::1", Refusal::Special),
            ("255.255.255.255", Refusal::Special),
            ("10.1.2.3", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.1", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("100.64.0.1", Refusal::Private),
            ("100.127.255.254", Refusal::Private),
            ("fd00::1", Refusal::Private),
            ("fc00::1", Refusal::Private),
            ("fd73:6b79::1", Refusal::Overlay),
        ] {
            assert_eq!(f.check(ip(a)), Err(why), "{a}");
        }
        assert_eq!(f.check(mapped(Ipv4Addr::LOCALHOST)), Err(Refusal::Special));
        assert_eq!(
            f.check(mapped(Ipv4Addr::new(10, 0, 0, 1))),
            Err(Refusal::Private)
        );
        // Public addresses pass (nothing on this host binds them).
        for a in ["1.1.1.1", "100.128.0.1", "172.32.0.1", "2001:db8::1"] {
            assert_eq!(f.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn allow_private_and_allow_dst_open_what_they_name() {
        let f = DstFilter {
            allow_private: true,
            ..DstFilter::default()
        };
        assert_eq!(f.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(f.check(ip("100.64.0.1")), Ok(()));
        assert_eq!(f.check(ip("fd00::1")), Ok(()));
        assert_eq!(f.check(ip("fd73:6b79::1")), Err(Refusal::Overlay));
        assert_eq!(f.check(ip("127.0.0.1")), Err(Refusal::Special));
        assert_eq!(f.check(ip("169.254.169.254")), Err(Refusal::Special));
        let f = DstFilter {
            allow: vec![
                DstFilter::parse_allow("127.0.0.0/8").unwrap(),
                DstFilter::parse_allow("::1").unwrap(),
            ],
            ..DstFilter::default()
        };
        assert_eq!(f.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(f.check(mapped(Ipv4Addr::LOCALHOST)), Ok(()));
        assert_eq!(f.check(ip("::1")), Ok(()));
        assert_eq!(f.check(ip("10.0.0.1")), Err(Refusal::Private));
        assert!(DstFilter::parse_allow("nope").is_err());
    }

    #[test]
    fn own_addresses_are_refused() {
        // Any address of this host: 127.0.0.1 is in the Special class, so ask the kernel
        // for another one by connecting a UDP socket outwards (no packet is sent).
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        if s.connect("192.0.2.1:9").is_err() {
            return; // no route at all (an empty namespace): nothing to test
        }
        let own = s.local_addr().unwrap().ip();
        let f = DstFilter {
            allow_private: true,
            ..DstFilter::default()
        };
        assert_eq!(f.check(own), Err(Refusal::Own), "{own}");
    }
}
