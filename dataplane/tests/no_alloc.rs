//! The per-packet path allocates nothing: ingress (seal), relay (open + re-seal), egress (open +
//! deliver), and the drop paths (replay, bad tag, unknown session), measured with a counting
//! global allocator armed on this thread only. Also the offload path: a TCP super-packet
//! segmented, each segment sealed, relayed, opened, and coalesced again. And each backend's
//! whole loop (io_uring, epoll; with and without offloads): two shards on loopback UDP, their
//! TUN queues stood in for by datagram socket pairs, packets and TCP super-packets carried from
//! one "sky0" to the other while the loop threads' allocations are counted.

use dataplane::backend::{ShardIo, epoll, uring};
use dataplane::config::Static;
use dataplane::fib::FibCell;
use dataplane::fixtures::{key_hex, three_hops, v6_packet};
use dataplane::offload::{Coalescer, F_NEEDS_CSUM, GSO_TCPV6, Prepared, VnetHdr, prepare};
use dataplane::offload::{GSO_NONE, VNET_HDR_LEN};
use dataplane::shard::Shard;
use dataplane::shard::{BUF_SIZE, HEADROOM, Verdict};
use dataplane::stats::DropReason;
use dataplane::stats::NodeStats;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Allocations by backend loop threads ([`IN_LOOP`]) while [`LOOP_ARMED`].
static LOOP_ALLOCS: AtomicU64 = AtomicU64::new(0);
static LOOP_ARMED: AtomicBool = AtomicBool::new(false);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if ARMED.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    if IN_LOOP.with(Cell::get) && LOOP_ARMED.load(Ordering::Relaxed) {
        LOOP_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hot_path_allocates_nothing() {
    let (mut a, mut r, mut b) = three_hops();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut copy = vec![0u8; BUF_SIZE];
    let mut run = |n: usize| {
        for i in 0..n {
            let len = v6_packet(&mut buf, 1, 3, 64 + i % 1300);
            let Verdict::Send { len, .. } = a.from_tun(&mut buf, len) else {
                panic!("ingress")
            };
            let Verdict::Send { len, .. } = r.from_udp(&mut buf, len) else {
                panic!("relay")
            };
            copy[..len].copy_from_slice(&buf[..len]);
            assert!(matches!(b.from_udp(&mut buf, len), Verdict::Deliver { .. }));
            // Replayed, tampered and unknown-session frames are dropped without allocating.
            assert_eq!(
                b.from_udp(&mut copy, len),
                Verdict::Drop(DropReason::Replay)
            );
            buf[..len].copy_from_slice(&copy[..len]);
            buf[len - 1] ^= 1;
            buf[13] ^= 0x01; // a counter far ahead, so the replay check passes and the tag fails
            assert_eq!(b.from_udp(&mut buf, len), Verdict::Drop(DropReason::BadTag));
            buf[4] = 0x55;
            assert_eq!(
                b.from_udp(&mut buf, len),
                Verdict::Drop(DropReason::UnknownSession)
            );
        }
    };
    run(10); // warm-up: replay windows for each stream are created on first use
    ARMED.with(|a| a.set(true));
    run(2000);
    ARMED.with(|a| a.set(false));
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "allocations on the packet path"
    );

    // Offloads: fd00::1 -> fd00::3 TCP super-packet of 8000 bytes, MSS 1000.
    let mut sup = vec![0u8; 40 + 20 + 8000];
    sup[0] = 0x60;
    sup[4..6].copy_from_slice(&8020u16.to_be_bytes());
    sup[6] = 6;
    sup[8] = 0xfd;
    sup[23] = 1;
    sup[24] = 0xfd;
    sup[39] = 3;
    sup[52] = 0x50;
    sup[53] = 0x10;
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6,
        hdr_len: 60,
        gso_size: 1000,
        csum_start: 40,
        csum_offset: 16,
    };
    let mut work = sup.clone();
    let mut co = Coalescer::new();
    let mut offload = |n: usize| {
        for _ in 0..n {
            work.copy_from_slice(&sup);
            let Ok(Prepared::Gso(g)) = prepare(&h, &mut work) else {
                panic!("not gso")
            };
            for i in 0..g.segments() {
                let sl = g.write(&work, i, &mut buf[HEADROOM..]).unwrap();
                let Verdict::Send { len, .. } = a.from_tun(&mut buf, sl) else {
                    panic!("ingress")
                };
                let Verdict::Send { len, .. } = r.from_udp(&mut buf, len) else {
                    panic!("relay")
                };
                let Verdict::Deliver { len } = b.from_udp(&mut buf, len) else {
                    panic!("egress")
                };
                assert!(co.push(&buf[HEADROOM..HEADROOM + len]));
            }
            assert_eq!(co.segments(), 8);
            assert!(!co.finish().is_empty());
        }
    };
    offload(2);
    ARMED.with(|a| a.set(true));
    offload(200);
    ARMED.with(|a| a.set(false));
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "allocations on the offload path"
    );
}

