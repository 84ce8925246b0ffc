//! The link manager's core: what each neighbour link decides, without I/O or a clock.
//!
//! [`crate::links`] moves bytes (TCP, the Noise transport, threads) and the router core
//! ([`crate::router`]) programs the dataplane; the decisions between them live here, each a
//! small value that takes `now` as a parameter:
//!
//! - [`Control`]: the messages inside a link's encrypted channel (ping, pong, node-manager
//!   message, rekey request and confirmation) and their encoding.
//! - [`Keepalive`] and [`DeadTimer`]: when to ping, the round trip a pong measures, when a
//!   silent link is dead.
//! - [`Backoff`]: redial delays.
//! - [`smaller_dials`] / [`keep_new_link`]: the one tie-break policy for two links to one peer.
//! - [`Metric`]: RTT smoothing and the cost hysteresis that decides when to re-advertise.
//! - [`DataKeys`]: the data-key rotation protocol of one link, both roles.

use crate::identity::NodeId;
use std::time::{Duration, Instant};

const T_PING: u8 = 1;
const T_PONG: u8 = 2;
const T_NM: u8 = 3;
const T_REKEY: u8 = 4;
const T_REKEY_ACK: u8 = 5;

/// One message inside a link's encrypted channel.
///
/// Wire form: `1 | t_us u64le` ping, `2 | t_us u64le` pong (the ping's echo),
/// `3 | bytes` node-manager message, `4 | generation u32le` rekey request,
/// `5 | generation u32le` rekey confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// Keepalive carrying the sender's clock in microseconds.
    Ping(u64),
    /// Echo of a ping.
    Pong(u64),
    /// A node-manager message.
    Nm(&'a [u8]),
    /// Data-key generation `generation` asked for (`ack` false) or confirmed (`ack` true).
    Rekey {
        /// Key generation.
        generation: u32,
        /// Whether this is the confirmation.
        ack: bool,
    },
}

impl<'a> Control<'a> {
    /// Parses one decrypted message; `None` for an unknown type or a wrong length (ignored by
    /// the link, as a newer peer may send messages this version does not know).
    pub fn parse(msg: &'a [u8]) -> Option<Control<'a>> {
        let (&t, rest) = msg.split_first()?;
        match t {
            T_PING | T_PONG => {
                let t_us = u64::from_le_bytes(rest.try_into().ok()?);
                Some(if t == T_PING {
                    Control::Ping(t_us)
                } else {
                    Control::Pong(t_us)
                })
            }
            T_NM => Some(Control::Nm(rest)),
            T_REKEY | T_REKEY_ACK => Some(Control::Rekey {
                generation: u32::from_le_bytes(rest.try_into().ok()?),
                ack: t == T_REKEY_ACK,
            }),
            _ => None,
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Control::Ping(t) | Control::Pong(t) => {
                let mut m = Vec::with_capacity(9);
                m.push(if matches!(self, Control::Ping(_)) {
                    T_PING
                } else {
                    T_PONG
                });
                m.extend_from_slice(&t.to_le_bytes());
                m
            }
            Control::Nm(b) => {
                let mut m = Vec::with_capacity(b.len() + 1);
                m.push(T_NM);
                m.extend_from_slice(b);
                m
            }
            Control::Rekey { generation, ack } => {
                let mut m = Vec::with_capacity(5);
                m.push(if ack { T_REKEY_ACK } else { T_REKEY });
                m.extend_from_slice(&generation.to_le_bytes());
                m
            }
        }
    }
}

/// The ping side of a link's keepalive: a ping every `period`, each carrying the time since
/// `epoch`, so the pong's echo gives the round trip.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    epoch: Instant,
    period: Duration,
    next_ping: Instant,
}

impl Keepalive {
    /// A keepalive whose first ping is due at `now`.
    pub fn new(now: Instant, period: Duration) -> Keepalive {
        Keepalive {
            epoch: now,
            period,
            next_ping: now,
        }
    }

    /// The ping to send at `now`, if one is due (the next is then scheduled).
    pub fn poll_ping(&mut self, now: Instant) -> Option<Control<'static>> {
        if now < self.next_ping {
            return None;
        }
        self.next_ping = now + self.period;
        Some(Control::Ping(self.micros(now)))
    }

    /// When the next ping is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_ping
    }

    /// The round trip a pong echoing `sent_us` measures at `now` (microseconds, at least 1).
    pub fn rtt_us(&self, now: Instant, sent_us: u64) -> u32 {
        let rtt = self
            .micros(now)
            .saturating_sub(sent_us)
            .min(u64::from(u32::MAX)) as u32;
        rtt.max(1)
    }

    fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// The listening side: a link from which nothing authentic arrived for `dead_after`
