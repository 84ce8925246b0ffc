use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn ifname() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.@+-]{1,15}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (ifname(), ip(), any::<u8>()).prop_map(|(dev, addr, len)| Change::Addr {
            dev,
            len: len % (max_len(addr) + 1),
            addr,
        }),
        (ip(), any::<u8>(), ifname(), proptest::option::of(ip())).prop_map(
            |(dst, len, dev, gw)| {
                let len = len % (max_len(dst) + 1);
                // A gateway of the destination's family.
                let gw = gw.map(|g| match (dst, g) {
                    (IpAddr::V4(_), IpAddr::V6(g)) => {
                        IpAddr::V4(Ipv4Addr::from_bits(g.to_bits() as u32))
                    }
                    (IpAddr::V6(_), IpAddr::V4(g)) => IpAddr::V6(g.to_ipv6_mapped()),
                    _ => g,
                });
                Change::Route {
                    dst: network(dst, len),
                    len,
                    dev,
                    gw,
                }
            }
        ),
        (
            "[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,3}",
            "[!-~]([ -~\t]{0,10}[!-~])?"
        )
            .prop_map(|(path, old)| Change::Sysctl { path, old }),
        (
            prop_oneof![Just("ip"), Just("ip6"), Just("inet")],
            "[A-Za-z0-9_-]{1,63}"
        )
            .prop_map(|(f, name)| Change::NftTable {
                family: f.to_string(),
                name
            }),
    ]
}

