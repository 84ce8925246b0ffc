//! The per-packet path allocates nothing: ingress (seal), relay (open + re-seal), egress (open +
//! deliver), and the drop paths (replay, bad tag, unknown session), measured with a counting
//! global allocator armed on this thread only. Also the offload path: a TCP super-packet
//! segmented, each segment sealed, relayed, opened, and coalesced again.

use dataplane::fixtures::{three_hops, v6_packet};
use dataplane::offload::{Coalescer, F_NEEDS_CSUM, GSO_TCPV6, Prepared, VnetHdr, prepare};
use dataplane::shard::{BUF_SIZE, HEADROOM, Verdict};
use dataplane::stats::DropReason;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
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
