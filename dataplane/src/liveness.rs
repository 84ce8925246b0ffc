//! Fast failure detection of link sessions, sans I/O (BFD-like, asynchronous mode).
//!
//! Each side of a session with a [`Liveness`] setting watches its own counters:
//!
//! - A session that sent nothing for `interval` gets a probe: a hop-authenticated frame with
//!   the reserved label [`crate::wire::LABEL_PROBE`] and no payload. Data counts: a busy link
//!   sends no extra probes.
//! - A session the peer was heard on (an authenticated frame, probe or data) is down when
//!   nothing authentic arrived for `interval * multiplier`: reported once as
//!   [`Event::Down`]; heard again, it is up again.
//! - A session never heard since it was added is not reported: the peer may still be
//!   installing its half (the controlplane's slower keepalive covers that case).
//! - A silence is only believed at once when the node heard other frames meanwhile (its
//!   receiving shards ran, so this peer really is quiet). When nothing at all arrived, the node
//!   itself may have been descheduled (a loaded 2-core router): the session is down only
//!   after twice its detection time, so losing every link is still noticed.
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
    /// Frames sent so far.
    pub tx_pkts: u64,
}

/// Frames the node received so far on all sessions and ports (whatever they were).
pub type NodeRx = u64;

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
    node_rx: NodeRx,
    sent: Instant,
    state: State,
    seen: u64,
}

/// Liveness of every watched session.
#[derive(Debug, Default)]
pub struct Monitor {
    peers: HashMap<SessionId, Peer>,
    turn: u64,
    /// Probes asked for so far.
    pub probes: u64,
    /// Downs reported so far.
    pub downs: u64,
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
    /// `samples` are forgotten; `node_rx` is the node's total of frames received) and pushes
    /// what to do to `out`.
    pub fn poll(
        &mut self,
        now: Instant,
        node_rx: NodeRx,
        samples: impl IntoIterator<Item = Sample>,
        out: &mut Vec<Event>,
    ) {
        self.turn = self.turn.wrapping_add(1);
        let turn = self.turn;
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
            if s.tx_pkts != p.tx {
                p.tx = s.tx_pkts;
                p.sent = now;
            }
            if now.saturating_duration_since(p.sent) >= cfg.interval() {
                p.sent = now;
                self.probes += 1;
                out.push(Event::Probe(s.session));
            }
            let silent = now.saturating_duration_since(p.heard);
            let others_heard = node_rx != p.node_rx;
            let detect = if others_heard {
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
    }

    /// When [`Monitor::poll`] next has something to do (a probe or a detection), if any
    /// session is watched.
    pub fn next_due(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| {
                let probe = p.sent + p.cfg.interval();
                // Due at the first detection time (it may wait for a second one, see `poll`).
                let down = (p.state == State::Up).then(|| p.heard + p.cfg.detect());
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
        let node_rx = now.duration_since(*T0.get_or_init(Instant::now)).as_nanos() as u64;
        m.poll(now, node_rx, [s], &mut out);
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
    fn an_idle_session_is_probed_every_interval_and_a_busy_one_never() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        // New: probed at once.
        assert_eq!(poll(&mut m, t0, sample(0, 0)), vec![Event::Probe(7)]);
        // The probe went out (tx 1); nothing more until an interval passed.
        assert_eq!(poll(&mut m, t0 + ms(5), sample(0, 1)), vec![]);
        assert_eq!(
            poll(&mut m, t0 + ms(15), sample(0, 1)),
            vec![Event::Probe(7)]
        );
        // Data every 5 ms: no probes at all.
        let mut tx = 1;
        for i in 1..=20 {
            tx += 3;
            let ev = poll(&mut m, t0 + ms(15 + 5 * i), sample(i, tx));
            assert!(ev.is_empty(), "{ev:?} at step {i}");
        }
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
        // Silent: probes go on, no down before 3 intervals.
        let mut tx = 1;
        for t in [5, 12, 20, 30] {
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
        // Heard again: up, and down again only after a new silence.
        let _ = poll(&mut m, t0 + ms(41), sample(2, tx + 1));
        assert_eq!(downs(&poll(&mut m, t0 + ms(60), sample(2, tx + 2))), 0);
        assert_eq!(downs(&poll(&mut m, t0 + ms(72), sample(2, tx + 3))), 1);
    }

    #[test]
    fn when_nothing_at_all_was_heard_a_silence_counts_only_after_twice_the_detection_time() {
        let t0 = Instant::now();
        let mut m = Monitor::new();
        let mut out = Vec::new();
        let down = |out: &[Event]| out.iter().any(|e| matches!(e, Event::Down { .. }));
        m.poll(t0, 100, [sample(0, 0)], &mut out);
        m.poll(t0 + ms(1), 101, [sample(1, 1)], &mut out);
        out.clear();
        // The node's frame count stands still (maybe we were descheduled): not yet at 30 ms.
        m.poll(t0 + ms(31), 101, [sample(1, 2)], &mut out);
        assert!(!down(&out), "{out:?}");
        m.poll(t0 + ms(45), 101, [sample(1, 3)], &mut out);
        assert!(!down(&out), "{out:?}");
        // Every link silent for twice the time: down all the same.
        m.poll(t0 + ms(61), 101, [sample(1, 4)], &mut out);
        assert!(down(&out), "{out:?}");
        // Other frames arrived: the silence of this one is believed at 30 ms.
        let mut m = Monitor::new();
        out.clear();
        m.poll(t0, 100, [sample(0, 0)], &mut out);
        m.poll(t0 + ms(1), 101, [sample(1, 1)], &mut out);
        m.poll(t0 + ms(31), 150, [sample(1, 2)], &mut out);
        assert!(down(&out), "{out:?}");
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
            0,
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
        // Sent data at 8 ms and heard at 8 ms: next probe at 18, detection at 38.
        let _ = poll(&mut m, t0 + ms(8), sample(1, 5));
        assert_eq!(m.next_due(), Some(t0 + ms(18)));
    }
}
