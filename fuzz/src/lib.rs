//! Fuzz target bodies: one function per parser of input from the network or from another
//! process. Each takes arbitrary bytes, must never panic, hang or allocate without bound, and,
//! where the format has an encoder, checks that whatever decoded encodes and decodes back to the
//! same value.
//!
//! The libFuzzer binaries in `fuzz_targets/` call these functions; `tests/corpus.rs` replays the
//! seed corpora (`corpus/TARGET/`) and every crash kept as a regression (`regressions/TARGET/`)
//! through them on stable. [`TARGETS`] lists them all; [`seeds`] builds the seed corpora.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::Ordering;

use netbase::NodeId;

pub mod seeds;

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its libFuzzer binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_open", frame_open),
    ("offload_segment", offload_segment),
    ("offload_coalesce", offload_coalesce),
    ("fib_msg", fib_msg),
    ("nm_msg", nm_msg),
    ("advert", advert),
    ("messenger_msg", messenger_msg),
    ("messenger_record", messenger_record),
    ("appsock_line", appsock_line),
    ("socks_request", socks_request),
    ("socks_udp", socks_udp),
    ("vpn_lease", vpn_lease),
    ("journal_line", journal_line),
    ("signal_msg", signal_msg),
    ("signal_ring", signal_ring),
    ("config_viscript", config_viscript),
    ("config_control", config_control),
    ("config_node", config_node),
];

/// Takes bytes off the front of the input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let t = self.take(N);
        a[..t.len()].copy_from_slice(t);
        a
    }
    fn u8(&mut self) -> u8 {
        self.arr::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.arr())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.arr())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.arr())
    }
    /// A length-prefixed (one byte) piece.
    fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---- dataplane ----------------------------------------------------------------------------

/// The fixed hop key of [`frame_open`].
pub const FRAME_KEY: [u8; 32] = [0x5a; 32];
/// The fixed route key of [`frame_open`].
pub const FRAME_ROUTE_KEY: [u8; 32] = [0x6b; 32];