/// keepalive periods is dead.
#[derive(Debug, Clone, Copy)]
pub struct DeadTimer {
    last_heard: Instant,
    dead: Duration,
}

impl DeadTimer {
    /// Starts the timer at `now`.
    pub fn new(now: Instant, period: Duration, dead_after: u32) -> DeadTimer {
        DeadTimer {
            last_heard: now,
            dead: period * dead_after,
        }
    }

    /// An authentic message arrived at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The reader was not reading for `d` (it waited for room to hand a message on): that
    /// time is not silence, the peer's messages were waiting unread in the socket meanwhile.
    pub fn not_listening(&mut self, d: Duration) {
        self.last_heard += d;
    }

    /// Why the link is dead at `now`, if it is.
    pub fn expired(&self, now: Instant) -> Option<String> {
        (now.saturating_duration_since(self.last_heard) > self.dead)
            .then(|| format!("no keepalive for {} ms", self.dead.as_millis()))
    }
}

/// Redial delays: doubling from [`Backoff::MIN`] to [`Backoff::MAX`]; a link that stayed up
/// longer than twice the maximum starts over.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            current: Backoff::MIN,
        }
    }
}

impl Backoff {
    /// First redial delay.
    pub const MIN: Duration = Duration::from_millis(100);
    /// Longest redial delay.
    pub const MAX: Duration = Duration::from_secs(5);

    /// The delay after an attempt that lasted `lasted` (connect, handshake and the link's
    /// life); the following one doubles.
    pub fn after_attempt(&mut self, lasted: Duration) -> Duration {
        if lasted > Backoff::MAX * 2 {
            self.current = Backoff::MIN;
        }
        let d = self.current;
        self.current = (self.current * 2).min(Backoff::MAX);
        d
    }

    /// Back to the shortest delay (the peer is linked through another connection).
    pub fn reset(&mut self) {
        self.current = Backoff::MIN;
    }
}

/// Where a neighbour's data frames go: the address its control connection comes from, with
/// the data port it claims. A peer may not choose another IP (a DNS resolver's, say: a VPN
/// client would pin it outside its tunnel, and frames would be reflected to it); a claim of
/// another address is replaced (the `bool`) and the caller counts it.
pub fn data_endpoint(
    claimed: std::net::SocketAddr,
    observed: Option<std::net::IpAddr>,
) -> (std::net::SocketAddr, bool) {
    let Some(ip) = observed else {
        return (claimed, false);
    };
    let replaced = !claimed.ip().is_unspecified() && claimed.ip() != ip;
    (std::net::SocketAddr::new(ip, claimed.port()), replaced)
}

/// The tie-break between two routers that may dial each other: the smaller key dials first
/// and its link is the one kept; the larger holds back.
pub fn smaller_dials(me: &NodeId, peer: &NodeId) -> bool {
    me < peer
}

/// With a link to `peer` up whose initiator flag (from our side) is `old_initiator`, whether
/// a second link with `new_initiator` replaces it: the old one stays only when it is the
/// link the smaller key dialled and the new one is not.
pub fn keep_new_link(me: &NodeId, peer: &NodeId, new_initiator: bool, old_initiator: bool) -> bool {
    let preferred = |initiator: bool| initiator == smaller_dials(me, peer);
    !preferred(old_initiator) || preferred(new_initiator)
}

/// A link's measured round trip (smoothed) and the cost last advertised for it.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Smoothed RTT (7/8 old, 1/8 new), none before the first pong.
    pub rtt_us: Option<u32>,
    /// The cost the node manager was last told.
    pub cost_sent: u32,
}

impl Metric {
    /// A fresh link, advertised at `cost`.
    pub fn new(cost: u32) -> Metric {
        Metric {
            rtt_us: None,
            cost_sent: cost,
        }
    }

