//! Counters. Every counter is an array with one cache-line-padded slot per shard: a shard only
//! ever writes its own slot (plain load + store, no locked instruction, no sharing), readers sum
//! the slots.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Frame shorter than a header plus tag, or an unknown frame type.
    Malformed,
    /// Authentication failed (wrong key, tampered).
    BadTag,
    /// Counter already seen or too old.
    Replay,
    /// No session with the frame's receiver index.
    UnknownSession,
    /// No rule for (session, label), or no route for a destination.
    NoRule,
    /// Inner source not allowed for the route's origin.
    BadSource,
    /// Larger than the buffers or the MTU.
    TooBig,
    /// The socket or TUN queue was full.
    QueueFull,
    /// Inner packet that is not IPv4/IPv6.
    NotIp,
    /// Sending failed for another reason (no route to the peer, ...).
    SendError,
    /// A frame whose counter names a sending shard that does not send to this receiving
    /// shard (or that the peer does not have): a replay to another port, or forged.
    WrongShard,
    /// The route layer did not open with the route's key: the payload or route tag was
    /// altered on the way (a relay cannot forge it), or the frame was moved to another route.
    RouteBadTag,
    /// The route counter was already seen or is too old: a replay by a relay or by anyone
    /// who captured a frame of the route.
    RouteReplay,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 13;
    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::UnknownSession,
        DropReason::NoRule,
        DropReason::BadSource,
        DropReason::TooBig,
        DropReason::QueueFull,
        DropReason::NotIp,
        DropReason::SendError,
        DropReason::WrongShard,
        DropReason::RouteBadTag,
        DropReason::RouteReplay,
    ];

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "drop_malformed",
            DropReason::BadTag => "drop_bad_tag",
            DropReason::Replay => "drop_replay",
            DropReason::UnknownSession => "drop_unknown_session",
            DropReason::NoRule => "drop_no_rule",
            DropReason::BadSource => "drop_bad_source",
            DropReason::TooBig => "drop_too_big",
            DropReason::QueueFull => "drop_queue_full",
            DropReason::NotIp => "drop_not_ip",
            DropReason::SendError => "drop_send_error",
            DropReason::WrongShard => "drop_wrong_shard",
            DropReason::RouteBadTag => "drop_route_bad_tag",
            DropReason::RouteReplay => "drop_route_replay",
        }
    }
}

#[repr(C, align(64))]
struct Slot<const N: usize>([AtomicU64; N]);

/// `N` counters per shard.
pub struct PerShard<const N: usize> {
    slots: Box<[Slot<N>]>,
}

impl<const N: usize> std::fmt::Debug for PerShard<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.sum(i))).finish()
    }
}