/// Data frames: the hop check and the route open of arbitrary bytes under fixed keys (both
/// ciphers), then a frame sealed from the input (route counter, label, payload), maybe with one
/// byte flipped, checked, opened and relayed; the authenticated counters go through a
/// `ReplayWindow` checked against a model.
///
/// Input: `cipher flip_at:u16 counter:u64 label:u32 payload...` for the sealed frame; the whole
/// input is also tried as a frame, and read as little-endian u64 counters for the window.
pub fn frame_open(data: &[u8]) {
    use dataplane::replay::{ReplayWindow, WINDOW};
    use dataplane::wire::{
        Cipher, HopKey, MAX_COUNTER, MAX_FRAME_LEN, OVERHEAD, PAYLOAD_OFFSET, RouteKey, WireError,
        parse_header, relay,
    };

    for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
        let hop = HopKey::new(cipher, &FRAME_KEY).expect("fixed key");
        let route = RouteKey::new(cipher, &FRAME_ROUTE_KEY).expect("fixed key");
        let header = parse_header(data);
        match hop.verify(data) {
            Ok(h) => {
                assert_eq!(Ok(h), header);
                assert!(h.counter < MAX_COUNTER && h.route_counter < MAX_COUNTER);
            }
            Err(_) => {
                if data.len() < OVERHEAD {
                    assert!(header.is_err());
                }
            }
        }
        let mut frame = data.to_vec();
        if let Ok(p) = route.open(&mut frame) {
            assert_eq!(p.len(), data.len() - OVERHEAD);
        }
    }

    // A frame sealed from the input.
    let mut i = Input(data);
    let cipher = if i.u8() & 1 == 0 {
        Cipher::ChaCha20Poly1305
    } else {
        Cipher::Aes256Gcm
    };
    let flip_at = i.u16();
    let counter = i.u64();
    let label = i.u32();
    let payload = i.rest();
    let hop = HopKey::new(cipher, &FRAME_KEY).expect("fixed key");
    let route = RouteKey::new(cipher, &FRAME_ROUTE_KEY).expect("fixed key");
    let mut buf = vec![0u8; payload.len() + OVERHEAD];
    buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
    match route.seal(counter, &mut buf, payload.len()) {
        Err(WireError::CounterExhausted) => assert!(counter >= MAX_COUNTER),
        Err(WireError::TooLong) => assert!(payload.len() + OVERHEAD > MAX_FRAME_LEN),
        Err(e) => panic!("sealing into a buffer of the right size: {e}"),
        Ok(n) => {
            assert_eq!(n, buf.len());
            hop.stamp(&mut buf, 7, 1, label).expect("stamp");
            let sealed = buf.clone();
            let h = hop.verify(&buf).expect("a stamped frame checks");
            assert_eq!((h.label, h.route_counter), (label, counter));
            assert_eq!(
                &*route.open(&mut buf).expect("a sealed frame opens"),
                payload
            );
            if flip_at != 0 {
                // Any altered byte: the frame fails the hop check or does not open.
                let mut bad = sealed.clone();
                let at = usize::from(flip_at) % bad.len();
                bad[at] ^= (flip_at >> 8) as u8 | 1;
                assert!(hop.verify(&bad).is_err() || route.open(&mut bad).is_err());
            }
            // Relay: check, re-stamp under the next hop's key; the payload is carried as is.
            let next = HopKey::new(Cipher::ChaCha20Poly1305, &[0x33; 32]).expect("key");
            let mut frame = sealed.clone();
            relay(&hop, &next, &mut frame, 9, 2, label ^ 1).expect("relay");
            assert_eq!(
                frame[PAYLOAD_OFFSET..n - 16],
                sealed[PAYLOAD_OFFSET..n - 16]
            );
            let h = next.verify(&frame).expect("the relayed frame checks");
            assert_eq!((h.receiver, h.counter, h.label), (9, 2, label ^ 1));
            assert_eq!(
                &*route.open(&mut frame).expect("and opens at the egress"),
                payload
            );
        }
    }

    // The replay window against a model: a counter is accepted once, never when too old
    // (more than WINDOW below the largest seen) or >= MAX_COUNTER.
    let mut w = ReplayWindow::new();
    let mut seen = std::collections::HashSet::new();
    let mut max: Option<u64> = None;
    let mut i = Input(data);
    while !i.is_empty() {
        // Small steps most of the time, so the window slides instead of jumping.
        let raw = i.u64();
        let c = if raw & 1 == 0 {
            max.unwrap_or(0)
                .saturating_add((raw >> 1) % (2 * WINDOW))
                .saturating_sub(WINDOW)
        } else {
            raw >> 1 | (raw & 2) << 62
        };
        let fresh =
            c < MAX_COUNTER && !seen.contains(&c) && max.is_none_or(|m| c > m || m - c < WINDOW);
        assert_eq!(w.check(c), fresh, "check({c}) with max {max:?}");
        assert_eq!(w.update(c), fresh, "update({c}) with max {max:?}");
        assert!(!w.check(c));
        if fresh {
            seen.insert(c);
            max = Some(max.map_or(c, |m| m.max(c)));
        }
        assert_eq!(w.max_seen(), max);
    }
}

