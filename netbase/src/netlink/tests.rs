use super::*;
use crate::netns::in_netns;
use std::net::{Ipv4Addr, Ipv6Addr};

fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = MsgBuilder::new(ty, flags, seq);
    m.header(payload);
    m.finish().unwrap()
}

#[test]
fn builder_aligns_attributes() {
    let mut m = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST, 7);
    m.header(&[1, 2, 3]); // padded to 4
    m.attr_str(IFLA_IFNAME, "ab").unwrap(); // 4 + 3 -> 8
    m.attr_u32(IFLA_MTU, 1400);
    m.attr_ip(RTA_DST, IpAddr::V6(Ipv6Addr::LOCALHOST));
    let b = m.finish().unwrap();
    assert_eq!(b.len(), 16 + 4 + 8 + 8 + 20);
    assert_eq!(u32_at(&b, 0), Some(b.len() as u32));
    assert_eq!(b.len() % NLA_ALIGNTO, 0);
    let msgs = parse_messages(&b).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].seq, 7);
    let a: Vec<_> = attrs(&msgs[0].payload[4..]).collect();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0], (IFLA_IFNAME, &b"ab\0"[..]));
    assert_eq!(a[1], (IFLA_MTU, &1400u32.to_ne_bytes()[..]));
    assert_eq!(a[2].1, &Ipv6Addr::LOCALHOST.octets()[..]);
    assert!(m_attr_too_long());
}

fn m_attr_too_long() -> bool {
    let mut m = MsgBuilder::new(1, 0, 0);
    m.attr(1, &vec![0; 70_000]).is_err()
}

#[test]
fn parses_multiple_messages_and_errors() {
    let mut buf = msg(RTM_NEWLINK, 0, 1, &ifinfomsg(5, IFF_UP, 0));
    // ACK carrying an extended message, capped.
    let mut err = Vec::new();
    err.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
    err.extend_from_slice(&[0u8; 16]);
    let mut t = MsgBuilder::new(0, 0, 0);
    t.attr_str(NLMSGERR_ATTR_MSG, "boom").unwrap();
    err.extend_from_slice(&t.finish().unwrap()[16..]);
    buf.extend(msg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 1, &err));
    let msgs = parse_messages(&buf).unwrap();
    assert_eq!(msgs.len(), 2);
    let l = parse_link(msgs[0].payload).unwrap();
    assert_eq!((l.index, l.up), (5, true));
    let e = parse_error(msgs[1].payload, msgs[1].flags).unwrap();
    assert_eq!(e.errno, libc::EEXIST);
    assert_eq!(e.ext_msg.as_deref(), Some("boom"));
    let io = NetlinkError {
        op: "add address 10.1.0.1/24 to sky0".into(),
        errno: e.errno,
        ext_msg: None,
    }
    .into_io();
    assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(os_errno(&io), Some(libc::EEXIST));
    assert!(
        io.to_string()
            .starts_with("add address 10.1.0.1/24 to sky0: File exists"),
        "{io}"
    );
}

#[test]
fn garbage_never_panics() {
    // Deterministic xorshift PRNG; no extra dependencies.
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let fixed: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 3],
        vec![0; 16],                                  // len 0 < header
        vec![0xff; 16],                               // len huge
        17u32.to_ne_bytes().repeat(4),                // len 17 > 16 available
        [16u32.to_ne_bytes(), [2, 0, 0, 0]].concat(), // short header
        msg(NLMSG_ERROR, NLM_F_ACK_TLVS, 0, &[1, 2]),
        msg(NLMSG_ERROR, NLM_F_ACK_TLVS, 0, &[0xff; 24]),
        msg(RTM_NEWLINK, 0, 0, &[0; 7]),
        msg(RTM_NEWLINK, 0, 0, &[0xff; 40]),
    ];
    let mut bufs = fixed;
    for _ in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Often make the first length field plausible to go deeper.
        if b.len() >= 4 && next() % 2 == 0 {
            let l = (next() % (b.len() as u64 + 8)) as u32;
            b[..4].copy_from_slice(&l.to_ne_bytes());
        }
        bufs.push(b);
    }
    for b in &bufs {
        if let Ok(msgs) = parse_messages(b) {
            for m in msgs {
                assert!(m.payload.len() <= b.len());
                let _ = parse_error(m.payload, m.flags);
                let _ = parse_error(m.payload, NLM_F_ACK_TLVS);
                let _ = parse_error(m.payload, NLM_F_ACK_TLVS | NLM_F_CAPPED);
                let _ = parse_link(m.payload);
                let _ = parse_route_hop(m.payload);
                let _ = attrs(m.payload).count();
                let _ = attrs_strict(m.payload);
            }
        }
        let _ = attrs(b).count();
        let _ = parse_error(b, NLM_F_ACK_TLVS);
        let _ = parse_link(b);
        let _ = parse_route_hop(b);
    }
    assert!(parse_messages(&[0; 16]).is_err());
    assert!(parse_messages(&[1, 2, 3]).is_err());
}

