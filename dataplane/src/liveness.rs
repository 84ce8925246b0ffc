//! Fast failure detection of link sessions, sans I/O (BFD-like, asynchronous mode).
//!
//! Each side of a session with a [`Liveness`] setting watches its own counters:
//!
//! - Every session gets a probe every `interval`: a hop-authenticated frame with the reserved
//!   label [`crate::wire::LABEL_PROBE`] and no payload, sent from the fib thread's port to the
//!   peer's (its own socket and thread, so probes never queue behind data in a busy shard).
//!   Data also counts as heard, but does not replace the probes: on a loaded router a frame can
//!   wait tens of ms in a shard's batch, so data is a late signal; a probe costs 60 bytes.
//! - A session the peer was heard on (an authenticated frame, probe or data) is down when
//!   nothing authentic arrived for `interval * multiplier`: reported once as
//!   [`Event::Down`]; heard again, it is up again.
//! - A session never heard since it was added is not reported: the peer may still be
//!   installing its half (the controlplane's slower keepalive covers that case).
//! - A silence is only believed at once when the node heard other frames meanwhile and no
//!   received frame waits unread in a shard's socket (its receiving shards ran and kept up, so
//!   this peer really is quiet). Otherwise the node itself may have been descheduled or be
//!   behind (a loaded 2-core router): the session is down only after twice its detection time,
//!   so losing every link is still noticed.
//! - Time the monitor itself was not looking does not count as silence: a poll later than the
//!   monitor asked for (the caller descheduled, or busy) moves every session's "last heard"
//!   on by the delay. A stall of the whole machine then costs no false link-down.
//!
//! The caller (the fib thread) reads the counters, sends the probes and reports the events;
//! this module reads no clock and sends nothing.

use crate::fib::SessionId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Shortest probe interval a session may ask for: below it a 2-core router's scheduling
/// jitter (a few ms under load) alone would look like loss.
pub const MIN_INTERVAL_MS: u16 = 2;
/// Longest probe interval (beyond it the controlplane's keepalive is faster anyway).
pub const MAX_INTERVAL_MS: u16 = 10_000;
/// Fewest silent intervals before a session is down: one lost probe must never be enough.
pub const MIN_MULTIPLIER: u8 = 2;
/// Most silent intervals before a session is down.
pub const MAX_MULTIPLIER: u8 = 50;

/// A poll this much later than asked for is a stall of the monitor: the delay is not counted as
/// silence (timer slack and wakeup latency on an idle machine stay well below it).
pub const OVERSLEEP_TOLERANCE: Duration = Duration::from_millis(2);

/// How a session's liveness is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Liveness {
    /// Probe interval in ms ([`MIN_INTERVAL_MS`]..=[`MAX_INTERVAL_MS`]).
    pub interval_ms: u16,
    /// Silent intervals after which the session is down
    /// ([`MIN_MULTIPLIER`]..=[`MAX_MULTIPLIER`]).
    pub multiplier: u8,
}

impl Liveness {
    /// The setting if both values are within bounds.
    pub fn new(interval_ms: u16, multiplier: u8) -> Option<Liveness> {
        ((MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms)
            && (MIN_MULTIPLIER..=MAX_MULTIPLIER).contains(&multiplier))
        .then_some(Liveness {
            interval_ms,
            multiplier,
        })
    }

    /// Probe interval.
    pub fn interval(self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }

    /// Silence after which a heard session is down.
    pub fn detect(self) -> Duration {
        self.interval() * u32::from(self.multiplier)
    }
}

/// What the caller does for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Send a probe on the session.
    Probe(SessionId),
    /// The session went silent: nothing authentic from the peer for `silent`.
    Down {
        /// The session.
        session: SessionId,
        /// How long nothing was heard.
        silent: Duration,
    },
}

/// One session's counters as the caller read them.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The session.
    pub session: SessionId,
    /// Its setting (`None`: not watched).
    pub liveness: Option<Liveness>,
    /// Authenticated frames received so far.
    pub rx_pkts: u64,
    /// Frames sent so far (not used for decisions; kept for the caller's reports).
    pub tx_pkts: u64,
}