/// Offload segmentation: a vnet header and a packet as read from the TUN, through `prepare`;
/// a GSO super-packet is cut with `Gso::write` and the segments' payloads must add up to the
/// super-packet's.
pub fn offload_segment(data: &[u8]) {
    use dataplane::offload::{Prepared, VNET_HDR_LEN, VnetHdr, prepare};
    let Ok(h) = VnetHdr::parse(data) else {
        assert!(data.len() < VNET_HDR_LEN);
        return;
    };
    assert_eq!(VnetHdr::parse(&h.encode()), Ok(h));
    let mut pkt = data[VNET_HDR_LEN..].to_vec();
    let Ok(Prepared::Gso(g)) = prepare(&h, &mut pkt) else {
        return;
    };
    let n = g.segments();
    assert!(n >= 1);
    assert_eq!(g.seg_len(n), 0);
    let max = g.max_seg_len();
    // seg_len(i) = hdr + min(mss, payload left): the lengths add up to n * hdr + payload, and
    // hdr + payload is the super-packet.
    let sum: usize = (0..n).map(|s| g.seg_len(s)).sum();
    let hdr = if n == 1 {
        assert_eq!(g.seg_len(0), pkt.len());
        None
    } else {
        assert!(sum > pkt.len());
        assert_eq!((sum - pkt.len()) % (n - 1), 0);
        Some((sum - pkt.len()) / (n - 1))
    };
    let mut out = vec![0u8; max];
    for s in 0..n {
        let len = g
            .write(&pkt, s, &mut out)
            .expect("a prepared super-packet segments");
        assert_eq!(len, g.seg_len(s));
        if s + 1 < n {
            assert_eq!(len, max);
        }
        if let Some(hdr) = hdr {
            let at = hdr + s * (max - hdr);
            assert_eq!(
                out[hdr..len],
                pkt[at..at + len - hdr],
                "payload of segment {s}"
            );
        }
    }
    assert!(g.write(&pkt, n, &mut out).is_err());
    if max > 0 {
        assert!(g.write(&pkt, 0, &mut out[..max - 1]).is_err());
    }
}

/// Offload coalescing: packets (each `len:u16le bytes`) pushed into a `Coalescer`; each
/// super-packet it finishes must be accepted by `prepare` and segment back into as many
/// segments of the same lengths and payload bytes as were pushed.
pub fn offload_coalesce(data: &[u8]) {
    use dataplane::offload::{Coalescer, Prepared, VNET_HDR_LEN, VnetHdr, prepare};
    let mut c = Coalescer::new();
    let mut pushed: Vec<Vec<u8>> = Vec::new();
    let mut out = vec![0u8; 70_000];
    let mut check = |sup: &[u8], pushed: &mut Vec<Vec<u8>>| {
        if pushed.is_empty() {
            assert!(sup.is_empty());
            return;
        }
        let h = VnetHdr::parse(sup).expect("vnet header");
        let mut p = sup[VNET_HDR_LEN..].to_vec();
        let segs: Vec<Vec<u8>> = match prepare(&h, &mut p).expect("a coalesced packet prepares") {
            Prepared::Single => vec![p],
            Prepared::Gso(g) => (0..g.segments())
                .map(|i| {
                    let n = g.write(&p, i, &mut out).expect("segment");
                    out[..n].to_vec()
                })
                .collect(),
        };
        assert_eq!(segs.len(), pushed.len());
        for (a, b) in segs.iter().zip(pushed.iter()) {
            assert_eq!(a.len(), b.len());
            let hl = tcp_hdr_end(b);
            assert_eq!(a[hl..], b[hl..], "payload");
        }
        pushed.clear();
    };
    let mut i = Input(data);
    while !i.is_empty() {
        let n = usize::from(i.u16());
        let pkt = i.take(n);
        if !c.push(pkt) {
            let sup = c.finish().to_vec();
            check(&sup, &mut pushed);
            assert!(c.is_empty());
            if c.push(pkt) {
                pushed.push(pkt.to_vec());
            }
        } else {
            pushed.push(pkt.to_vec());
        }
        assert_eq!(c.segments(), pushed.len());
        assert_eq!(
            c.segment_bytes(),
            pushed.iter().map(Vec::len).sum::<usize>()
        );
    }
    let sup = c.finish().to_vec();
    check(&sup, &mut pushed);
}

/// Where the payload of a segment the coalescer took starts (IPv4 without options or IPv6
/// without extension headers, then TCP with its data offset).
fn tcp_hdr_end(p: &[u8]) -> usize {
    let ip = if p[0] >> 4 == 4 { 20 } else { 40 };
    ip + usize::from(p[ip + 12] >> 4) * 4
}

/// Fib ring messages: `FibMsg::decode`, and the round trip of whatever decoded.
pub fn fib_msg(data: &[u8]) {
    use dataplane::fibproto::FibMsg;
    if let Ok(m) = FibMsg::decode(data) {
        let mut v = Vec::new();
        m.encode(&mut v);
        assert_eq!(FibMsg::decode(&v).as_ref(), Ok(&m));
    }
}