/// An `RTM_NEWROUTE` reply payload as the kernel sends it for
/// `ip route get 10.8.1.2` (route via 10.7.0.2 dev ifindex 3).
fn route_reply(rtype: u8, extra: &[u8]) -> Vec<u8> {
    let mut m = MsgBuilder::new(0, 0, 0);
    // family, dst_len, src_len, tos, table, protocol, scope, type, flags
    m.header(&[AF_INET, 32, 0, 0, 254, 0, 0, rtype, 0, 2, 0, 0]);
    m.attr_u32(RTA_TABLE, 254);
    m.attr_ip(RTA_DST, IpAddr::V4(Ipv4Addr::new(10, 8, 1, 2)));
    m.attr_u32(RTA_OIF, 3);
    m.attr_ip(RTA_PREFSRC, IpAddr::V4(Ipv4Addr::new(10, 7, 0, 1)));
    m.attr_ip(RTA_GATEWAY, IpAddr::V4(Ipv4Addr::new(10, 7, 0, 2)));
    let mut b = m.finish().unwrap()[NLMSG_HDRLEN..].to_vec();
    b.extend_from_slice(extra);
    b
}

#[test]
fn parses_route_get_reply() {
    let hop = parse_route_hop(&route_reply(RTN_UNICAST, &[])).unwrap();
    assert_eq!(
        hop,
        Some(RouteHop {
            oif: 3,
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 2))),
            prefsrc: Some(IpAddr::V4(Ipv4Addr::new(10, 7, 0, 1))),
        })
    );
    // Unreachable / blackhole: no hop.
    assert_eq!(parse_route_hop(&route_reply(7, &[])).unwrap(), None);
    assert_eq!(parse_route_hop(&route_reply(6, &[])).unwrap(), None);
    // IPv4 route via an IPv6 next hop (RTA_VIA).
    let mut via = vec![22u8, 0, RTA_VIA as u8, 0];
    via.extend_from_slice(&u16::from(AF_INET6).to_ne_bytes());
    via.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    via.extend_from_slice(&[0, 0]); // pad to 4
    let hop = parse_route_hop(&route_reply(RTN_UNICAST, &via)).unwrap();
    assert_eq!(hop.unwrap().gateway, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));

    // Malformed replies are errors, not panics or silent truncation.
    let bad = |extra: &[u8]| parse_route_hop(&route_reply(RTN_UNICAST, extra)).unwrap_err();
    // Attribute claims more bytes than are left.
    assert!(matches!(
        bad(&[12, 0, 4, 0, 1, 0, 0, 0]),
        ParseError::BadAttribute { .. }
    ));
    // Attribute length below its header size.
    assert!(matches!(
        bad(&[2, 0, 4, 0]),
        ParseError::BadAttribute { .. }
    ));
    // Trailing bytes that cannot hold a header.
    assert!(matches!(bad(&[1, 0]), ParseError::BadAttribute { .. }));
    // RTA_OIF of 2 bytes, RTA_GATEWAY of 3 bytes, RTA_VIA of 1 byte.
    assert_eq!(
        bad(&[6, 0, RTA_OIF as u8, 0, 1, 0, 0, 0]),
        ParseError::BadAttrValue {
            what: "RTA_OIF",
            len: 2
        }
    );
    assert!(matches!(
        bad(&[7, 0, RTA_GATEWAY as u8, 0, 1, 2, 3, 0]),
        ParseError::BadAttrValue { .. }
    ));
    assert!(matches!(
        bad(&[5, 0, RTA_VIA as u8, 0, 1, 0, 0, 0]),
        ParseError::BadAttrValue { .. }
    ));
    // Short rtmsg, missing RTA_OIF.
    assert!(matches!(
        parse_route_hop(&[AF_INET, 32, 0]),
        Err(ParseError::ShortPayload { .. })
    ));
    let mut no_oif = [0u8; 12];
    no_oif[0] = AF_INET;
    no_oif[7] = RTN_UNICAST;
    assert_eq!(
        parse_route_hop(&no_oif),
        Err(ParseError::MissingAttr("RTA_OIF"))
    );
}