    /// Folds in an RTT sample; returns the smoothed RTT.
    pub fn sample(&mut self, rtt_us: u32) -> u32 {
        let s = match self.rtt_us {
            None => rtt_us,
            Some(old) => ((u64::from(old) * 7 + u64::from(rtt_us)) / 8) as u32,
        };
        self.rtt_us = Some(s);
        s
    }

    /// Whether `cost` differs enough (25 %) from the advertised one to re-advertise, not on
    /// jitter; if so it becomes the advertised cost.
    pub fn readvertise(&mut self, cost: u32) -> bool {
        let sent = self.cost_sent;
        if cost.abs_diff(sent) * 4 > sent {
            self.cost_sent = cost;
            true
        } else {
            false
        }
    }
}

/// Shortest time between two rotations the responder takes. A rotation costs a fib commit
/// (a copy of the whole table) on both ends, so a neighbour asking for new keys as fast as it
/// can send would make this node copy its tables thousands of times a second. No policy needs
/// more: the smallest `rekey_bytes` (64 MiB) lasts 50 ms at 10 Gbit/s. A request that comes
/// sooner is not confirmed (counted); the initiator repeats it after its retry time.
pub const MIN_REKEY_INTERVAL: Duration = Duration::from_millis(50);

/// When a link's data keys rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Rotate after this long...
    pub every: Duration,
    /// ...or after this many bytes (both directions).
    pub bytes: u64,
    /// An unconfirmed request is repeated after this long.
    pub retry: Duration,
}

/// What a rekey step asks the driver to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    /// Program the link's dataplane session with these keys (and commit before going on).
    Program {
        /// Send key.
        tx: [u8; 32],
        /// Receive key.
        rx: [u8; 32],
    },
    /// Send a rekey request (`ack` false) or confirmation on the link.
    Send {
        /// Key generation.
        generation: u32,
        /// Confirmation.
        ack: bool,
    },
}

/// One link's data keys and where they are in a rotation.
///
/// The link's initiator drives rotations: step 1 accepts the next receive key while still
/// sending with the current one, then asks the peer for generation g; the responder switches
/// both keys (it keeps accepting the initiator's current key as the dataplane's previous key)
/// and confirms; on the confirmation the initiator sends with the new key too. A lost request
/// or confirmation is repeated after [`RekeyPolicy::retry`]; the responder confirms any
/// generation it already has.
#[derive(Debug, Clone)]
pub struct DataKeys {
    initiator: bool,
    tx: [u8; 32],
    rx: [u8; 32],
    generation: u32,
    /// Initiator: the generation asked for and when, awaiting the peer's confirmation.
    pending: Option<(u32, Instant)>,
    since: Instant,
    bytes_at_rekey: u64,
    /// Requests refused: sooner than [`MIN_REKEY_INTERVAL`] after the last rotation.
    too_soon: u64,
    /// Messages that fit no step (see [`DataKeys::ignored`]).
    ignored: u64,
    /// When a generation this side already has was last confirmed again.
    reconfirmed: Option<Instant>,
}

impl DataKeys {
    /// Generation 0 keys from the link handshake, at `now`.
    pub fn new(now: Instant, initiator: bool, tx: [u8; 32], rx: [u8; 32]) -> DataKeys {
        DataKeys {
            initiator,
            tx,
            rx,
            generation: 0,
            pending: None,
            since: now,
            bytes_at_rekey: 0,
            too_soon: 0,
            ignored: 0,
            reconfirmed: None,
        }
    }

    /// Rekey messages ignored: a request for a generation beyond the next or in the wrong
    /// role, a confirmation of nothing asked, or a repeated request for a generation already
    /// confirmed again within [`MIN_REKEY_INTERVAL`] (a real initiator repeats a lost one only
    /// after its retry time, so one answer per interval serves it; more would let a neighbour
    /// have this side answer every request it sends).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Rotation requests refused as too soon after the previous one.
    pub fn refused_too_soon(&self) -> u64 {
        self.too_soon
    }

    /// The current generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The current (send, receive) keys.
    pub fn keys(&self) -> ([u8; 32], [u8; 32]) {
        (self.tx, self.rx)
    }

