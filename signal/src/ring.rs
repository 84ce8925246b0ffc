//! A single-producer single-consumer ring of variable-length records.
//!
//! The ring lives in memory shared with another process that we do not trust. The rules that keep
//! this side safe whatever the peer writes:
//!
//! - Each side keeps its own index (the producer's tail, the consumer's head) locally and only
//!   *publishes* it; it never reads its own index back from shared memory.
//! - The index read from the peer is validated before use: it must not move backwards, must be
//!   8-byte aligned and must stay within one capacity of ours. Anything else is [`Corrupt`].
//! - Every offset into the data area is masked with `capacity - 1`, every length is bounded by the
//!   capacity and by [`MAX_RECORD`], and record bytes are copied out before they are parsed, so a
//!   peer rewriting them concurrently can change what we read but never where we read.
//!
//! Layout of a record: a little-endian `u32` length, the payload, then padding to 8 bytes. Record
//! starts are 8-aligned and the capacity is a power of two >= 8, so a length word never wraps;
//! payloads may wrap and are copied in two pieces.
//!
//! Indices are monotonic `u64` byte positions (they do not wrap in practice: 2^64 bytes).
//! Publication is Release, observation Acquire. Wake-ups follow the usual flag + fence protocol:
//! the consumer sets `waiting`, issues a SeqCst fence and re-checks `tail` before sleeping; the
//! producer publishes `tail`, issues a SeqCst fence and only then reads `waiting`. Either the
//! consumer sees the new tail, or the producer sees the flag and rings the doorbell: no lost
//! wake-up, and a busy ring costs no syscalls.

use crate::sync::{AtomicU32, AtomicU64, Ordering, fence};

/// Largest payload one record may carry.
pub const MAX_RECORD: usize = 64 * 1024;
/// Bytes of the length word in front of each record.
const LEN_BYTES: usize = 4;

