//! Seed corpora: a few valid inputs per target, made with the crates' own encoders (or written
//! by hand where a format has none). `tests/corpus.rs` checks that `corpus/TARGET/` holds them
//! and writes them there with `SKYWIRE_FUZZ_WRITE_SEEDS=1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use apps::hostnet::Change;
use controlplane::identity::Identity;
use controlplane::messenger::{Msg as MMsg, Record, Reject, Service};
use controlplane::nm::{Advert, AdvertFlags, Msg as NmMsg, RouteId};
use dataplane::fibproto::{FibMsg, Key, RuleAction, Traffic};
use dataplane::offload::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VnetHdr};
use dataplane::wire::{Cipher, HopKey, OVERHEAD, PAYLOAD_OFFSET, RouteKey};
use netbase::{NodeId, Prefix};

fn pfx(s: &str) -> Prefix {
    s.parse().expect("seed prefix")
}

fn ident(n: u8) -> Identity {
    Identity::from_seed([n; 32]).expect("seed identity")
}

/// The seeds of `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame_open" => frame_open(),
        "offload_segment" => offload_segment(),
        "offload_coalesce" => offload_coalesce(),
        "fib_msg" => fib_msg(),
        "nm_msg" => nm_msg(),
        "advert" => adverts().iter().map(Advert::encode).collect(),
        "messenger_msg" => messenger_msg(),
        "messenger_record" => records().iter().map(Record::encode).collect(),
        "appsock_line" => lines(&[
            "whoami",
            "underlay",
            &format!("route {}", NodeId([7; 32]).hex()),
            &format!("detach {}", NodeId([7; 32]).hex()),
            "find socks",
            "service vpn 4000",
            &format!("attach {} 10.1.0.0/16 2001:db8::/32", NodeId([8; 32]).hex()),
        ]),
        "socks_request" => socks_request(),
        "socks_udp" => socks_udp(),
        "vpn_lease" => vpn_lease(),
        "journal_line" => journal(),
        "signal_msg" => signal_msgs().into_iter().map(|m| enc_signal(&m)).collect(),
        "signal_ring" => signal_ring(),
        "config_viscript" => vec![include_bytes!("../../config.yaml").to_vec()],
        "config_control" => {
            vec![include_bytes!("../../controlplane/examples/control.yaml").to_vec()]
        }
        "config_node" => vec![
            include_bytes!("../../dataplane/examples/node-a.yaml").to_vec(),
            include_bytes!("../../dataplane/examples/node-b.yaml").to_vec(),
        ],
        _ => Vec::new(),
    }
}

fn lines(ls: &[&str]) -> Vec<Vec<u8>> {
    ls.iter().map(|l| l.as_bytes().to_vec()).collect()
}

fn frame_open() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    // Frames sealed under the fixed key: the open path succeeds on them.
    for (cipher, payload) in [
        (Cipher::ChaCha20Poly1305, &b""[..]),
        (
            Cipher::ChaCha20Poly1305,
            &b"\x45\x00\x00\x14hello, world"[..],
        ),
        (Cipher::Aes256Gcm, &[0x60u8; 48][..]),
    ] {
        let route = RouteKey::new(cipher, &super::FRAME_ROUTE_KEY).expect("key");
        let hop = HopKey::new(cipher, &super::FRAME_KEY).expect("key");
        let mut buf = vec![0u8; payload.len() + OVERHEAD];
        buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        let n = route.seal(5, &mut buf, payload.len()).expect("seal");
        buf.truncate(n);
        hop.stamp(&mut buf, 3, 4, 42).expect("stamp");
        v.push(buf);
    }
    // The seal-from-input layout: cipher, flip_at, counter, label, payload.
    let mut s = vec![1, 9, 0];
    s.extend_from_slice(&100u64.to_le_bytes());
    s.extend_from_slice(&7u32.to_le_bytes());
    s.extend_from_slice(b"payload bytes");
    v.push(s);
    v
}

