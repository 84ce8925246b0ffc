//! Just enough of the IP headers to route: version, source, destination.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What routing needs from an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
}

/// Reads version, source and destination. `None` for anything that is not a plausible IPv4 or
/// IPv6 header (too short, other version).
pub fn parse(pkt: &[u8]) -> Option<IpInfo> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpInfo {
                src: IpAddr::V4(Ipv4Addr::from(s)),
                dst: IpAddr::V4(Ipv4Addr::from(d)),
            })
        }
        6 if pkt.len() >= 40 => {
            let s: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpInfo {
                src: IpAddr::V6(Ipv6Addr::from(s)),
                dst: IpAddr::V6(Ipv6Addr::from(d)),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v4_and_v6() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let i = parse(&v4).unwrap();
        assert_eq!(i.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 2;
        assert_eq!(parse(&v6).unwrap().dst, "::2".parse::<IpAddr>().unwrap());
        assert!(parse(&v6[..39]).is_none());
        assert!(parse(&[]).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&b);
        }
    }
}