/// The dataplane's static config file (`Static::parse`, two shards).
pub fn config_node(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = dataplane::config::Static::parse(s, Path::new("node.yaml"), 2);
    }
}

// ---- controlplane -------------------------------------------------------------------------

/// Node-manager messages: `nm::Msg::decode` and the round trip.
pub fn nm_msg(data: &[u8]) {
    use controlplane::nm::Msg;
    if let Ok(m) = Msg::decode(data) {
        let _ = m.kind();
        assert_eq!(Msg::decode(&m.encode()).as_ref(), Ok(&m));
    }
}

/// Link-state adverts: `Advert::decode`, the round trip, and signature verification.
pub fn advert(data: &[u8]) {
    use controlplane::nm::Advert;
    if let Ok(a) = Advert::decode(data) {
        let e = a.encode();
        assert_eq!(Advert::decode(&e).as_ref(), Ok(&a));
        let _ = a.verify();
        let _ = a.is_unsigned();
        let _ = a.cost_to(&NodeId([1; 32]));
    }
}

/// Messenger messages: `messenger::Msg::decode` and the round trip.
pub fn messenger_msg(data: &[u8]) {
    use controlplane::messenger::Msg;
    if let Ok(m) = Msg::decode(data) {
        assert_eq!(Msg::decode(&m.encode()).as_ref(), Ok(&m));
    }
}

/// Messenger records: `Record::decode`, the round trip, limits and signature verification.
pub fn messenger_record(data: &[u8]) {
    use controlplane::messenger::Record;
    if let Ok(r) = Record::decode(data) {
        assert_eq!(Record::decode(&r.encode()).as_ref(), Ok(&r));
        let _ = r.check_limits();
        let _ = r.verify();
        let _ = r.offers("socks");
    }
}

/// The line form of an app-socket request (what `appsock::parse` reads).
pub fn appsock_render(r: &controlplane::appsock::Request) -> String {
    use controlplane::appsock::Request;
    match r {
        Request::WhoAmI => "whoami".into(),
        Request::Underlay => "underlay".into(),
        Request::Route { node } => format!("route {}", node.hex()),
        Request::Detach { node } => format!("detach {}", node.hex()),
        Request::Find { kind } => format!("find {kind}"),
        Request::Service { kind, port } => format!("service {kind} {port}"),
        Request::Attach { node, prefixes } => {
            let mut s = format!("attach {}", node.hex());
            for p in prefixes {
                s.push_str(&format!(" {p}"));
            }
            s
        }
    }
}

/// App-socket request lines: `appsock::parse`, and the round trip through the line form.
pub fn appsock_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = controlplane::appsock::parse(line) {
        let again = controlplane::appsock::parse(&appsock_render(&r));
        assert_eq!(again.as_ref(), Ok(&r));
    }
}

/// The controlplane's config file (`Config::parse`).
pub fn config_control(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = controlplane::config::Config::parse(s, Path::new("/etc/skywire/control.yaml"));
    }
}

// ---- apps -----------------------------------------------------------------------------------

/// Checks an incremental SOCKS parser on `data`: what it parses, it consumed from `data`; every
/// shorter prefix of those bytes is "need more" and never a different answer.
fn incremental<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    parse: impl Fn(&[u8]) -> apps::socks::Parsed<T>,
) -> Option<(T, usize)> {
    let full = parse(data).ok()??;
    let n = full.1;
    assert!(n <= data.len());
    assert_eq!(parse(&data[..n]).ok().flatten().as_ref(), Some(&full));
    for k in 0..n {
        // Every check looks only at bytes the prefix has, and the whole message passed them
        // all: a prefix is "need more", never an answer or an error.
        match parse(&data[..k]) {
            Ok(None) => {}
            other => panic!("prefix of {k} bytes of a {n}-byte message: {other:?}"),
        }
    }
    Some(full)
}