/// A TCP packet (IPv4 without options or IPv6), checksums not filled in.
fn tcp_packet(v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ip = if v6 { 40 } else { 20 };
    let mut p = vec![0u8; ip + 20 + payload.len()];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        p[24..40].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
    } else {
        p[0] = 0x45;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    }
    let t = ip;
    p[t..t + 2].copy_from_slice(&1234u16.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    p[t + 8..t + 12].copy_from_slice(&1u32.to_be_bytes());
    p[t + 12] = 5 << 4;
    p[t + 13] = flags;
    p[t + 14..t + 16].copy_from_slice(&65535u16.to_be_bytes());
    p[t + 20..].copy_from_slice(payload);
    p
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn offload_segment() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (v6, mss) in [(false, 100u16), (true, 64), (false, 1400)] {
        let pkt = tcp_packet(v6, 1000, ACK | PSH, &[0xab; 300]);
        let ip = if v6 { 40 } else { 20 };
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: (ip + 20) as u16,
            gso_size: mss,
            csum_start: ip as u16,
            csum_offset: 16,
        };
        let mut s = h.encode().to_vec();
        s.extend_from_slice(&pkt);
        v.push(s);
    }
    // A plain packet with a partial checksum.
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let mut s = h.encode().to_vec();
    s.extend_from_slice(&tcp_packet(false, 1, ACK, b"abc"));
    v.push(s);
    v
}

fn offload_coalesce() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        let mut s = Vec::new();
        for (i, len) in [100usize, 100, 100, 40].into_iter().enumerate() {
            let last = i == 3;
            let seq = 1000 + (i * 100) as u32;
            let p = tcp_packet(
                v6,
                seq,
                if last { ACK | PSH } else { ACK },
                &vec![i as u8; len],
            );
            s.extend_from_slice(&(p.len() as u16).to_le_bytes());
            s.extend_from_slice(&p);
        }
        v.push(s);
    }
    v
}

fn fib_msg() -> Vec<Vec<u8>> {
    let t = Traffic {
        rx_pkts: 1,
        rx_bytes: 100,
        tx_pkts: 2,
        tx_bytes: 200,
    };
    let msgs = [
        FibMsg::AddSession {
            id: 1,
            peer_id: 2,
            peer: "192.0.2.1:7000".parse().expect("addr"),
            peer_shards: 2,
            cipher: Cipher::ChaCha20Poly1305,
            tx_key: Key([1; 32]),
            rx_key: Key([2; 32]),
            liveness: dataplane::liveness::Liveness::new(20, 3),
        },
        FibMsg::SessionDown {
            id: 1,
            silent_ms: 61,
        },
        FibMsg::AddRouteKey {
            id: 3,
            cipher: Cipher::Aes256Gcm,
            key: Key([3; 32]),
        },
        FibMsg::RemoveRouteKey { id: 3 },
        FibMsg::RemoveSession { id: 1 },
        FibMsg::ForgetPreviousKey { id: 1 },
        FibMsg::AddRule {
            session: 1,
            label: 5,
            action: RuleAction::Forward {
                session: 2,
                label: 6,
            },
        },
        FibMsg::AddRule {
            session: 1,
            label: 7,
            action: RuleAction::Deliver {
                sources: vec![pfx("fd00::/64"), pfx("10.0.0.0/8")],
                key: 3,
            },
        },
        FibMsg::RemoveRule {
            session: 1,
            label: 5,
        },
        FibMsg::AddRoute {
            prefix: pfx("fd00::2/128"),
            session: 1,
            label: 5,
            key: 3,
            keepalive: true,
        },
        FibMsg::RemoveRoute {
            prefix: pfx("10.1.0.0/16"),
        },
        FibMsg::Clear,
        FibMsg::Commit { nonce: 9 },
        FibMsg::ReadCounters { nonce: 10 },
        FibMsg::Inject {
            packet: vec![0x45, 0, 0, 20],
        },
        FibMsg::Ack {
            nonce: 9,
            error: "no such session".into(),
        },
        FibMsg::Counters {
            nonce: 10,
            sessions: vec![(1, t)],
            routes: vec![(pfx("fd00::2/128"), t)],
            drops: vec![("drop_no_route".into(), 3)],
        },
        FibMsg::Punt {
            dst: "fd00::9".parse().expect("ip"),
            packet: vec![0x60, 0, 0, 0],
        },
    ];
    msgs.iter()
        .map(|m| {
            let mut v = Vec::new();
            m.encode(&mut v);
            v
        })
        .collect()
}

