//! Punting: packets from sky0 for destinations with no route go to the controlplane (which may
//! set a route up and inject them back, see [`crate::fibring`]).
//!
//! The shard only says so ([`crate::shard::Verdict::Punt`]); the I/O backend offers the packet to
//! its [`PuntGate`], which lets at most [`PUNTS_PER_SEC`] per second through to the bounded
//! [`Punter`] queue of the fib thread. The gate takes `now` from its caller: it reads no clock.

use crate::stats::NodeStats;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

/// Punted packets queued between the shards and the fib thread.
pub const PUNT_QUEUE: usize = 256;
/// Punts per second per shard: enough to start routes, too few to be a DoS on the controlplane.
pub const PUNTS_PER_SEC: u32 = 1000;

/// A shard's handle for punting packets: bounded, never blocks.
#[derive(Clone)]
pub struct Punter {
    tx: SyncSender<Vec<u8>>,
    bell: Arc<OwnedFd>,
}

impl Punter {
    /// Queues a copy of `pkt` and wakes the fib thread; false when the queue is full (the
    /// packet is only dropped).
    pub fn punt(&self, pkt: &[u8]) -> bool {
        if self.tx.try_send(pkt.to_vec()).is_err() {
            return false;
        }
        // EAGAIN means the counter is saturated: the fib thread has a wake-up pending anyway.
        let _ = rustix::io::write(&*self.bell, &1u64.to_ne_bytes());
        true
    }
}

/// The fib thread's end of the punt queue: packets and the eventfd that announces them.
pub struct Punts {
    pub(crate) rx: Receiver<Vec<u8>>,
    pub(crate) bell: Arc<OwnedFd>,
}

/// A punt queue: the sending half goes to the shards.
pub fn punt_queue() -> io::Result<(Punter, Punts)> {
    let (tx, rx) = sync_channel(PUNT_QUEUE);
    let bell = Arc::new(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?);
    Ok((
        Punter {
            tx,
            bell: bell.clone(),
        },
        Punts { rx, bell },
    ))
}

/// One shard's rate-limited way to the [`Punter`]: a token bucket of [`PUNTS_PER_SEC`] tokens,
/// refilled at [`PUNTS_PER_SEC`] per second (the rest are only dropped).
pub struct PuntGate {
    to: Punter,
    tokens: f64,
    at: Instant,
    stats: Arc<NodeStats>,
}

impl PuntGate {
    /// A gate to `to` with a full bucket at `now`; what it refuses is counted in `stats`.
    pub fn new(to: Punter, now: Instant, stats: Arc<NodeStats>) -> PuntGate {
        PuntGate {
            to,
            tokens: f64::from(PUNTS_PER_SEC),
            at: now,
            stats,
        }
    }

    /// Punts `pkt` if the bucket has a token at `now`; counts it as over the budget
    /// (`punts_over_budget`) or the queue as full (`punts_queue_full`) otherwise.
    pub fn offer(&mut self, now: Instant, pkt: &[u8]) {
        if !self.take(now) {
            self.stats.punt_refused(false);
        } else if !self.to.punt(pkt) {
            self.stats.punt_refused(true);
        }
    }

    /// Refills the bucket up to `now` and takes a token if there is one.
    #[inline]
    fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(PUNTS_PER_SEC);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn gate_lets_punts_per_sec_through_then_refills_with_time() {
        let (p, punts) = punt_queue().unwrap();
        let t0 = Instant::now();
        let stats = Arc::new(NodeStats::new(1));
        let mut g = PuntGate::new(p, t0, stats.clone());
        let passed = (0..PUNTS_PER_SEC + 10).filter(|_| g.take(t0)).count();
        assert_eq!(passed, PUNTS_PER_SEC as usize);
        // A millisecond later one more token is there, and only one.
        let t1 = t0 + Duration::from_millis(1);
        assert!(g.take(t1));
        assert!(!g.take(t1));
        // A long pause refills the bucket, never above its size.
        let t2 = t1 + Duration::from_secs(60);
        let passed = (0..PUNTS_PER_SEC + 10).filter(|_| g.take(t2)).count();
        assert_eq!(passed, PUNTS_PER_SEC as usize);
        // What passes the gate reaches the queue.
        let t3 = t2 + Duration::from_secs(1);
        g.offer(t3, &[0x60, 0, 0, 0]);
        assert_eq!(punts.rx.try_recv().unwrap(), vec![0x60, 0, 0, 0]);
        // Over the budget: counted, not queued.
        for _ in 0..PUNTS_PER_SEC + 5 {
            g.offer(t3, &[0x60, 0, 0, 0]);
        }
        let report = stats.report();
        let count = |name: &str| report.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        assert_eq!(count("punts_over_budget"), Some(6));
        // The queue holds PUNT_QUEUE: the rest of the budget found it full.
        assert_eq!(
            count("punts_queue_full"),
            Some(u64::from(PUNTS_PER_SEC) - 1 - PUNT_QUEUE as u64)
        );
    }
}