/// SOCKS5 requests: the greeting, username/password, request, reply and address parsers, each
/// incremental (a prefix is "need more"); what parsed encodes to the bytes it consumed.
pub fn socks_request(data: &[u8]) {
    use apps::socks::{parse_auth, parse_greeting, parse_reply, parse_request, parse_target};
    if let Some((g, n)) = incremental(data, parse_greeting) {
        assert_eq!(g.encode(), data[..n]);
    }
    if let Some((a, n)) = incremental(data, parse_auth) {
        assert_eq!(a.encode(), data[..n]);
    }
    if let Some((r, n)) = incremental(data, parse_request) {
        assert_eq!(r.encode(), data[..n]);
    }
    if let Some((t, n)) = incremental(data, parse_target) {
        let mut v = Vec::new();
        t.encode_into(&mut v);
        assert_eq!(v, data[..n]);
        let _ = t.to_string();
    }
    if let Some(((rep, t), n)) = incremental(data, parse_reply) {
        // The reply's reserved byte is not checked: compare past it.
        let mut v = vec![data[0], rep, data[2]];
        t.encode_into(&mut v);
        assert_eq!(v, data[..n]);
    }
}

/// SOCKS5 UDP ASSOCIATE datagrams: `parse_udp`, and the header of an address target back.
pub fn socks_udp(data: &[u8]) {
    use apps::socks::{Target, parse_udp, udp_header_into};
    if let Ok((_frag, t, at)) = parse_udp(data) {
        assert!(at <= data.len());
        if let Target::Ip(addr) = t {
            let mut v = Vec::new();
            udp_header_into(addr, &mut v);
            v.extend_from_slice(&data[at..]);
            let (f2, t2, at2) = parse_udp(&v).expect("a header we wrote parses");
            assert_eq!((f2, &t2, at2), (0, &Target::Ip(addr), at));
        }
    }
}

/// VPN lease lines: `vpn::Msg::parse`, the round trip through `encode`, and the pool parser.
pub fn vpn_lease(data: &[u8]) {
    use apps::vpn::{Msg, parse_pool};
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Msg::parse(line) {
        assert_eq!(Msg::parse(&m.encode()).as_ref(), Ok(&m), "{line:?}");
    }
    if let Ok(p) = parse_pool(line) {
        assert_eq!(parse_pool(&p.to_string()), Ok(p));
    }
}