/// A one-shard node on `udp` whose session 1 goes to `peer`: routes fd00::`peer_host`/128 into
/// label 100 and delivers label 100 from it (route keys as in the forwarding tests).
fn loop_shard(me: u8, peer: std::net::SocketAddr, tx: u8, rx: u8) -> Shard {
    let other = 3 - me;
    let y = format!(
        "node:\n  listen: \"127.0.0.1:1\"\nsessions:\n  - {{id: 1, peer_id: 1, peer: \"{peer}\", \
         tx_key: {}, rx_key: {}}}\nroute_keys:\n  - {{id: 1, key: {}}}\n  - {{id: 2, key: {}}}\n\
         rules:\n  - {{session: 1, label: 100, deliver: [fd00::{other}/128], key: {other}}}\n\
         routes:\n  - {{prefix: fd00::{other}/128, session: 1, label: 100, key: {me}}}\n",
        key_hex(tx),
        key_hex(rx),
        key_hex(201),
        key_hex(202),
    );
    let st = Static::parse(&y, Path::new("loop.yaml"), 1).unwrap();
    Shard::new(
        0,
        Arc::new(FibCell::new(st.fib)),
        Arc::new(NodeStats::new(1)),
    )
    .receiving_one_of(1)
}

/// What the test writes to A's "sky0": a 1000-byte UDP packet fd00::1 -> fd00::2, or (offloads)
/// an 8000-byte TCP super-packet of MSS 1000 with its vnet header.
fn loop_packet(offload: bool, tcp: bool, out: &mut Vec<u8>) {
    out.clear();
    if offload {
        let h = if tcp {
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV6,
                hdr_len: 60,
                gso_size: 1000,
                csum_start: 40,
                csum_offset: 16,
            }
        } else {
            VnetHdr {
                flags: 0,
                gso_type: GSO_NONE,
                hdr_len: 0,
                gso_size: 0,
                csum_start: 0,
                csum_offset: 0,
            }
        };
        out.extend_from_slice(&h.encode());
    }
    let start = out.len();
    let payload = if tcp { 20 + 8000 } else { 8 + 1000 };
    out.resize(start + 40 + payload, 0);
    let p = &mut out[start..];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = if tcp { 6 } else { 17 };
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    if tcp {
        p[52] = 0x50;
        p[53] = 0x10;
    } else {
        p[44..46].copy_from_slice(&((8 + 1000) as u16).to_be_bytes());
    }
}

/// Runs `backend` for two nodes A and B, carries `n` packets (super-packets with `tcp`) from
/// A's sky0 to B's after a warm-up, and returns the allocations on the loop threads meanwhile
/// and the payload bytes that arrived.
fn loop_allocations(backend: &str, offload: bool, tcp: bool, n: usize) -> (u64, usize) {
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ub = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        loop_shard(1, ub.local_addr().unwrap(), 1, 2),
        loop_shard(2, ua.local_addr().unwrap(), 2, 1),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut ends = Vec::new();
    let mut threads = Vec::new();
    for (shard, udp) in [(a, ua), (b, ub)] {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        theirs.set_nonblocking(true).unwrap();
        udp.set_nonblocking(true).unwrap();
        let io = ShardIo {
            shard,
            tun: theirs.into(),
            udp,
            stop: stop.clone(),
            offload,
            punt: None,
        };
        let backend = backend.to_string();
        threads.push(std::thread::spawn(move || {
            IN_LOOP.with(|c| c.set(true));
            if backend == "uring" {
                uring::run(io)
            } else {
                epoll::run(io)
            }
        }));
        ends.push(ours);
    }
    let (to_a, from_b) = (&ends[0], &ends[1]);
    let mut pkt = Vec::new();
    loop_packet(offload, tcp, &mut pkt);
    let mut got = vec![0u8; 70_000];
    let head = if offload { VNET_HDR_LEN } else { 0 } + if tcp { 60 } else { 48 };
    let want = if tcp { 8000 } else { 1000 };
    let mut carry = |count: usize| {
        let mut carried = 0;
        for _ in 0..count {
            to_a.send(&pkt).unwrap();
            // Everything of this one (a super-packet may come out in several pieces), or a
            // timeout (loopback may drop under load: then the next one).
            let mut bytes = 0;
            while bytes < want {
                let Ok(len) = from_b.recv(&mut got) else {
                    break;
                };
                bytes += len.saturating_sub(head);
            }
            carried += bytes;
        }
        carried
    };
    carry(20);
    LOOP_ALLOCS.store(0, Ordering::Relaxed);
    LOOP_ARMED.store(true, Ordering::Relaxed);
    let carried = carry(n);
    LOOP_ARMED.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap().unwrap();
    }
    (LOOP_ALLOCS.load(Ordering::Relaxed), carried)
}

/// Each backend's loop, TUN read to UDP send and UDP receive to TUN write, allocates nothing
/// per packet: plain packets on both backends, and with offloads TCP super-packets cut, sent
/// with GSO, received with GRO and merged again.
#[test]
fn backend_loops_allocate_nothing() {
    let n = 500;
    for backend in ["uring", "epoll"] {
        if backend == "uring" && uring::probe().is_err() {
            eprintln!("io_uring unavailable here: its loop is not measured");
            continue;
        }
        for (offload, tcp) in [(false, false), (true, false), (true, true)] {
            let (allocs, carried) = loop_allocations(backend, offload, tcp, n);
            let what = format!("{backend}, offload {offload}, tcp {tcp}");
            let want = n * if tcp { 8000 } else { 1000 };
            assert!(
                carried * 10 >= want * 9,
                "{what}: only {carried} of {want} payload bytes arrived"
            );
            assert_eq!(allocs, 0, "{what}: allocations in the loop");
        }
    }
}
