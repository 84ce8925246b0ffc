//! Per-neighbour reliable flooding state: a send queue keyed by advert
//! origin (a newer advert from the same origin supersedes a queued older
//! one, so the queue is bounded by the LSDB size), a retransmit list
//! waiting for `LsaAck`s, and a token bucket limiting the flood rate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::types::NodeId;

/// Integer token bucket: `rate_per_s` tokens per second, at most `burst`.
/// Tokens are kept in thousandths so that `elapsed_ms * rate` is exact.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_s: u64,
    burst_milli: u64,
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket. `rate_per_s == 0` means unlimited.
    pub fn new(rate_per_s: u32, burst: u32, now_ms: u64) -> Self {
        let burst_milli = u64::from(burst.max(1)) * 1000;
        Self {
            rate_per_s: u64::from(rate_per_s),
            burst_milli,
            milli: burst_milli,
            last_ms: now_ms,
        }
    }
    fn refill(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = self
            .milli
            .saturating_add(dt.saturating_mul(self.rate_per_s))
            .min(self.burst_milli);
    }
    /// Take one token if available.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        if self.rate_per_s == 0 {
            return true;
        }
        self.refill(now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
    /// Would `try_take(now_ms)` succeed?
    pub fn has_token(&self, now_ms: u64) -> bool {
        if self.rate_per_s == 0 {
            return true;
        }
        let dt = now_ms.saturating_sub(self.last_ms);
        self.milli
            .saturating_add(dt.saturating_mul(self.rate_per_s))
            >= 1000
    }
    /// Earliest time at which a token is available.
    pub fn next_token_ms(&self) -> u64 {
        if self.rate_per_s == 0 || self.milli >= 1000 {
            return self.last_ms;
        }
        let need = 1000 - self.milli;
        self.last_ms + need.div_ceil(self.rate_per_s)
    }
}

/// Flooding state towards one neighbour.
#[derive(Clone, Debug)]
pub struct FloodState {
    queue: VecDeque<NodeId>,
    queued: BTreeSet<NodeId>,
    /// origin -> (seq sent, retransmit due)
    unacked: BTreeMap<NodeId, (u64, u64)>,
    due: BTreeSet<(u64, NodeId)>,
    pub bucket: TokenBucket,
}

impl FloodState {
    pub fn new(rate_per_s: u32, burst: u32, now_ms: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            queued: BTreeSet::new(),
            unacked: BTreeMap::new(),
            due: BTreeSet::new(),
            bucket: TokenBucket::new(rate_per_s, burst, now_ms),
        }
    }

    /// Queue `origin`'s current advert for sending. Returns false if it was
    /// already queued (the queued entry will send the newest version).
    pub fn enqueue(&mut self, origin: NodeId) -> bool {
        self.drop_unacked(&origin);
        if self.queued.insert(origin) {
            self.queue.push_back(origin);
            true
        } else {
            false
        }
    }

    /// Pop the next origin to send. Entries cancelled by an ack are
    /// removed from `queued` only (O(log n)); their stale slots in the
    /// deque are skipped here.
    pub fn pop(&mut self) -> Option<NodeId> {
        while let Some(o) = self.queue.pop_front() {
            if self.queued.remove(&o) {
                return Some(o);
            }
        }
        None
    }

    pub fn queue_len(&self) -> usize {
        self.queued.len()
    }
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Record that `seq` of `origin` was sent; retransmit at `due_ms`.
    pub fn sent(&mut self, origin: NodeId, seq: u64, due_ms: u64) {
        self.drop_unacked(&origin);
        self.unacked.insert(origin, (seq, due_ms));
        self.due.insert((due_ms, origin));
    }

    fn drop_unacked(&mut self, origin: &NodeId) {
        if let Some((_, d)) = self.unacked.remove(origin) {
            self.due.remove(&(d, *origin));
        }
    }

    /// The neighbour has `seq` of `origin` (explicit ack, or it sent us that
    /// advert or a newer one): stop retransmitting and drop a queued copy
    /// unless it is newer than `seq` (`current_seq` is the version we hold).
    pub fn acked(&mut self, origin: &NodeId, seq: u64, current_seq: Option<u64>) {
        if let Some(&(s, _)) = self.unacked.get(origin)
            && s <= seq
        {
            self.drop_unacked(origin);
        }
        if current_seq.is_none_or(|c| c <= seq) {
            self.queued.remove(origin);
        }
    }

    /// Move every retransmission due at `now_ms` back into the queue;
    /// returns how many.
    pub fn requeue_due(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while let Some(&(t, origin)) = self.due.first() {
            if t > now_ms {
                break;
            }
            self.due.remove(&(t, origin));
            self.unacked.remove(&origin);
            if self.queued.insert(origin) {
                self.queue.push_back(origin);
            }
            n += 1;
        }
        n
    }

    /// Next time this neighbour needs service.
    pub fn next_due(&self) -> Option<u64> {
        let r = self.due.first().map(|(t, _)| *t);
        let q = if self.queued.is_empty() {
            None
        } else {
            Some(self.bucket.next_token_ms())
        };
        match (r, q) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rate() {
        let mut b = TokenBucket::new(10, 2, 0);
        assert!(b.try_take(0));
        assert!(b.try_take(0));
        assert!(!b.try_take(0));
        assert_eq!(b.next_token_ms(), 100);
        assert!(!b.try_take(99));
        assert!(b.try_take(100));
        // long idle refills to burst only
        assert!(b.try_take(10_000));
        assert!(b.try_take(10_000));
        assert!(!b.try_take(10_000));
    }

    #[test]
    fn queue_dedup_ack_retransmit() {
        let mut f = FloodState::new(0, 1, 0);
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        assert!(f.enqueue(a));
        assert!(!f.enqueue(a));
        assert!(f.enqueue(b));
        assert_eq!(f.pop(), Some(a));
        f.sent(a, 3, 500);
        assert_eq!(f.next_due(), Some(0)); // b still queued
        assert_eq!(f.pop(), Some(b));
        f.sent(b, 1, 600);
        assert_eq!(f.next_due(), Some(500));
        f.acked(&a, 3, Some(3));
        assert_eq!(f.next_due(), Some(600));
        assert_eq!(f.requeue_due(600), 1);
        assert_eq!(f.pop(), Some(b));
        // an ack for an older seq does not clear a newer pending one
        f.sent(b, 2, 900);
        f.acked(&b, 1, Some(2));
        assert_eq!(f.unacked_len(), 1);
    }
}