    /// Initiator: the steps of a rotation due at `now`, with `used` bytes through the link's
    /// session so far; empty when none is due (or on the responder).
    pub fn poll(&mut self, now: Instant, used: u64, policy: &RekeyPolicy) -> Vec<KeyStep> {
        if !self.initiator {
            return Vec::new();
        }
        let due = match self.pending {
            Some((_, at)) => now.saturating_duration_since(at) > policy.retry,
            None => {
                now.saturating_duration_since(self.since) >= policy.every
                    || used.saturating_sub(self.bytes_at_rekey) >= policy.bytes
            }
        };
        if !due {
            return Vec::new();
        }
        let g = match self.pending {
            Some((g, _)) => g,
            None => self.generation + 1,
        };
        self.pending = Some((g, now));
        self.bytes_at_rekey = used;
        vec![
            KeyStep::Program {
                tx: self.tx,
                rx: crate::link::next_key(&self.rx, g),
            },
            KeyStep::Send {
                generation: g,
                ack: false,
            },
        ]
    }

    /// A rekey message from the peer at `now`; returns the steps and whether a rotation
    /// completed on this side.
    pub fn handle(&mut self, now: Instant, generation: u32, ack: bool) -> (Vec<KeyStep>, bool) {
        let mut steps = Vec::new();
        let mut rotated = false;
        if !ack && !self.initiator {
            if generation == self.generation + 1
                && now.saturating_duration_since(self.since) < MIN_REKEY_INTERVAL
            {
                self.too_soon += 1;
                return (steps, false);
            }
            if generation == self.generation + 1 {
                self.advance(now, generation);
                steps.push(KeyStep::Program {
                    tx: self.tx,
                    rx: self.rx,
                });
                rotated = true;
            }
            if generation > self.generation {
                self.ignored += 1;
            } else if rotated
                || self
                    .reconfirmed
                    .is_none_or(|t| now.saturating_duration_since(t) >= MIN_REKEY_INTERVAL)
            {
                if !rotated {
                    self.reconfirmed = Some(now);
                }
                steps.push(KeyStep::Send {
                    generation,
                    ack: true,
                });
            } else {
                self.ignored += 1;
            }
        } else if ack && self.initiator && self.pending.is_some_and(|(g, _)| g == generation) {
            self.advance(now, generation);
            self.pending = None;
            steps.push(KeyStep::Program {
                tx: self.tx,
                rx: self.rx,
            });
            rotated = true;
        } else {
            self.ignored += 1;
        }
        (steps, rotated)
    }

    fn advance(&mut self, now: Instant, generation: u32) {
        self.tx = crate::link::next_key(&self.tx, generation);
        self.rx = crate::link::next_key(&self.rx, generation);
        self.generation = generation;
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn control_messages_round_trip_and_bad_lengths_are_ignored() {
        for m in [
            Control::Ping(7),
            Control::Pong(u64::MAX),
            Control::Nm(b"hello"),
            Control::Nm(b""),
            Control::Rekey {
                generation: 3,
                ack: false,
            },
            Control::Rekey {
                generation: 9,
                ack: true,
            },
        ] {
            assert_eq!(Control::parse(&m.encode()), Some(m));
        }
        assert_eq!(Control::parse(&[]), None);
        assert_eq!(Control::parse(&[T_PING, 1, 2]), None);
        assert_eq!(Control::parse(&[T_PONG; 10]), None);
        assert_eq!(Control::parse(&[T_REKEY, 1, 2, 3]), None);
        assert_eq!(Control::parse(&[99, 1]), None);
    }

    #[test]
    fn keepalive_pings_every_period_and_measures_the_round_trip() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut k = Keepalive::new(t0, Duration::from_millis(100));
        let Some(Control::Ping(sent)) = k.poll_ping(t0) else {
            panic!("first ping is due at once");
        };
        assert_eq!(k.poll_ping(ms(50)), None);
        assert_eq!(k.poll_timeout(), ms(100));
        assert!(k.poll_ping(ms(100)).is_some());
        assert_eq!(k.rtt_us(ms(3), sent), 3000);
        // A pong from the future (forged or a clock step) is at least 1 us, never a panic.
        assert_eq!(k.rtt_us(t0, u64::MAX), 1);
    }