fn adverts() -> Vec<Advert> {
    let (key, origin) = controlplane::nm::advert::keypair_from_seed(&[1; 32]);
    vec![
        Advert::new_signed(
            &key,
            origin,
            1,
            60_000,
            vec![(NodeId([2; 32]), 10), (NodeId([3; 32]), 20)],
            AdvertFlags::default(),
            &["socks".to_string(), "vpn".to_string()],
        ),
        Advert::new_signed(
            &key,
            origin,
            2,
            1000,
            Vec::new(),
            AdvertFlags {
                no_transit: true,
                drain: false,
            },
            &[],
        ),
    ]
}

fn nm_msg() -> Vec<Vec<u8>> {
    let rid = RouteId {
        origin: NodeId([4; 32]),
        counter: 17,
    };
    let mut msgs: Vec<NmMsg> = adverts().into_iter().map(NmMsg::Advert).collect();
    msgs.extend([
        NmMsg::LsaAck {
            origin: NodeId([4; 32]),
            seq: 3,
        },
        NmMsg::Setup {
            rid,
            path: vec![NodeId([4; 32]), NodeId([5; 32]), NodeId([6; 32])],
            rev_label: 11,
            hs: vec![0x5a; 96],
        },
        NmMsg::SetupAck {
            rid,
            label: 12,
            hs: vec![0xa5; 48],
        },
        NmMsg::Keepalive {
            rid,
            seq: 1,
            mac: [7; 16],
        },
        NmMsg::Teardown {
            rid,
            upstream: true,
        },
    ]);
    msgs.iter().map(NmMsg::encode).collect()
}

fn records() -> Vec<Record> {
    vec![
        Record::sign(
            &ident(1),
            1,
            60_000,
            vec![
                "192.0.2.1:7000".parse().expect("addr"),
                "[2001:db8::1]:7000".parse().expect("addr"),
            ],
            vec![Service {
                kind: "socks".into(),
                port: 1080,
                meta: "exit=yes".into(),
            }],
        )
        .expect("record"),
        Record::sign(&ident(2), 7, 1000, Vec::new(), Vec::new()).expect("record"),
    ]
}

fn messenger_msg() -> Vec<Vec<u8>> {
    let r = records();
    let msgs = [
        MMsg::Register(r[0].clone()),
        MMsg::Lookup {
            pk: NodeId([9; 32]),
        },
        MMsg::Query { kind: "vpn".into() },
        MMsg::Relay {
            to: NodeId([9; 32]),
            bytes: b"hello".to_vec(),
        },
        MMsg::Registered {
            pk: r[0].pk,
            seq: 1,
        },
        MMsg::Found(r[1].clone()),
        MMsg::NotFound {
            pk: NodeId([9; 32]),
        },
        MMsg::Services {
            kind: "socks".into(),
            records: r.clone(),
            truncated: true,
        },
        MMsg::Relayed {
            from: NodeId([9; 32]),
            bytes: vec![1, 2, 3],
        },
        MMsg::Error {
            code: Reject::ALL[0],
            subject: Some(NodeId([9; 32])),
        },
    ];
    msgs.iter().map(MMsg::encode).collect()
}

fn socks_request() -> Vec<Vec<u8>> {
    use apps::socks::{AuthRequest, Command, Greeting, Request, Target, build_reply};
    let mut v = vec![
        Greeting {
            methods: vec![0, 2],
        }
        .encode(),
        AuthRequest {
            user: b"user".to_vec(),
            pass: b"secret".to_vec(),
        }
        .encode(),
        build_reply(0, Some("10.0.0.1:1080".parse().expect("addr"))),
    ];
    for (command, target) in [
        (
            Command::from_byte(1),
            Target::Ip("192.0.2.7:443".parse().expect("addr")),
        ),
        (
            Command::from_byte(3),
            Target::Ip("[2001:db8::7]:53".parse().expect("addr")),
        ),
        (
            Command::from_byte(1),
            Target::Domain("example.com".into(), 80),
        ),
    ] {
        v.push(Request { command, target }.encode());
    }
    v
}