#[test]
fn route_get_and_del_address_in_netns() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        // A veth pair made by `ip`, which runs in this thread's namespace.
        let ok = std::process::Command::new("ip")
            .args([
                "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1",
            ])
            .status()
            .unwrap();
        assert!(ok.success());
        let v0 = nl.link_index("nlt0").unwrap().unwrap();
        let v1 = nl.link_index("nlt1").unwrap().unwrap();
        nl.set_link_up(v0, true).unwrap();
        nl.set_link_up(v1, true).unwrap();
        let a: IpAddr = "10.7.0.1".parse().unwrap();
        let far: IpAddr = "10.8.1.2".parse().unwrap();
        // Nothing but lo: unreachable.
        assert_eq!(nl.route_get(far).unwrap(), None);
        assert_eq!(nl.route_get("fd00::9".parse().unwrap()).unwrap(), None);

        nl.add_address(v0, a, 24).unwrap();
        let hop = nl.route_get("10.7.0.5".parse().unwrap()).unwrap().unwrap();
        assert_eq!((hop.oif, hop.gateway, hop.prefsrc), (v0, None, Some(a)));
        // The own address is reached through lo.
        let lo = nl.link_index("lo").unwrap().unwrap();
        assert_eq!(nl.route_get(a).unwrap().map(|h| h.oif), Some(lo));
        nl.add_route(far, 16, v0, Some("10.7.0.2".parse().unwrap()), None)
            .unwrap();
        let hop = nl.route_get(far).unwrap().unwrap();
        assert_eq!(hop.oif, v0);
        assert_eq!(hop.gateway, Some("10.7.0.2".parse().unwrap()));
        assert_eq!(hop.prefsrc, Some(a));

        // Routes that deliver nowhere.
        for (ty, net, probe) in [
            ("blackhole", "10.20.0.0/16", "10.20.0.1"),
            ("unreachable", "10.21.0.0/16", "10.21.0.1"),
            ("prohibit", "10.22.0.0/16", "10.22.0.1"),
        ] {
            let ok = std::process::Command::new("ip")
                .args(["route", "add", ty, net])
                .status()
                .unwrap();
            assert!(ok.success());
            let got = nl.route_get(probe.parse().unwrap());
            assert!(matches!(got, Ok(None)), "{ty}: {got:?}");
        }

        // Deleting the address takes its subnet (and the route via it) away.
        nl.del_address(v0, a, 24).unwrap();
        assert_eq!(nl.route_get("10.7.0.5".parse().unwrap()).unwrap(), None);
        assert_eq!(nl.route_get(far).unwrap(), None);
        let e = nl.del_address(v0, a, 24).unwrap_err();
        assert_eq!(os_errno(&e), Some(libc::EADDRNOTAVAIL), "{e}");
        assert!(
            e.to_string()
                .starts_with("delete address 10.7.0.1/24 from nlt0: "),
            "{e}"
        );
    });
}

#[test]
fn masks_host_bits() {
    let a = IpAddr::V4(Ipv4Addr::new(10, 98, 3, 4));
    let mask = |ip: IpAddr, len: u8| prefix_of(&ip, len).unwrap().addr();
    assert_eq!(mask(a, 16), IpAddr::V4(Ipv4Addr::new(10, 98, 0, 0)));
    assert_eq!(mask(a, 0), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(mask(a, 32), a);
    let b: IpAddr = "fd00::1:2".parse().unwrap();
    assert_eq!(mask(b, 64), "fd00::".parse::<IpAddr>().unwrap());
    assert!(prefix_of(&a, 33).is_err());
}