/// The host-change journal: `parse_journal` of a file's bytes, the round trip through
/// `render_journal`, and each line through `Change`'s `FromStr`/`Display`.
pub fn journal_line(data: &[u8]) {
    use apps::hostnet::{Change, parse_journal, render_journal};
    if let Ok(changes) = parse_journal(data) {
        let text = render_journal(&changes);
        assert_eq!(
            parse_journal(text.as_bytes()).as_ref(),
            Ok(&changes),
            "{text:?}"
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        for line in s.lines().take(64) {
            if let Ok(c) = line.parse::<Change>() {
                let back = c.to_string();
                assert_eq!(
                    back.parse::<Change>().as_ref(),
                    Ok(&c),
                    "{line:?} -> {back:?}"
                );
            }
        }
    }
}

// ---- signal ---------------------------------------------------------------------------------

/// Signal messages: `Msg::decode`, and the round trip of whatever decoded (compared as bytes:
/// a `Usage` carries an `f32` that may be NaN).
pub fn signal_msg(data: &[u8]) {
    use signal::Msg;
    if let Ok(m) = Msg::decode(data) {
        let mut v = Vec::new();
        m.encode(&mut v).expect("what decoded encodes");
        let m2 = Msg::decode(&v).expect("what encoded decodes");
        let mut v2 = Vec::new();
        m2.encode(&mut v2).expect("what decoded encodes");
        assert_eq!(v, v2);
    }
}

/// A ring's memory on the heap, with nothing but `Cell`s (no unsafe).
struct CellRing {
    ctl: signal::ring::RingCtl,
    data: Box<[Cell<u8>]>,
}

impl signal::ring::RingMem for &CellRing {
    fn ctl(&self) -> &signal::ring::RingCtl {
        &self.ctl
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
    fn write_at(&self, off: usize, src: &[u8]) {
        for (c, b) in self.data[off..off + src.len()].iter().zip(src) {
            c.set(*b);
        }
    }
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        for (c, b) in self.data[off..off + dst.len()].iter().zip(dst) {
            *b = c.get();
        }
    }
}

/// Signal ring records. Input: `mode cap`, then for mode 0 (a hostile producer) `head:u64
/// tail:u64` and the data area's bytes: the consumer pops records (each decoded as a signal
/// message) or reports corruption, never panics; for mode 1 (framing round trip) records
/// (`len:u8 bytes`) pushed by a producer come out of the consumer unchanged and in order.
pub fn signal_ring(data: &[u8]) {
    use signal::ring::{Consumer, Producer, PushError, RingCtl};
    let mut i = Input(data);
    let mode = i.u8();
    let cap = 64usize << (i.u8() % 4);
    let ring = CellRing {
        ctl: RingCtl::new(),
        data: (0..cap).map(|_| Cell::new(0)).collect(),
    };
    let mut out = Vec::new();
    if mode & 1 == 0 {
        let head = i.u64();
        let tail = i.u64();
        for (c, b) in ring.data.iter().zip(i.rest()) {
            c.set(*b);
        }
        ring.ctl.head.0.store(head, Ordering::Release);
        ring.ctl.tail.0.store(tail, Ordering::Release);
        let mut c = Consumer::new(&ring);
        for _ in 0..64 {
            match c.pop(&mut out) {
                Ok(true) => {
                    assert!(out.len() <= cap - 4);
                    let _ = signal::Msg::decode(&out);
                }
                _ => break,
            }
        }
        let _ = c.prepare_sleep();
        let mut p = Producer::new(&ring);
        for _ in 0..8 {
            if p.push(&[1; 7]).is_err() {
                break;
            }
        }
        return;
    }
    let mut p = Producer::new(&ring);
    let mut c = Consumer::new(&ring);
    let mut queue: std::collections::VecDeque<(Vec<u8>, bool)> = std::collections::VecDeque::new();
    while !i.is_empty() {
        let rec = i.piece();
        let staged = i.u8() & 1 == 1;
        let r = if staged {
            p.stage(rec)
        } else {
            p.push(rec).map(|_| ())
        };
        match r {
            Ok(()) => {
                if !staged {
                    // A push publishes what was staged before it too.
                    for q in queue.iter_mut() {
                        q.1 = true;
                    }
                }
                queue.push_back((rec.to_vec(), !staged));
            }
            Err(PushError::TooBig(n)) => {
                assert_eq!(n, rec.len());
                assert!(rec.len() > p.max_record());
            }
            Err(PushError::Full) => {
                p.publish();
                for q in queue.iter_mut() {
                    q.1 = true;
                }
                while let Some((want, _)) = queue.pop_front() {
                    assert!(c.pop(&mut out).expect("no corruption"));
                    assert_eq!(out, want);
                }
                assert!(!c.pop(&mut out).expect("no corruption"));
            }
            Err(PushError::Corrupt(e)) => panic!("a well-behaved consumer: {e:?}"),
        }
        // Pop what is published, sometimes.
        if i.u8() & 3 == 0 {
            while queue.front().is_some_and(|q| q.1) {
                let (want, _) = queue.pop_front().expect("front");
                assert!(c.pop(&mut out).expect("no corruption"));
                assert_eq!(out, want);
            }
        }
    }
    p.publish();
    while let Some((want, _)) = queue.pop_front() {
        assert!(c.pop(&mut out).expect("no corruption"));
        assert_eq!(out, want);
    }
    assert!(!c.pop(&mut out).expect("no corruption"));
}

// ---- viscript -------------------------------------------------------------------------------

/// viscript's config.yaml (`Config::parse`).
pub fn config_viscript(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = viscript::config::Config::parse(s, Path::new("/etc/skywire/config.yaml"))
    {
        let _ = c.start_order();
        let _ = c.stop_order();
    }
}