fn socks_udp() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for a in ["192.0.2.7:53", "[2001:db8::7]:53"] {
        let mut d = Vec::new();
        apps::socks::udp_header_into(a.parse::<SocketAddr>().expect("addr"), &mut d);
        d.extend_from_slice(b"dns query");
        v.push(d);
    }
    let mut d = vec![0, 0, 0];
    apps::socks::Target::Domain("example.com".into(), 53).encode_into(&mut d);
    d.extend_from_slice(b"data");
    v.push(d);
    v
}

fn vpn_lease() -> Vec<Vec<u8>> {
    use apps::vpn::Msg;
    let pk = NodeId([0xab; 32]);
    [
        Msg::Hello { pk, want: None },
        Msg::Hello {
            pk,
            want: Some(Ipv4Addr::new(100, 64, 0, 9)),
        },
        Msg::Offer {
            addr: Ipv4Addr::new(100, 64, 0, 9),
            pool: pfx("100.64.0.0/24"),
        },
        Msg::Refused("pool exhausted".into()),
        Msg::Keepalive,
    ]
    .iter()
    .map(|m| m.encode().into_bytes())
    .chain([b"100.64.0.0/10".to_vec()])
    .collect()
}

fn journal() -> Vec<Vec<u8>> {
    let changes = vec![
        Change::Addr {
            dev: "sky0".into(),
            addr: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)),
            len: 24,
        },
        Change::Route {
            dst: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)),
            len: 16,
            dev: "sky0".into(),
            gw: None,
        },
        Change::Route {
            dst: "2001:db8::".parse().expect("ip"),
            len: 32,
            dev: "eth0".into(),
            gw: Some("fe80::1".parse().expect("ip")),
        },
        Change::Sysctl {
            path: "net/ipv4/ip_forward".into(),
            old: "0".into(),
        },
        Change::NftTable {
            family: "ip".into(),
            name: "skywire_vpn".into(),
        },
    ];
    let mut v = vec![apps::hostnet::render_journal(&changes).into_bytes()];
    for c in &changes {
        let line = c.to_string();
        // Only what validates is a seed (the journal refuses the rest).
        if line.parse::<Change>().is_ok() {
            v.push(line.into_bytes());
        }
    }
    v
}

fn signal_msgs() -> Vec<signal::Msg> {
    use signal::{Level, Msg, Usage};
    vec![
        Msg::Register {
            id: 1,
            kind: "dataplane".into(),
            pid: 1234,
            version: "0.1.0".into(),
        },
        Msg::Ping { nonce: 5 },
        Msg::Pong { nonce: 5 },
        Msg::UsageRequest { nonce: 6 },
        Msg::Usage {
            nonce: 6,
            usage: Usage {
                cpu_percent: 12.5,
                rss_bytes: 1 << 20,
                threads: 4,
                uptime_ms: 1000,
                counters: vec![("rx_pkts".into(), 10), ("drop_no_route".into(), 1)],
            },
        },
        Msg::Shutdown { deadline_ms: 3000 },
        Msg::ShutdownAck,
        Msg::Log {
            level: Level::Info,
            line: "link up".into(),
        },
        Msg::Query {
            nonce: 7,
            name: "routes".into(),
        },
        Msg::QueryReply {
            nonce: 7,
            text: "fd00::/64 via 1".into(),
        },
        Msg::Event {
            name: "route".into(),
            data: "up".into(),
        },
    ]
}

fn enc_signal(m: &signal::Msg) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v).expect("seed encodes");
    v
}

fn signal_ring() -> Vec<Vec<u8>> {
    // Mode 1: records pushed and popped (len, bytes, staged flag, pop flag).
    let mut s = vec![1, 0];
    for m in signal_msgs().iter().take(5) {
        let e = enc_signal(m);
        s.push(e.len() as u8);
        s.extend_from_slice(&e);
        s.push(0);
        s.push(0);
    }
    // Mode 0: a ring a producer filled, as the consumer finds it.
    let ping = enc_signal(&signal::Msg::Ping { nonce: 1 });
    let padded = (4 + ping.len() + 7) & !7;
    let mut h = vec![0, 0];
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&(padded as u64).to_le_bytes());
    h.extend_from_slice(&(ping.len() as u32).to_le_bytes());
    h.extend_from_slice(&ping);
    vec![s, h]
}