impl<const N: usize> PerShard<N> {
    /// Zeroed counters for `shards` shards.
    pub fn new(shards: usize) -> Self {
        PerShard {
            slots: (0..shards.max(1))
                .map(|_| Slot(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds `v` to counter `i` of `shard`. Only that shard's thread may call this.
    #[inline]
    pub fn add(&self, shard: usize, i: usize, v: u64) {
        if let Some(c) = self.slots.get(shard).and_then(|s| s.0.get(i)) {
            // Single writer per slot: load + store is enough and avoids a locked add.
            c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
        }
    }

    /// Counter `i` summed over shards.
    pub fn sum(&self, i: usize) -> u64 {
        self.slots
            .iter()
            .map(|s| s.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
            .sum()
    }

    /// Counter `i` of one shard.
    pub fn get(&self, shard: usize, i: usize) -> u64 {
        self.slots
            .get(shard)
            .and_then(|s| s.0.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.slots.len()
    }
}

/// Packets and bytes each way: index constants for [`Traffic`].
pub mod traffic {
    /// Packets received (from the network for sessions, from sky0 for routes).
    pub const RX_PKTS: usize = 0;
    /// Bytes received.
    pub const RX_BYTES: usize = 1;
    /// Packets sent.
    pub const TX_PKTS: usize = 2;
    /// Bytes sent.
    pub const TX_BYTES: usize = 3;
}

/// Per-session or per-route traffic counters.
pub type Traffic = PerShard<4>;

/// Node-wide counters: drops by reason, plus the device sides.
pub struct NodeStats {
    /// Drops, indexed by [`Drop`].
    pub drops: PerShard<{ DropReason::COUNT }>,
    /// sky0 side: packets read, bytes read, packets written, bytes written.
    pub tun: Traffic,
    /// UDP side: frames received, bytes, frames sent, bytes.
    pub udp: Traffic,
    /// Liveness probes sent (the fib thread's, [`crate::liveness`]).
    probes: AtomicU64,
    /// Watched sessions reported silent.
    sessions_down: AtomicU64,
    /// Liveness polls that came late (the fib thread stalled; not counted as silence).
    liveness_late: AtomicU64,
    /// Packets with no route not offered to the controlplane: over a shard's punt budget...
    punts_over_budget: AtomicU64,
    /// ... or with the punt queue full.
    punts_queue_full: AtomicU64,
}

impl NodeStats {
    /// Zeroed.
    pub fn new(shards: usize) -> Self {
        NodeStats {
            drops: PerShard::new(shards),
            tun: PerShard::new(shards),
            udp: PerShard::new(shards),
            probes: AtomicU64::new(0),
            sessions_down: AtomicU64::new(0),
            liveness_late: AtomicU64::new(0),
            punts_over_budget: AtomicU64::new(0),
            punts_queue_full: AtomicU64::new(0),
        }
    }

    /// Counts a packet the punt gate did not pass on (`queue_full`: the queue was full, else
    /// it was over the budget). Off the fast path: a locked add is fine.
    pub fn punt_refused(&self, queue_full: bool) {
        let c = if queue_full {
            &self.punts_queue_full
        } else {
            &self.punts_over_budget
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The liveness monitor's totals (its one writer is the fib thread).
    pub fn set_liveness(&self, probes: u64, sessions_down: u64, late: u64) {
        self.probes.store(probes, Ordering::Relaxed);
        self.sessions_down.store(sessions_down, Ordering::Relaxed);
        self.liveness_late.store(late, Ordering::Relaxed);
    }

    /// Counts one drop.
    #[inline]
    pub fn count_drop(&self, shard: usize, why: DropReason) {
        self.drops.add(shard, why as usize, 1);
    }

    /// Name/value pairs for a usage report: totals, drops, and per-shard packet counts.
    pub fn report(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("tun_rx_packets".to_string(), self.tun.sum(traffic::RX_PKTS)),
            ("tun_rx_bytes".to_string(), self.tun.sum(traffic::RX_BYTES)),
            ("tun_tx_packets".to_string(), self.tun.sum(traffic::TX_PKTS)),
            ("tun_tx_bytes".to_string(), self.tun.sum(traffic::TX_BYTES)),
            ("udp_rx_packets".to_string(), self.udp.sum(traffic::RX_PKTS)),
            ("udp_rx_bytes".to_string(), self.udp.sum(traffic::RX_BYTES)),
            ("udp_tx_packets".to_string(), self.udp.sum(traffic::TX_PKTS)),
            ("udp_tx_bytes".to_string(), self.udp.sum(traffic::TX_BYTES)),
            (
                "probes_sent".to_string(),
                self.probes.load(Ordering::Relaxed),
            ),
            (
                "sessions_down".to_string(),
                self.sessions_down.load(Ordering::Relaxed),
            ),
            (
                "liveness_late_polls".to_string(),
                self.liveness_late.load(Ordering::Relaxed),
            ),
            (
                "punts_over_budget".to_string(),
                self.punts_over_budget.load(Ordering::Relaxed),
            ),
            (
                "punts_queue_full".to_string(),
                self.punts_queue_full.load(Ordering::Relaxed),
            ),
        ];
        for d in DropReason::ALL {
            v.push((d.name().to_string(), self.drops.sum(d as usize)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_shard_sums() {
        let s = NodeStats::new(2);
        s.count_drop(0, DropReason::Replay);
        s.count_drop(1, DropReason::Replay);
        s.count_drop(1, DropReason::BadTag);
        s.count_drop(7, DropReason::BadTag); // out of range: ignored, no panic
        assert_eq!(s.drops.sum(DropReason::Replay as usize), 2);
        assert_eq!(s.drops.sum(DropReason::BadTag as usize), 1);
        let r = s.report();
        assert!(r.contains(&("drop_replay".to_string(), 2)));
    }
}
