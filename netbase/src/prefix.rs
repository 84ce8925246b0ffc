//! IP prefixes (CIDR), v4 and v6.

use std::net::IpAddr;

/// An IP prefix: a network address with its host bits cleared, and a length no longer than
/// the address. Both invariants hold for every value (the fields are private).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Builds a prefix, clearing host bits. `None` when `len` exceeds the address width.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let max = width(&addr);
        if len > max {
            return None;
        }
        Some(Prefix {
            addr: mask_addr(addr, len),
            len,
        })
    }

    /// The single-address prefix of `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Prefix {
        Prefix {
            addr: ip,
            len: width(&ip),
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[allow(clippy::len_without_is_empty)] // a length in bits, not a collection's size
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the whole address family (`/0`).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && mask_bits(bits(ip), self.len, width(&ip)) == bits(self.addr)
    }

    /// Whether the two share an address (one contains the other).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        if self.len <= other.len {
            self.contains(other.addr)
        } else {
            other.contains(self.addr)
        }
    }

    /// The address as an integer (IPv4 in the low 32 bits) and whether it is IPv4: the key of
    /// longest-prefix-match tables.
    pub fn key(ip: IpAddr) -> (u128, bool) {
        (bits(ip), ip.is_ipv4())
    }

    /// `bits` (as [`Prefix::key`] gives them) with all but the first `len` of `max` bits
    /// cleared.
    #[inline]
    pub fn mask_key(bits: u128, len: u8, max: u8) -> u128 {
        mask_bits(bits, len, max)
    }

    /// The prefix whose key is `bits` (host bits already clear) and length `len`, for tables
    /// that store keys; `None` when `len` is too long or host bits are set.
    pub fn from_key(bits: u128, v4: bool, len: u8) -> Option<Prefix> {
        let addr = if v4 {
            IpAddr::V4(u32::try_from(bits).ok()?.into())
        } else {
            IpAddr::V6(bits.into())
        };
        let p = Prefix::new(addr, len)?;
        (p.addr == addr).then_some(p)
    }
}

fn width(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[inline]
fn mask_bits(bits: u128, len: u8, max: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let host = u32::from(max - len);
    (bits >> host) << host
}

fn mask_addr(ip: IpAddr, len: u8) -> IpAddr {
    let m = mask_bits(bits(ip), len, width(&ip));
    match ip {
        IpAddr::V4(_) => IpAddr::V4((m as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(m.into()),
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    /// `ADDR/LEN`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = width(&addr);
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| format!("{l:?} is not a prefix length"))?,
        };
        Prefix::new(addr, len).ok_or_else(|| format!("prefix length {len} is longer than {max}"))
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn parse_clears_host_bits_and_refuses_bad_input() {
        assert_eq!(p("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("fd00::1").len(), 128);
        assert_eq!(
            p("0.0.0.0/0"),
            Prefix::new("1.2.3.4".parse().unwrap(), 0).unwrap()
        );
        assert!(p("0.0.0.0/0").is_default());
        assert!(
            "10.0.0.0/33"
                .parse::<Prefix>()
                .unwrap_err()
                .contains("longer than 32")
        );
        assert!("x/8".parse::<Prefix>().is_err());
        assert!("10.0.0.0/-1".parse::<Prefix>().is_err());
        assert!(Prefix::new("::".parse().unwrap(), 129).is_none());
    }

    #[test]
    fn contains_and_overlaps_respect_families_and_lengths() {
        let net = p("10.8.0.0/16");
        assert!(net.contains("10.8.255.1".parse().unwrap()));
        assert!(!net.contains("10.9.0.1".parse().unwrap()));
        assert!(!net.contains("::a08:1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("1.1.1.1".parse().unwrap()));
        assert!(net.overlaps(&p("10.8.1.0/24")) && p("10.8.1.0/24").overlaps(&net));
        assert!(!net.overlaps(&p("10.9.0.0/16")));
        assert!(!p("::/0").overlaps(&p("0.0.0.0/0")));
    }

    #[test]
    fn keys_round_trip() {
        for s in ["10.8.0.0/16", "fd73:6b79::/32", "1.2.3.4/32", "::/0"] {
            let q = p(s);
            let (bits, v4) = Prefix::key(q.addr());
            assert_eq!(Prefix::from_key(bits, v4, q.len()), Some(q));
        }
        assert_eq!(Prefix::from_key(1, true, 8), None, "host bits set");
        assert_eq!(
            Prefix::from_key(u128::MAX, true, 32),
            None,
            "not an IPv4 key"
        );
    }

    proptest! {
        #[test]
        fn new_is_masked_and_contains_its_address(a: [u8; 16], v4: bool, len in 0u8..=128) {
            let ip = if v4 {
                IpAddr::V4([a[0], a[1], a[2], a[3]].into())
            } else {
                IpAddr::V6(a.into())
            };
            match Prefix::new(ip, len) {
                None => prop_assert!(len > width(&ip)),
                Some(q) => {
                    prop_assert!(q.contains(ip));
                    prop_assert_eq!(Prefix::new(q.addr(), q.len()), Some(q));
                    prop_assert_eq!(q.to_string().parse::<Prefix>(), Ok(q));
                }
            }
        }
    }
}