proptest! {
    #[test]
    fn journal_roundtrip(changes in proptest::collection::vec(change(), 0..8)) {
        for c in &changes {
            prop_assert_eq!(c.validate(), Ok(()));
        }
        let text = render_journal(&changes);
        prop_assert_eq!(parse_journal(text.as_bytes()), Ok(changes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_journal(&bytes);
        let mut with_header = format!("{HEADER}\n").into_bytes();
        with_header.extend_from_slice(&bytes);
        let _ = parse_journal(&with_header);
    }

    #[test]
    fn arbitrary_lines_never_panic(line in "(addr|route|sysctl|nft)?[ -~\t]{0,60}") {
        let text = format!("{HEADER}\n{line}\n");
        if let Ok(changes) = parse_journal(text.as_bytes()) {
            // Whatever parses, validates and renders back to something parseable.
            for c in &changes {
                prop_assert_eq!(c.validate(), Ok(()));
            }
            prop_assert_eq!(parse_journal(render_journal(&changes).as_bytes()), Ok(changes));
        }
    }
}

#[test]
fn parses_the_documented_format() {
    let text = format!(
        "{HEADER}\naddr sky0 100.64.0.2/32\nroute 0.0.0.0/1 dev sky0\n\n# note\n\
         route 10.1.2.3/32 dev eth0 via 10.1.2.254\nsysctl net/ipv4/ip_local_port_range 32768\t60999\n\
         nft ip skywire_vpn\nroute fd00::/8 dev sky0 via fe80::1\n"
    );
    let changes = parse_journal(text.as_bytes()).unwrap();
    assert_eq!(changes.len(), 6);
    assert_eq!(
        changes[2],
        Change::Route {
            dst: "10.1.2.3".parse().unwrap(),
            len: 32,
            dev: "eth0".into(),
            gw: Some("10.1.2.254".parse().unwrap()),
        }
    );
    assert_eq!(
        changes[3],
        Change::Sysctl {
            path: "net/ipv4/ip_local_port_range".into(),
            old: "32768\t60999".into()
        }
    );
    assert_eq!(changes[4].to_string(), "nft ip skywire_vpn");
}

#[test]
fn rejects_bad_input_with_line_numbers() {
    let bad = |body: &str| parse_journal(format!("{HEADER}\n{body}\n").as_bytes()).unwrap_err();
    let cases = [
        ("addr sky0 100.64.0.2/33", "line 2: prefix length /33"),
        (
            "addr sky0 100.64.0.2",
            "line 2: \"100.64.0.2\" is not ADDRESS/LENGTH",
        ),
        ("addr sky0 100.64.0.2/+3", "is not a prefix length"),
        ("addr sky/0 1.2.3.4/32", "not a valid interface name"),
        (
            "addr abcdefghijklmnop 1.2.3.4/32",
            "not a valid interface name",
        ),
        ("addr .. 1.2.3.4/32", "not a valid interface name"),
        ("route 10.0.0.1/8 dev eth0", "host bits set"),
        ("route 10.0.0.0/8 dev eth0 via fe80::1", "address family"),
        ("route 10.0.0.0/8 eth0", "expected `route"),
        ("sysctl ../../etc/passwd 1", "not a sysctl path"),
        ("sysctl /etc/passwd 1", "not a sysctl path"),
        ("sysctl net/IPv4/x 1", "not a sysctl path"),
        ("sysctl net/ipv4/ip_forward", "expected `sysctl PATH VALUE`"),
        ("sysctl net/ipv4/ip_forward  1", "cannot be recorded"),
        ("nft bridge t", "not supported"),
        ("nft ip t;x", "not an nft table name"),
        ("rm -rf /", "unknown change"),
    ];
    for (body, want) in cases {
        let e = bad(body);
        assert!(e.contains(want), "{body:?}: {e}");
    }
    let mut bytes = format!("{HEADER}\naddr sky0 1.2.3.4/32\n").into_bytes();
    bytes.extend_from_slice(b"\xff\n");
    let e = parse_journal(&bytes);
    assert_eq!(e, Err("line 3: not UTF-8".into()));
    let e = parse_journal(b"addr sky0 1.2.3.4/32\n").unwrap_err();
    assert!(e.starts_with("line 1: expected the header"), "{e}");
}

#[test]
fn nat_ruleset_quotes_names() {
    let r = nat_ruleset("100.64.0.0/10", "eth0", "sky0");
    assert!(
        r.contains(r#"ip saddr 100.64.0.0/10 oifname "eth0" masquerade"#),
        "{r}"
    );
    assert!(
        r.contains(r#"iifname "sky0" ip saddr 100.64.0.0/10 drop"#),
        "{r}"
    );
    assert!(r.contains(r#"iifname "eth0" oifname "sky0" drop"#), "{r}");
    assert!(
        r.contains("tcp flags syn tcp option maxseg size set rt mtu"),
        "{r}"
    );
}

#[test]
fn exit_ruleset_keeps_clients_to_the_uplink() {
    let r = nat_ruleset("100.64.0.0/10", "eth0", "sky0");
    // Nothing from the pool reaches the host itself but answers.
    assert!(r.contains("type filter hook input"), "{r}");
    assert!(
        r.contains(r#"iifname "sky0" ip saddr 100.64.0.0/10 ct state established,related accept"#),
        "{r}"
    );
    let always = format!(
        r#"iifname "sky0" ip saddr 100.64.0.0/10 ip daddr {{ {EXIT_ALWAYS_DENIED} }} drop"#
    );
    let private =
        format!(r#"iifname "sky0" ip saddr 100.64.0.0/10 ip daddr {{ {EXIT_PRIVATE} }} drop"#);
    let out = r#"iifname "sky0" ip saddr 100.64.0.0/10 oifname "eth0" accept"#;
    assert!(EXIT_ALWAYS_DENIED.contains("169.254.0.0/16"));
    let at = |r: &str, what: &str| {
        r.find(what)
            .unwrap_or_else(|| panic!("{what:?} not in {r}"))
    };
    assert!(
        at(&r, &always) < at(&r, &private) && at(&r, &private) < at(&r, out),
        "{r}"
    );
    let open = ExitFilter {
        allow_private: true,
        allow: vec![],
    };
    let r = exit_ruleset("100.64.0.0/10", "eth0", "sky0", &open);
    assert!(!r.contains(&private) && r.contains(&always), "{r}");
    let one = ExitFilter {
        allow_private: false,
        allow: vec!["192.168.5.0/24".parse().unwrap()],
    };
    let r = exit_ruleset("100.64.0.0/10", "eth0", "sky0", &one);
    let hole =
        r#"iifname "sky0" ip saddr 100.64.0.0/10 oifname "eth0" ip daddr 192.168.5.0/24 accept"#;
    assert!(
        at(&r, &always) < at(&r, hole) && at(&r, hole) < at(&r, &private),
        "{r}"
    );
}