/// The peer broke the ring protocol: an index or length that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ring corrupt: {0}")]
pub struct Corrupt(pub &'static str);

/// Why a push did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No room now; the consumer has not caught up (back-pressure).
    #[error("ring full")]
    Full,
    /// The record can never fit.
    #[error("record of {0} bytes exceeds the ring's limit")]
    TooBig(usize),
    /// The consumer published an impossible head.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Pads to a cache line so producer and consumer indices never share one.
#[repr(C, align(64))]
pub struct CachePadded<T>(pub T);

/// The control block of one ring: head and tail on their own cache lines.
#[repr(C)]
pub struct RingCtl {
    /// Consumer position; written by the consumer only.
    pub head: CachePadded<AtomicU64>,
    /// Producer position; written by the producer only.
    pub tail: CachePadded<AtomicU64>,
    /// Non-zero while the consumer is (about to be) asleep on its doorbell.
    pub waiting: CachePadded<AtomicU32>,
}

impl RingCtl {
    /// A zeroed control block (heap-backed rings; shared memory starts zeroed).
    pub fn new() -> Self {
        RingCtl {
            head: CachePadded(AtomicU64::new(0)),
            tail: CachePadded(AtomicU64::new(0)),
            waiting: CachePadded(AtomicU32::new(0)),
        }
    }
}

impl Default for RingCtl {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a ring's control block and bytes live: shared memory in production, a heap model
/// under loom.
pub trait RingMem {
    /// The control block.
    fn ctl(&self) -> &RingCtl;
    /// Data area size in bytes: a power of two >= 8.
    fn capacity(&self) -> usize;
    /// Copies `src` to the data area at `off`; `off + src.len() <= capacity()`.
    fn write_at(&self, off: usize, src: &[u8]);
    /// Copies from the data area at `off` into `dst`; `off + dst.len() <= capacity()`.
    fn read_at(&self, off: usize, dst: &mut [u8]);
}

#[inline]
fn padded(len: usize) -> usize {
    (LEN_BYTES + len + 7) & !7
}

/// Copies `src` into the ring at monotonic position `pos`, wrapping as needed.
fn write_wrapped<M: RingMem>(mem: &M, pos: u64, src: &[u8]) {
    let cap = mem.capacity();
    let off = (pos as usize) & (cap - 1);
    let first = src.len().min(cap - off);
    mem.write_at(off, &src[..first]);
    if first < src.len() {
        mem.write_at(0, &src[first..]);
    }
}

fn read_wrapped<M: RingMem>(mem: &M, pos: u64, dst: &mut [u8]) {
    let cap = mem.capacity();
    let off = (pos as usize) & (cap - 1);
    let first = dst.len().min(cap - off);
    mem.read_at(off, &mut dst[..first]);
    if first < dst.len() {
        mem.read_at(0, &mut dst[first..]);
    }
}

/// The writing end of a ring.
pub struct Producer<M: RingMem> {
    mem: M,
    tail: u64,
    staged: u64,
    head_cache: u64,
    max_record: usize,
}

impl<M: RingMem> Producer<M> {
    /// Takes the producer role. The ring must be freshly zeroed or previously driven by a
    /// producer whose position is `tail`; the consumer must start at the same position.
    pub fn new(mem: M) -> Self {
        let max_record = MAX_RECORD.min(mem.capacity() - LEN_BYTES);
        Producer {
            mem,
            tail: 0,
            staged: 0,
            head_cache: 0,
            max_record,
        }
    }

    /// Largest payload this ring accepts.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// Bytes currently queued, as last observed.
    pub fn queued(&self) -> u64 {
        self.tail - self.head_cache
    }

    /// Appends one record and publishes it. Returns whether the consumer asked to be woken.
    pub fn push(&mut self, rec: &[u8]) -> Result<bool, PushError> {
        self.stage(rec)?;
        Ok(self.publish())
    }

    /// Writes one record after the staged ones without publishing it: the consumer sees
    /// nothing until [`Producer::publish`]. Batching many records under one publication saves
    /// a cache-line transfer and a fence per record.
    pub fn stage(&mut self, rec: &[u8]) -> Result<(), PushError> {
        if rec.len() > self.max_record {
            return Err(PushError::TooBig(rec.len()));
        }
        let need = padded(rec.len()) as u64;
        let cap = self.mem.capacity() as u64;
        if self.staged - self.head_cache + need > cap {
            self.refresh_head()?;
            if self.staged - self.head_cache + need > cap {
                return Err(PushError::Full);
            }
        }
        write_wrapped(&self.mem, self.staged, &(rec.len() as u32).to_le_bytes());
        write_wrapped(&self.mem, self.staged + LEN_BYTES as u64, rec);
        self.staged += need;
        Ok(())
    }

    /// Publishes every staged record. Returns whether the consumer asked to be woken.
    pub fn publish(&mut self) -> bool {
        if self.staged == self.tail {
            return false;
        }
        self.tail = self.staged;
        self.mem.ctl().tail.0.store(self.tail, Ordering::Release);
        // Order the tail store before reading the consumer's flag (pairs with the fence in
        // `Consumer::prepare_sleep`).
        fence(Ordering::SeqCst);
        self.mem.ctl().waiting.0.load(Ordering::Relaxed) != 0
    }

    fn refresh_head(&mut self) -> Result<(), Corrupt> {
        let head = self.mem.ctl().head.0.load(Ordering::Acquire);
        if head < self.head_cache || head > self.tail || !head.is_multiple_of(8) {
            return Err(Corrupt("consumer head out of range"));
        }
        self.head_cache = head;
        Ok(())
    }

    /// The underlying memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }
}

/// The reading end of a ring.
pub struct Consumer<M: RingMem> {
    mem: M,
    head: u64,
    head_published: u64,
    tail_cache: u64,
    max_record: usize,
}

impl<M: RingMem> Consumer<M> {
    /// Takes the consumer role at position 0.
    pub fn new(mem: M) -> Self {
        let max_record = MAX_RECORD.min(mem.capacity() - LEN_BYTES);
        Consumer {
            mem,
            head: 0,
            head_published: 0,
            tail_cache: 0,
            max_record,
        }
    }

    fn refresh_tail(&mut self) -> Result<(), Corrupt> {
        let tail = self.mem.ctl().tail.0.load(Ordering::Acquire);
        if tail < self.tail_cache
            || !tail.is_multiple_of(8)
            || tail - self.head > self.mem.capacity() as u64
        {
            return Err(Corrupt("producer tail out of range"));
        }
        self.tail_cache = tail;
        Ok(())
    }

    /// Whether a record is ready (refreshes the producer's tail when the cache says empty).
    pub fn has_data(&mut self) -> Result<bool, Corrupt> {
        if self.head == self.tail_cache {
            self.refresh_tail()?;
        }
        Ok(self.head != self.tail_cache)
    }

    /// Copies the next record into `out` (cleared first). `Ok(false)` when the ring is empty.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> Result<bool, Corrupt> {
        if !self.has_data()? {
            return Ok(false);
        }
        let mut len = [0u8; LEN_BYTES];
        read_wrapped(&self.mem, self.head, &mut len);
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max_record {
            return Err(Corrupt("record length over the limit"));
        }
        let need = padded(len) as u64;
        if need > self.tail_cache - self.head {
            return Err(Corrupt("record runs past the published tail"));
        }
        out.clear();
        out.resize(len, 0);
        read_wrapped(&self.mem, self.head + LEN_BYTES as u64, out);
        self.head += need;
        // Hand space back when caught up or every quarter ring, not per record: the producer
        // only looks at head when it runs out of room, so this saves a cache-line transfer
        // per record without ever stalling it.
        if self.head == self.tail_cache
            || self.head - self.head_published >= self.mem.capacity() as u64 / 4
        {
            self.mem.ctl().head.0.store(self.head, Ordering::Release);
            self.head_published = self.head;
        }
        Ok(true)
    }

    /// Bytes consumed but not yet handed back to the producer (they are handed back when the
    /// consumer catches up, or every quarter ring).
    pub fn unreleased(&self) -> u64 {
        self.head - self.head_published
    }

    /// First half of going to sleep: raise the flag and re-check. Returns `true` when the ring
    /// is still empty and the caller may block on its doorbell; `false` when data arrived (the
    /// flag is lowered again).
    pub fn prepare_sleep(&mut self) -> Result<bool, Corrupt> {
        self.mem.ctl().waiting.0.store(1, Ordering::Relaxed);
        // Order the flag store before re-reading tail (pairs with the fence in `push`).
        fence(Ordering::SeqCst);
        if self.has_data()? {
            self.end_sleep();
            return Ok(false);
        }
        Ok(true)
    }

    /// Lowers the sleep flag after waking.
    pub fn end_sleep(&self) {
        self.mem.ctl().waiting.0.store(0, Ordering::Relaxed);
    }

    /// The underlying memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod heap {
    //! A heap-backed ring memory for unit and property tests.
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    pub struct HeapRing {
        ctl: RingCtl,
        data: Box<[UnsafeCell<u8>]>,
    }
    // SAFETY: the ring protocol gives each byte range a single writer at a time; tests that
    // share a HeapRing across threads go through Producer/Consumer only.
    unsafe impl Sync for HeapRing {}

    impl HeapRing {
        pub fn new(cap: usize) -> Arc<HeapRing> {
            Arc::new(HeapRing {
                ctl: RingCtl::new(),
                data: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
            })
        }
    }

    impl RingMem for Arc<HeapRing> {
        fn ctl(&self) -> &RingCtl {
            &self.ctl
        }
        fn capacity(&self) -> usize {
            self.data.len()
        }
        fn write_at(&self, off: usize, src: &[u8]) {
            for (i, b) in src.iter().enumerate() {
                // SAFETY: in bounds (the caller keeps off + len <= capacity, indexing checks it
                // again); the ring protocol gives this range a single writer.
                unsafe { *self.data[off + i].get() = *b };
            }
        }
        fn read_at(&self, off: usize, dst: &mut [u8]) {
            for (i, b) in dst.iter_mut().enumerate() {
                // SAFETY: as in write_at.
                *b = unsafe { *self.data[off + i].get() };
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::heap::HeapRing;
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn push_pop_and_wrap() {
        let r = HeapRing::new(64);
        let mut p = Producer::new(r.clone());
        let mut c = Consumer::new(r);
        let mut out = Vec::new();
        for round in 0..100u32 {
            let rec: Vec<u8> = (0..(round % 23) as u8).collect();
            p.push(&rec).unwrap();
            assert!(c.pop(&mut out).unwrap());
            assert_eq!(out, rec);
        }
        assert!(!c.pop(&mut out).unwrap());
    }

    #[test]
    fn full_ring_pushes_back_and_recovers() {
        let r = HeapRing::new(64);
        let mut p = Producer::new(r.clone());
        let mut c = Consumer::new(r);
        // 16 bytes per record of 9..=12 bytes: four fit.
        for i in 0..4u8 {
            p.push(&[i; 10]).unwrap();
        }
        assert_eq!(p.push(&[9; 10]), Err(PushError::Full));
        let mut out = Vec::new();
        assert!(c.pop(&mut out).unwrap());
        assert_eq!(out, [0; 10]);
        p.push(&[9; 10]).unwrap();
        assert_eq!(p.push(&[0; 61]), Err(PushError::TooBig(61)));
    }

    #[test]
    fn staged_records_appear_only_when_published() {
        let r = HeapRing::new(64);
        let mut p = Producer::new(r.clone());
        let mut c = Consumer::new(r);
        let mut out = Vec::new();
        p.stage(b"one").unwrap();
        p.stage(b"two").unwrap();
        assert!(!c.pop(&mut out).unwrap());
        assert!(
            c.prepare_sleep().unwrap(),
            "nothing published yet: the consumer may sleep"
        );
        assert!(
            p.publish(),
            "consumer raised its flag: publish must ask for a wake-up"
        );
        c.end_sleep();
        assert!(c.pop(&mut out).unwrap());
        assert_eq!(out, b"one");
        assert!(c.pop(&mut out).unwrap());
        assert_eq!(out, b"two");
        assert!(!p.publish(), "nothing staged: nothing to publish");
    }

    #[test]
    fn garbage_indices_are_corrupt_not_crashes() {
        let r = HeapRing::new(64);
        let mut p = Producer::new(r.clone());
        let mut c = Consumer::new(r.clone());
        p.push(b"hello").unwrap();
        // Peer claims a tail far beyond one capacity.
        r.ctl().tail.0.store(1 << 40, Ordering::Release);
        let mut out = Vec::new();
        assert!(c.pop(&mut out).is_err());
        // Unaligned tail.
        let mut c = Consumer::new(r.clone());
        r.ctl().tail.0.store(13, Ordering::Release);
        assert!(c.pop(&mut out).is_err());
        // Producer sees a head beyond its tail.
        r.ctl().head.0.store(4096, Ordering::Release);
        for _ in 0..10 {
            match p.push(&[0; 40]) {
                Ok(_) => continue,
                Err(e) => {
                    assert!(matches!(e, PushError::Corrupt(_)));
                    return;
                }
            }
        }
        panic!("corrupt head never detected");
    }

    #[test]
    fn garbage_length_is_corrupt() {
        let r = HeapRing::new(64);
        let mut c = Consumer::new(r.clone());
        r.write_at(0, &u32::MAX.to_le_bytes());
        r.ctl().tail.0.store(8, Ordering::Release);
        let mut out = Vec::new();
        assert_eq!(
            c.pop(&mut out),
            Err(Corrupt("record length over the limit"))
        );
        let mut c = Consumer::new(r.clone());
        r.write_at(0, &40u32.to_le_bytes());
        assert_eq!(
            c.pop(&mut out),
            Err(Corrupt("record runs past the published tail"))
        );
    }

    proptest! {
        /// Any interleaving of pushes and pops of random records round-trips in order, across
        /// wrap-around, and a push is refused exactly when the ring lacks room.
        #[test]
        fn random_sequences_round_trip(
            cap_log in 4u32..10,
            ops in proptest::collection::vec((any::<bool>(), 0usize..300, any::<u8>()), 1..400),
        ) {
            let cap = 1usize << cap_log;
            let r = HeapRing::new(cap);
            let mut p = Producer::new(r.clone());
            let mut c = Consumer::new(r);
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let mut used = 0usize;
            let mut out = Vec::new();
            for (is_push, len, fill) in ops {
                if is_push {
                    let rec = vec![fill; len];
                    let need = padded(len);
                    match p.push(&rec) {
                        Ok(_) => { used += need; model.push_back(rec); }
                        // Space the consumer took but has not handed back yet still counts.
                        Err(PushError::Full) => prop_assert!(used + c.unreleased() as usize + need > cap),
                        Err(PushError::TooBig(_)) => prop_assert!(len > cap - 4),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                    prop_assert!(used <= cap);
                } else {
                    let got = c.pop(&mut out).unwrap();
                    match model.pop_front() {
                        Some(want) => { prop_assert!(got); prop_assert_eq!(&out, &want); used -= padded(want.len()); }
                        None => prop_assert!(!got),
                    }
                    // Space is handed back at the latest every quarter ring, and at once when
                    // the consumer has caught up with what it saw published.
                    prop_assert!(c.unreleased() < (cap / 4 + 8 + 300) as u64);
                    if model.is_empty() { prop_assert_eq!(c.unreleased(), 0); }
                }
            }
        }

        /// Whatever bytes a hostile peer writes over the control block and data area, the
        /// consumer returns records or Corrupt, never panics or reads out of bounds.
        #[test]
        fn hostile_memory_never_panics(
            writes in proptest::collection::vec((0usize..64, any::<u32>()), 0..32),
            tail in any::<u64>(), head in any::<u64>(),
        ) {
            let r = HeapRing::new(64);
            for (off, v) in writes { r.write_at(off & !3, &v.to_le_bytes()); }
            r.ctl().tail.0.store(tail, Ordering::Release);
            r.ctl().head.0.store(head, Ordering::Release);
            let mut c = Consumer::new(r.clone());
            let mut p = Producer::new(r);
            let mut out = Vec::new();
            for _ in 0..20 {
                match c.pop(&mut out) { Ok(true) => prop_assert!(out.len() <= 60), _ => break }
            }
            for _ in 0..20 { if p.push(&[1; 7]).is_err() { break } }
        }
    }
}
