//! The per-packet path allocates nothing: ingress (seal), relay (open + re-seal), egress (open +
//! deliver), and the drop paths (replay, bad tag, unknown session), measured with a counting
//! global allocator armed on this thread only.

use dataplane::fixtures::{three_hops, v6_packet};
use dataplane::shard::{BUF_SIZE, Verdict};
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
}