    #[test]
    fn a_link_is_dead_after_dead_after_silent_periods_and_lives_while_heard() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = DeadTimer::new(t0, Duration::from_millis(100), 3);
        assert_eq!(d.expired(ms(300)), None);
        d.heard(ms(250));
        assert_eq!(d.expired(ms(540)), None);
        assert_eq!(
            d.expired(ms(551)).as_deref(),
            Some("no keepalive for 300 ms")
        );
    }

    #[test]
    fn a_peer_cannot_choose_another_address_for_its_data() {
        let seen: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let p = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            data_endpoint(p("0.0.0.0:7000"), Some(seen)),
            (p("10.0.0.2:7000"), false)
        );
        assert_eq!(
            data_endpoint(p("10.0.0.2:7005"), Some(seen)),
            (p("10.0.0.2:7005"), false)
        );
        assert_eq!(
            data_endpoint(p("9.9.9.9:53"), Some(seen)),
            (p("10.0.0.2:53"), true),
            "a resolver's address is not taken"
        );
        assert_eq!(
            data_endpoint(p("0.0.0.0:7000"), None),
            (p("0.0.0.0:7000"), false)
        );
    }

    #[test]
    fn backoff_doubles_to_the_maximum_and_restarts_after_a_long_link() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(10);
        let seq: Vec<u64> = (0..8)
            .map(|_| b.after_attempt(short).as_millis() as u64)
            .collect();
        assert_eq!(seq, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.after_attempt(Duration::from_secs(11)), Backoff::MIN);
        assert_eq!(b.after_attempt(short), Backoff::MIN * 2);
        b.reset();
        assert_eq!(b.after_attempt(short), Backoff::MIN);
    }

    #[test]
    fn duplicate_dial_keeps_the_link_the_smaller_key_dialled_on_both_ends() {
        let (small, large) = (id(1), id(2));
        assert!(smaller_dials(&small, &large));
        assert!(!smaller_dials(&large, &small));
        // Both dialled: each end has an outgoing and an incoming link. The link small dialled
        // is small's initiator link and large's responder link.
        // small: old = its own dial (initiator), new = large's dial: keep old.
        assert!(!keep_new_link(&small, &large, false, true));
        // large: old = its own dial (initiator), new = small's dial (responder): replace.
        assert!(keep_new_link(&large, &small, false, true));
        // Arrival in the other order gives the same survivor.
        assert!(keep_new_link(&small, &large, true, false));
        assert!(!keep_new_link(&large, &small, true, false));
        // A reconnect of the same kind (the peer restarted) always replaces the old link.
        assert!(keep_new_link(&small, &large, true, true));
        assert!(keep_new_link(&large, &small, false, false));
    }

    #[test]
    fn metric_smooths_and_readvertises_only_on_a_quarter_change() {
        let mut m = Metric::new(1000);
        assert_eq!(m.sample(800), 800);
        assert_eq!(m.sample(1600), 900);
        assert!(!m.readvertise(1200));
        assert!(m.readvertise(1300));
        assert_eq!(m.cost_sent, 1300);
        assert!(!m.readvertise(1300));
    }

    fn policy() -> RekeyPolicy {
        RekeyPolicy {
            every: Duration::from_secs(120),
            bytes: 1 << 30,
            retry: Duration::from_secs(2),
        }
    }

    /// Runs the steps of one end: programs its dataplane (the keys it uses) and returns the
    /// messages it sends.
    fn apply(steps: Vec<KeyStep>, programmed: &mut ([u8; 32], [u8; 32])) -> Vec<(u32, bool)> {
        let mut sent = Vec::new();
        for s in steps {
            match s {
                KeyStep::Program { tx, rx } => *programmed = (tx, rx),
                KeyStep::Send { generation, ack } => sent.push((generation, ack)),
            }
        }
        sent
    }

    /// A neighbour asking for rotation after rotation: the responder takes at most one per
    /// MIN_REKEY_INTERVAL (each costs a fib commit), counts the others and does not confirm
    /// them; the request is taken once the interval has passed.
    #[test]
    fn a_responder_takes_at_most_one_rotation_per_interval() {
        let t0 = Instant::now();
        let mut b = DataKeys::new(t0, false, [2; 32], [1; 32]);
        let later = t0 + MIN_REKEY_INTERVAL;
        assert!(b.handle(later, 1, false).1);
        for i in 0..100u64 {
            let at = later + Duration::from_micros(i * 400);
            let (steps, rotated) = b.handle(at, 2, false);
            assert!(!rotated && steps.is_empty(), "rotation {i} taken too soon");
        }
        assert_eq!(b.refused_too_soon(), 100);
        assert_eq!(b.generation(), 1);
        let (steps, rotated) = b.handle(later + MIN_REKEY_INTERVAL, 2, false);
        assert!(rotated);
        assert_eq!(steps.len(), 2, "program and confirm");
        assert_eq!(b.generation(), 2);
    }

    /// Rekey messages that fit no step are counted and answered with nothing; a generation
    /// already had is confirmed again at most once per MIN_REKEY_INTERVAL.
    #[test]
    fn stray_rekey_messages_are_ignored_and_counted_and_repeats_answered_once_per_interval() {
        let t0 = Instant::now();
        let mut b = DataKeys::new(t0, false, [2; 32], [1; 32]);
        let t1 = t0 + MIN_REKEY_INTERVAL;
        assert!(b.handle(t1, 1, false).1);
        // Beyond the next generation, a confirmation to a responder.
        assert_eq!(b.handle(t1, 7, false), (Vec::new(), false));
        assert_eq!(b.handle(t1, 1, true), (Vec::new(), false));
        assert_eq!(b.ignored(), 2);
        // The current generation asked again (a lost confirmation): answered once...
        let (steps, _) = b.handle(t1 + Duration::from_millis(1), 1, false);
        assert_eq!(steps.len(), 1, "{steps:?}");
        // ... and not again within the interval, however often it is asked.
        for i in 0..1000u64 {
            let at = t1 + Duration::from_millis(1) + Duration::from_micros(i * 40);
            assert!(b.handle(at, 1, false).0.is_empty(), "answered request {i}");
        }
        assert_eq!(b.ignored(), 1002);
        let (steps, _) = b.handle(t1 + MIN_REKEY_INTERVAL * 2, 1, false);
        assert_eq!(steps.len(), 1, "a repeat after the interval is answered");
        // An initiator ignores requests, and confirmations of nothing it asked.
        let mut a = DataKeys::new(t0, true, [1; 32], [2; 32]);
        assert_eq!(a.handle(t1, 1, false), (Vec::new(), false));
        assert_eq!(a.handle(t1, 1, true), (Vec::new(), false));
        assert_eq!(a.ignored(), 2);
    }

    #[test]
    fn rekey_across_both_ends_with_a_lost_confirmation() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let mut a = DataKeys::new(t0, true, k1, k2);
        let mut b = DataKeys::new(t0, false, k2, k1);
        let mut pa = a.keys();
        let mut pb = b.keys();
        assert!(a.poll(s(60), 0, &policy()).is_empty());
        assert!(
            b.poll(s(500), u64::MAX, &policy()).is_empty(),
            "responder never starts"
        );
        // Time is up: a accepts the next receive key, still sends with the current one.
        let req = apply(a.poll(s(120), 0, &policy()), &mut pa);
        assert_eq!(req, [(1, false)]);
        assert_eq!(pa.0, k1);
        assert_eq!(pa.1, crate::link::next_key(&k2, 1));
        // b switches both keys and confirms; the confirmation is lost.
        let (steps, rotated) = b.handle(s(120), 1, false);
        assert!(rotated);
        assert_eq!(apply(steps, &mut pb), [(1, true)]);
        assert_eq!(pb.0, pa.1, "b sends with what a now accepts");
        // No repeat before the retry interval; then the same generation is asked again.
        assert!(a.poll(s(121), 0, &policy()).is_empty());
        let again = apply(a.poll(s(123), 0, &policy()), &mut pa);
        assert_eq!(again, [(1, false)]);
        // b already has generation 1: it confirms without rotating again.
        let (steps, rotated) = b.handle(s(123), 1, false);
        assert!(!rotated);
        assert_eq!(apply(steps, &mut pb), [(1, true)]);
        // a switches its send key: both ends agree on generation 1.
        let (steps, rotated) = a.handle(s(123), 1, true);
        assert!(rotated);
        apply(steps, &mut pa);
        assert_eq!(pa, (pb.1, pb.0));
        assert_eq!((a.generation(), b.generation()), (1, 1));
        // A stale or forged confirmation changes nothing; nor does a skipped generation.
        assert_eq!(a.handle(s(124), 1, true), (Vec::new(), false));
        assert_eq!(b.handle(s(124), 5, false), (Vec::new(), false));
        // The next rotation is counted from the completed one, by time or by volume.
        assert!(a.poll(s(200), 100, &policy()).is_empty());
        assert!(!a.poll(s(200), 100 + (1 << 30), &policy()).is_empty());
    }
}