/// What the caller knows of the node as a whole at a poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Node {
    /// Authenticated frames received so far on all sessions (garbage does not count).
    pub rx_pkts: u64,
    /// A received frame is waiting unread in a shard's socket now.
    pub backlog: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not heard since it was added.
    Unheard,
    Up,
    /// Reported down; heard again it is up.
    Down,
}

#[derive(Debug)]
struct Peer {
    cfg: Liveness,
    rx: u64,
    tx: u64,
    heard: Instant,
    /// The node's frame count when this session was last heard.
    node_rx: u64,
    sent: Instant,
    state: State,
    seen: u64,
}

/// Liveness of every watched session.
#[derive(Debug, Default)]
pub struct Monitor {
    peers: HashMap<SessionId, Peer>,
    turn: u64,
    /// When the last poll asked to be polled again ([`Monitor::next_due`]).
    expected: Option<Instant>,
    /// When the last poll was.
    polled: Option<Instant>,
    /// Probes asked for so far.
    pub probes: u64,
    /// Downs reported so far.
    pub downs: u64,
    /// Polls later than asked for by more than [`OVERSLEEP_TOLERANCE`] (their delay did not
    /// count as silence).
    pub late_polls: u64,
}

impl Monitor {
    /// An empty monitor.
    pub fn new() -> Monitor {
        Monitor::default()
    }

    /// Sessions watched now.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether none is watched.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Looks at every session's counters at `now` (the whole table: sessions missing from
    /// `samples` are forgotten; `node` is the node as a whole) and pushes what to do to
    /// `out`.
    pub fn poll(
        &mut self,
        now: Instant,
        node: Node,
        samples: impl IntoIterator<Item = Sample>,
        out: &mut Vec<Event>,
    ) {
        self.turn = self.turn.wrapping_add(1);
        let turn = self.turn;
        if let Some(late) = self
            .expected
            .map(|t| now.saturating_duration_since(t))
            .filter(|late| *late > OVERSLEEP_TOLERANCE)
        {
            self.late_polls += 1;
            for p in self.peers.values_mut() {
                p.heard = (p.heard + late).min(now);
            }
        }
        let node_rx = node.rx_pkts;
        for s in samples {
            let Some(cfg) = s.liveness else {
                continue;
            };
            let p = self.peers.entry(s.session).or_insert(Peer {
                cfg,
                rx: s.rx_pkts,
                tx: s.tx_pkts,
                heard: now,
                node_rx,
                // A new session is probed at once: the peer hears it as soon as it is ready.
                sent: now.checked_sub(cfg.interval()).unwrap_or(now),
                state: State::Unheard,
                seen: turn,
            });
            p.seen = turn;
            p.cfg = cfg;
            if s.rx_pkts != p.rx {
                p.rx = s.rx_pkts;
                p.heard = now;
                p.node_rx = node_rx;
                p.state = State::Up;
            }
            p.tx = s.tx_pkts;
            if now.saturating_duration_since(p.sent) >= cfg.interval() {
                p.sent = now;
                self.probes += 1;
                out.push(Event::Probe(s.session));
            }
            let silent = now.saturating_duration_since(p.heard);
            let believed = node_rx != p.node_rx && !node.backlog;
            let detect = if believed {
                cfg.detect()
            } else {
                2 * cfg.detect()
            };
            if p.state == State::Up && silent >= detect {
                p.state = State::Down;
                self.downs += 1;
                out.push(Event::Down {
                    session: s.session,
                    silent,
                });
            }
        }
        self.peers.retain(|_, p| p.seen == turn);
        self.polled = Some(now);
        self.expected = self.next_due().map(|t| t.max(now));
    }

    /// When [`Monitor::poll`] next has something to do (a probe or a detection), if any
    /// session is watched.
    pub fn next_due(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| {
                let probe = p.sent + p.cfg.interval();
                // Due at the first detection time; once that passed without a down (the
                // silence was in doubt, see `poll`), at the second.
                let down = (p.state == State::Up).then(|| {
                    let first = p.heard + p.cfg.detect();
                    if self.polled.is_some_and(|t| t >= first) {
                        p.heard + 2 * p.cfg.detect()
                    } else {
                        first
                    }
                });
                std::iter::once(probe).chain(down)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Liveness = Liveness {
        interval_ms: 10,
        multiplier: 3,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(rx: u64, tx: u64) -> Sample {
        Sample {
            session: 7,
            liveness: Some(L),
            rx_pkts: rx,
            tx_pkts: tx,
        }
    }

    /// Polls with the node's frame count always moving (other peers heard).
    fn poll(m: &mut Monitor, now: Instant, s: Sample) -> Vec<Event> {
        let mut out = Vec::new();
        let node = Node {
            rx_pkts: now.duration_since(*T0.get_or_init(Instant::now)).as_nanos() as u64,
            ..Node::default()
        };
        m.poll(now, node, [s], &mut out);
        out
    }

    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    #[test]
    fn settings_out_of_bounds_are_refused() {
        assert!(Liveness::new(10, 3).is_some());
        assert!(Liveness::new(MIN_INTERVAL_MS - 1, 3).is_none());
        assert!(Liveness::new(MAX_INTERVAL_MS + 1, 3).is_none());
        assert!(Liveness::new(10, MIN_MULTIPLIER - 1).is_none());
        assert!(Liveness::new(10, MAX_MULTIPLIER + 1).is_none());
    }

    #[test]
    fn every_session_is_probed_every_interval_busy_or_not() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        // New: probed at once.
        assert_eq!(poll(&mut m, t0, sample(0, 0)), vec![Event::Probe(7)]);
        // Nothing more until an interval passed.
        assert_eq!(poll(&mut m, t0 + ms(5), sample(0, 1)), vec![]);
        assert_eq!(
            poll(&mut m, t0 + ms(10), sample(0, 1)),
            vec![Event::Probe(7)]
        );
        // Data both ways every 5 ms: still one probe per interval (data may queue behind data
        // in a busy shard; probes do not), and never a down.
        let mut probes = 0;
        for i in 1..=20 {
            let ev = poll(&mut m, t0 + ms(10 + 5 * i), sample(i, 3 * i));
            assert!(!ev.iter().any(|e| matches!(e, Event::Down { .. })));
            probes += ev.len();
        }
        assert_eq!(probes, 10);
    }

    #[test]
    fn a_heard_session_is_down_after_multiplier_silent_intervals_once_then_up_again() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let _ = poll(&mut m, t0, sample(0, 0));
        let _ = poll(&mut m, t0 + ms(1), sample(1, 1)); // heard at 1 ms
        let downs = |ev: &[Event]| {
            ev.iter()
                .filter(|e| matches!(e, Event::Down { .. }))
                .count()
        };
        // Silent: probes go on, no down before 3 intervals (polled on time: at 10, 20, 30).
        let mut tx = 1;
        for t in [5, 10, 20, 30] {
            let ev = poll(&mut m, t0 + ms(t), sample(1, tx));
            tx += ev.len() as u64;
            assert_eq!(downs(&ev), 0, "at {t} ms");
        }
        let ev = poll(&mut m, t0 + ms(31), sample(1, tx));
        assert!(ev.contains(&Event::Down {
            session: 7,
            silent: ms(30)
        }));
        // Reported once.
        let ev = poll(&mut m, t0 + ms(40), sample(1, tx + 1));
        assert_eq!(downs(&ev), 0);
        assert_eq!(m.downs, 1);
        // Heard again: up, and down again only after a new silence of 30 ms (polled when due).
        let _ = poll(&mut m, t0 + ms(41), sample(2, tx + 1));
        let mut t = 41;
        let mut down_at = None;
        while down_at.is_none() && t < 200 {
            t = m.next_due().map_or(t + 1, |d| (d - t0).as_millis() as u64);
            if downs(&poll(&mut m, t0 + ms(t), sample(2, tx))) == 1 {
                down_at = Some(t);
            }
        }
        assert_eq!(down_at, Some(71));
    }

    fn rx(n: u64) -> Node {
        Node {
            rx_pkts: n,
            ..Node::default()
        }
    }

    /// Polls every ms from `from` to `to` (never late) with the peer silent and `node` as the
    /// node; the first ms a down is reported.
    fn first_down(m: &mut Monitor, t0: Instant, from: u64, to: u64, node: Node) -> Option<u64> {
        (from..to).find(|t| {
            let mut out = Vec::new();
            m.poll(t0 + ms(*t), node, [sample(1, 1)], &mut out);
            out.iter().any(|e| matches!(e, Event::Down { .. }))
        })
    }

    #[test]
    fn when_nothing_at_all_was_heard_a_silence_counts_only_after_twice_the_detection_time() {
        let t0 = Instant::now();
        let heard = |m: &mut Monitor| {
            let mut out = Vec::new();
            m.poll(t0, rx(100), [sample(0, 0)], &mut out);
            m.poll(t0 + ms(1), rx(101), [sample(1, 1)], &mut out);
        };
        // The node's frame count stands still (maybe we were descheduled): down at twice the
        // detection time, so losing every link is still noticed.
        let mut m = Monitor::new();
        heard(&mut m);
        assert_eq!(first_down(&mut m, t0, 2, 200, rx(101)), Some(61));
        // Other frames arrived: the silence of this one is believed at 30 ms.
        let mut m = Monitor::new();
        heard(&mut m);
        assert_eq!(first_down(&mut m, t0, 2, 200, rx(150)), Some(31));
        // ... unless frames wait unread in a socket (the shards are behind): twice the time.
        let mut m = Monitor::new();
        heard(&mut m);
        let behind = Node {
            rx_pkts: 150,
            backlog: true,
        };
        assert_eq!(first_down(&mut m, t0, 2, 200, behind), Some(61));
    }

    #[test]
    fn time_the_monitor_was_not_polled_is_not_silence() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let _ = poll(&mut m, t0, sample(0, 0));
        let _ = poll(&mut m, t0 + ms(1), sample(1, 1)); // heard; next due at 10 ms
        // Polled at 50 ms, 40 ms late (the machine stalled): nothing from the peer either, but
        // the 40 ms do not count: heard counts as 41 ms, 9 ms of silence, no down.
        let ev = poll(&mut m, t0 + ms(50), sample(1, 2));
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Down { .. })),
            "{ev:?}"
        );
        assert_eq!(m.late_polls, 1);
        // Polled on time from then on: the silence is found 30 ms after that, at 71 ms.
        let mut t = 50;
        let mut down_at = None;
        while down_at.is_none() && t < 200 {
            t = m.next_due().map_or(t + 1, |d| (d - t0).as_millis() as u64);
            let ev = poll(&mut m, t0 + ms(t), sample(1, 3));
            if ev.iter().any(|e| matches!(e, Event::Down { .. })) {
                down_at = Some(t);
            }
        }
        assert_eq!(down_at, Some(71));
    }

    #[test]
    fn a_session_never_heard_is_never_reported() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        for t in 0..100 {
            let ev = poll(&mut m, t0 + ms(10 * t), sample(0, t));
            assert!(!ev.iter().any(|e| matches!(e, Event::Down { .. })));
        }
    }

    #[test]
    fn unwatched_and_removed_sessions_are_forgotten() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let _ = poll(&mut m, t0, sample(1, 1));
        assert_eq!(m.len(), 1);
        let mut out = Vec::new();
        m.poll(
            t0 + ms(1),
            Node::default(),
            [Sample {
                liveness: None,
                ..sample(1, 1)
            }],
            &mut out,
        );
        assert!(out.is_empty());
        assert!(m.is_empty());
        assert_eq!(m.next_due(), None);
    }

    #[test]
    fn next_due_is_the_next_probe_or_detection() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let _ = poll(&mut m, t0, sample(0, 0));
        assert_eq!(m.next_due(), Some(t0 + ms(10)));
        // Heard at 8 ms: the next probe is still due at 10 ms, the one after at 20 ms (before
        // the detection at 8 + 30 ms).
        let _ = poll(&mut m, t0 + ms(8), sample(1, 5));
        assert_eq!(m.next_due(), Some(t0 + ms(10)));
        let _ = poll(&mut m, t0 + ms(10), sample(1, 6));
        assert_eq!(m.next_due(), Some(t0 + ms(20)));
    }
}
