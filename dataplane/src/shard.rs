//! What one shard does to a packet, independent of how it was read or will be written: a pure
//! function of (tables, per-shard session and route state, buffer) to a verdict. The I/O
//! backends (epoll, io_uring) call these and only move bytes (and hand punted packets to the
//! controlplane, see [`crate::punt`]). No clock is read here and nothing is sent from here.
//!
//! Buffers: an inner packet from sky0 is read at [`HEADROOM`], so the frame header goes in
//! front of it and the two tags after it without moving the packet. A frame from the network
//! is read at offset 0; a relay checks its hop MAC and re-stamps the header and hop tag in
//! place (the payload is not touched); an egress also opens the route layer in place and
//! delivers from offset [`HEADROOM`]. See [`crate::wire`] for the layers.
//!
//! Counter spaces: the top 8 bits of both counters are the sealing shard. The ingress shard
//! `s` seals route counters of stream `s`, and every node sends a frame to the next hop's
//! port `base + route_stream % next_shards`, so each (route, stream) lands on exactly one
//! receiving shard at every hop, and at the egress on one shard, which keeps the route's
//! replay window for it: no state is shared between shards on the packet path. Hop counters
//! carry the shard that stamped them, so they are unique per link session and direction.

use crate::fib::{Action, Fib, FibCell, IntMap, KeyId, RouteKeyCfg, SessionCfg, SessionId};
use crate::packet;
use crate::replay::ReplayWindow;
use crate::stats::{DropReason, NodeStats, traffic};
use crate::wire::{self, HEADER_LEN, HopKey, RouteKey, TRAILER_LEN, WireError};
use std::net::SocketAddr;
use std::sync::Arc;

/// Bytes in front of an inner packet: the frame header.
pub const HEADROOM: usize = HEADER_LEN;
/// Bytes after an inner packet: the route tag and the hop tag.
pub const TAILROOM: usize = TRAILER_LEN;
/// Largest inner packet a buffer takes (room for 64 KiB super-packets once offloads land).
pub const MAX_PACKET: usize = 65535;
/// Size of one packet buffer.
pub const BUF_SIZE: usize = HEADROOM + MAX_PACKET + TAILROOM;
/// Bits of a counter that number packets within one shard's stream.
const SEQ_BITS: u32 = 56;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// What to do with a buffer after processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `buf[..len]` as one UDP datagram to `to`.
    Send {
        /// Destination endpoint.
        to: SocketAddr,
        /// Frame length.
        len: usize,
    },
    /// Write `buf[HEADROOM..HEADROOM + len]` to sky0.
    Deliver {
        /// Inner packet length.
        len: usize,
    },
    /// Counted and dropped.
    Drop(DropReason),
    /// Taken by this node (a liveness probe): counted as the session's traffic, nothing to
    /// send or write.
    Consumed,
    /// No route for the inner packet at `buf[HEADROOM..HEADROOM + len]` (from
    /// [`Shard::from_tun`] only): counted and dropped as [`DropReason::NoRule`]; the backend
    /// offers the packet to the controlplane ([`crate::punt::PuntGate::offer`]) if it punts.
    Punt {
        /// Inner packet length.
        len: usize,
    },
}

/// A link session's hop layer, in one shard.
struct Sess {
    cfg: Arc<SessionCfg>,
    seal: HopKey,
    open: HopKey,
    /// The previous receive key after a rekey, with its own replay windows.
    open_prev: Option<(HopKey, Vec<(u8, ReplayWindow)>)>,
    seq: u64,
    /// Replay windows by stamping shard.
    windows: Vec<(u8, ReplayWindow)>,
}

impl Sess {
    fn new(cfg: Arc<SessionCfg>) -> Option<Sess> {
        Some(Sess {
            seal: HopKey::new(cfg.cipher, &cfg.tx_key).ok()?,
            open: HopKey::new(cfg.cipher, &cfg.rx_key).ok()?,
            open_prev: None,
            seq: 0,
            windows: Vec::new(),
            cfg,
        })
    }

    /// The peer's port for route stream `stream`.
    #[inline]
    fn to(&self, stream: u8) -> SocketAddr {
        let mut to = self.cfg.peer;
        let off = u16::from(stream) % self.cfg.peer_shards.max(1);
        to.set_port(self.cfg.peer.port().wrapping_add(off));
        to
    }
}

/// A route key, in one shard: its sealing sequence (ingress) or its replay windows by route
/// stream (egress).
struct RouteState {
    cfg: Arc<RouteKeyCfg>,
    aead: RouteKey,
    seq: u64,
    windows: Vec<(u8, ReplayWindow)>,
}

/// Whether `counter` of `stream` is new, without making a window for a stream not seen yet
/// (windows are made only by [`window_in`], after a frame authenticated).
fn fresh_in(windows: &[(u8, ReplayWindow)], stream: u8, counter: u64) -> bool {
    match windows.iter().find(|(s, _)| *s == stream) {
        Some((_, w)) => w.check(counter),
        None => ReplayWindow::new().check(counter),
    }
}

fn window_in(windows: &mut Vec<(u8, ReplayWindow)>, stream: u8) -> &mut ReplayWindow {
    let i = match windows.iter().position(|(s, _)| *s == stream) {
        Some(i) => i,
        None => {
            windows.push((stream, ReplayWindow::new()));
            windows.len() - 1
        }
    };
    &mut windows[i].1
}

/// The next counter of `shard`'s stream from `seq`, or `None` when the stream is used up.
#[inline]
fn next_counter(shard: u8, seq: &mut u64) -> Option<u64> {
    if *seq > SEQ_MASK {
        return None;
    }
    let c = (u64::from(shard) << SEQ_BITS) | *seq;
    *seq += 1;
    Some(c)
}

/// One shard's packet state.
pub struct Shard {
    id: u8,
    cell: Arc<FibCell>,
    fib: Arc<Fib>,
    generation: u64,
    sessions: IntMap<SessionId, Sess>,
    routes: IntMap<KeyId, RouteState>,
    stats: Arc<NodeStats>,
    /// How many shards receive frames on this node (ports base .. base + n): a frame's route
    /// stream `s` arrives only at shard `s % n`. `None`: any (tests, the fib thread).
    receivers: Option<u8>,
    /// What this shard's port takes: data frames only (a shard), probes only (the fib
    /// thread's port), or both (tests).
    takes: Takes,
}

/// Which frames a port takes. Each hop counter is checked against one replay window: a probe
/// replayed to a data port, or a data frame to the probe port, is refused, not accepted once
/// more by another window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Both,
    Data,
    Probes,
}

impl Shard {
    /// Shard `id` reading tables from `cell`.
    pub fn new(id: u8, cell: Arc<FibCell>, stats: Arc<NodeStats>) -> Shard {
        let (fib, generation) = cell.load();
        let mut s = Shard {
            id,
            cell,
            fib: Arc::new(Fib::default()),
            generation: 0,
            sessions: IntMap::default(),
            routes: IntMap::default(),
            stats,
            receivers: None,
            takes: Takes::Both,
        };
        s.install(fib, generation);
        s
    }

    /// One of `n` receiving shards: frames whose route counter names a stream that is not
    /// sent to this one are dropped ([`DropReason::WrongShard`]), so a frame captured on one
    /// port and replayed to the others is checked against the one replay window it belongs to.
    pub fn receiving_one_of(mut self, n: u8) -> Shard {
        self.receivers = Some(n.max(1));
        self.takes = Takes::Data;
        self
    }

    /// The fib thread's shard: its port takes liveness probes only (they skip the data
    /// shards' queues, so a busy shard cannot make a live peer look silent).
    pub fn receiving_probes(mut self) -> Shard {
        self.takes = Takes::Probes;
        self
    }

    /// This shard's index.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Node-wide counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Route keys this shard holds (a relay: none).
    pub fn route_keys(&self) -> usize {
        self.routes.len()
    }

    /// Picks up a newer table snapshot if one was published (one atomic load when not).
    #[inline]
    pub fn refresh(&mut self) {
        if self.cell.generation() != self.generation {
            let (fib, generation) = self.cell.load();
            self.install(fib, generation);
        }
    }

    fn install(&mut self, fib: Arc<Fib>, generation: u64) {
        let mut old = std::mem::take(&mut self.sessions);
        for (id, cfg) in &fib.sessions {
            let prev = old.remove(id);
            // Unchanged session: keep its state as it is.
            let prev = match prev {
                Some(p) if Arc::ptr_eq(&p.cfg, cfg) => {
                    self.sessions.insert(*id, p);
                    continue;
                }
                other => other,
            };
            // Keys the AEAD refuses leave the session out: its frames count as unknown.
            let Some(mut s) = Sess::new(cfg.clone()) else {
                continue;
            };
            if let Some(p) = prev {
                // A rekey: state follows the key it belongs to. The sequence continues while the
                // sealing key is unchanged (restarting it would reuse nonces); replay windows stay
                // with their receive key, the old one becoming the previous key.
                if p.cfg.tx_key == cfg.tx_key && p.cfg.cipher == cfg.cipher {
                    s.seq = p.seq;
                }
                if p.cfg.rx_key == cfg.rx_key && p.cfg.cipher == cfg.cipher {
                    s.windows = p.windows;
                    // The previous key goes when the table no longer names one.
                    s.open_prev = p.open_prev.filter(|_| cfg.prev_rx_key.is_some());
                } else if cfg.prev_rx_key == Some(p.cfg.rx_key) {
                    s.open_prev = Some((p.open, p.windows));
                }
            }
            if s.open_prev.is_none()
                && let Some(k) = cfg.prev_rx_key
                && let Ok(o) = HopKey::new(cfg.cipher, &k)
            {
                s.open_prev = Some((o, Vec::new()));
            }
            self.sessions.insert(*id, s);
        }
        // A route key keeps its state while the table holds the same key under its id (the
        // controlplane never re-adds a removed one, so a sequence never restarts under a key).
        let mut old = std::mem::take(&mut self.routes);
        for (id, cfg) in &fib.route_keys {
            match old.remove(id) {
                Some(p) if p.cfg.key == cfg.key && p.cfg.cipher == cfg.cipher => {
                    self.routes.insert(*id, p);
                }
                _ => {
                    if let Ok(aead) = RouteKey::new(cfg.cipher, &cfg.key) {
                        self.routes.insert(
                            *id,
                            RouteState {
                                cfg: cfg.clone(),
                                aead,
                                seq: 0,
                                windows: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        self.fib = fib;
        self.generation = generation;
    }

    /// An inner packet read from sky0 at `buf[HEADROOM..HEADROOM + len]`.
    #[inline]
    pub fn from_tun(&mut self, buf: &mut [u8], len: usize) -> Verdict {
        let shard = usize::from(self.id);
        self.stats.tun.add(shard, traffic::RX_PKTS, 1);
        self.stats.tun.add(shard, traffic::RX_BYTES, len as u64);
        let Some(pkt) = buf.get(HEADROOM..HEADROOM + len) else {
            return self.discard(DropReason::TooBig);
        };
        let Some(ip) = packet::parse(pkt) else {
            return self.discard(DropReason::NotIp);
        };
        let Some(route) = self.fib.routes.lookup(ip.dst) else {
            self.discard(DropReason::NoRule);
            return Verdict::Punt { len };
        };
        let Some(rs) = self.routes.get_mut(&route.key) else {
            return self.discard(DropReason::NoRule);
        };
        let Some(rc) = next_counter(self.id, &mut rs.seq) else {
            return self.discard(DropReason::SendError);
        };
        let n = match rs.aead.seal(rc, buf, len) {
            Ok(n) => n,
            Err(_) => return self.discard(DropReason::TooBig),
        };
        rs.cfg.traffic.add(shard, traffic::TX_PKTS, 1);
        rs.cfg.traffic.add(shard, traffic::TX_BYTES, len as u64);
        let Some(s) = self.sessions.get_mut(&route.session) else {
            return self.discard(DropReason::UnknownSession);
        };
        let Some(hc) = next_counter(self.id, &mut s.seq) else {
            return self.discard(DropReason::SendError);
        };
        let Some(frame) = buf.get_mut(..n) else {
            return self.discard(DropReason::TooBig);
        };
        if s.seal.stamp(frame, s.cfg.peer_id, hc, route.label).is_err() {
            return self.discard(DropReason::SendError);
        }
        route.traffic.add(shard, traffic::TX_PKTS, 1);
        route.traffic.add(shard, traffic::TX_BYTES, len as u64);
        s.cfg.traffic.add(shard, traffic::TX_PKTS, 1);
        s.cfg.traffic.add(shard, traffic::TX_BYTES, n as u64);
        Verdict::Send {
            to: s.to(self.id),
            len: n,
        }
    }

    /// A frame read from the network at `buf[..len]`.
    #[inline]
    pub fn from_udp(&mut self, buf: &mut [u8], len: usize) -> Verdict {
        let shard = usize::from(self.id);
        self.stats.udp.add(shard, traffic::RX_PKTS, 1);
        self.stats.udp.add(shard, traffic::RX_BYTES, len as u64);
        let Some(frame) = buf.get_mut(..len) else {
            return self.discard(DropReason::TooBig);
        };
        let hdr = match wire::parse_header(frame) {
            Ok(h) => h,
            Err(_) => return self.discard(DropReason::Malformed),
        };
        let Some(s) = self.sessions.get_mut(&hdr.receiver) else {
            return self.discard(DropReason::UnknownSession);
        };
        let hop_stream = (hdr.counter >> SEQ_BITS) as u8;
        let route_stream = (hdr.route_counter >> SEQ_BITS) as u8;
        // The peer stamps with its `peer_shards` shards plus its fib thread (stream
        // `peer_shards`, injecting punted packets); a route stream reaches one receiving shard.
        let probe = hdr.label == wire::LABEL_PROBE;
        if u16::from(hop_stream) > s.cfg.peer_shards.max(1)
            || self.receivers.is_some_and(|n| route_stream % n != self.id)
            || (probe && self.takes == Takes::Data)
            || (!probe && self.takes == Takes::Probes)
        {
            return self.discard(DropReason::WrongShard);
        }
        // The hop MAC: the current receive key, else (after a rekey, for frames the peer
        // stamped before it switched) the previous one, each with its own replay windows.
        let current = fresh_in(&s.windows, hop_stream, hdr.counter);
        let checked = if current && s.open.verify(frame).is_ok() {
            window_in(&mut s.windows, hop_stream).update(hdr.counter)
        } else {
            match s.open_prev.as_mut() {
                Some((prev, windows)) => {
                    if !fresh_in(windows, hop_stream, hdr.counter) {
                        return self.discard(DropReason::Replay);
                    }
                    if prev.verify(frame).is_err() {
                        return self.discard(DropReason::BadTag);
                    }
                    window_in(windows, hop_stream).update(hdr.counter)
                }
                None if !current => return self.discard(DropReason::Replay),
                None => return self.discard(DropReason::BadTag),
            }
        };
        if !checked {
            return self.discard(DropReason::Replay);
        }
        s.cfg.traffic.add(shard, traffic::RX_PKTS, 1);
        s.cfg.traffic.add(shard, traffic::RX_BYTES, len as u64);
        if probe {
            // Proof the peer is alive (counted above); it goes no further.
            return Verdict::Consumed;
        }
        match self.fib.rules.get(&(hdr.receiver, hdr.label)) {
            None => self.discard(DropReason::NoRule),
            Some(Action::Deliver { sources, key }) => {
                let Some(rs) = self.routes.get_mut(key) else {
                    return self.discard(DropReason::NoRule);
                };
                if !fresh_in(&rs.windows, route_stream, hdr.route_counter) {
                    return self.discard(DropReason::RouteReplay);
                }
                let plen = match rs.aead.open(frame) {
                    Ok(p) => p.len(),
                    Err(WireError::BadTag) => return self.discard(DropReason::RouteBadTag),
                    Err(_) => return self.discard(DropReason::Malformed),
                };
                if !window_in(&mut rs.windows, route_stream).update(hdr.route_counter) {
                    return self.discard(DropReason::RouteReplay);
                }
                rs.cfg.traffic.add(shard, traffic::RX_PKTS, 1);
                rs.cfg.traffic.add(shard, traffic::RX_BYTES, plen as u64);
                let Some(ip) = buf.get(HEADROOM..HEADROOM + plen).and_then(packet::parse) else {
                    return self.discard(DropReason::NotIp);
                };
                // The route's handshake proved its origin; these are the origin's addresses.
                if !sources.iter().any(|p| p.contains(ip.src)) {
                    return self.discard(DropReason::BadSource);
                }
                Verdict::Deliver { len: plen }
            }
            Some(Action::Forward { session, label }) => {
                let (session, label) = (*session, *label);
                let Some(out) = self.sessions.get_mut(&session) else {
                    return self.discard(DropReason::UnknownSession);
                };
                let Some(hc) = next_counter(self.id, &mut out.seq) else {
                    return self.discard(DropReason::SendError);
                };
                if out.seal.stamp(frame, out.cfg.peer_id, hc, label).is_err() {
                    return self.discard(DropReason::SendError);
                }
                out.cfg.traffic.add(shard, traffic::TX_PKTS, 1);
                out.cfg.traffic.add(shard, traffic::TX_BYTES, len as u64);
                Verdict::Send {
                    to: out.to(route_stream),
                    len,
                }
            }
        }
    }

    /// A liveness probe on session `session` in `buf[..OVERHEAD]` ([`wire::LABEL_PROBE`], no
    /// payload, no route layer; the hop tag authenticates it) for the peer's probe port (its
    /// base port + its shard count: its fib thread's), or `None` for a session this shard does
    /// not hold.
    pub fn probe(&mut self, session: SessionId, buf: &mut [u8]) -> Option<Verdict> {
        let shard = usize::from(self.id);
        let s = self.sessions.get_mut(&session)?;
        let frame = buf.get_mut(..wire::OVERHEAD)?;
        frame.fill(0);
        // The route counter names this shard's stream, so the probe reaches the receiving
        // shard that takes this shard's frames.
        frame[wire::ROUTE_COUNTER_OFFSET..wire::HEADER_LEN]
            .copy_from_slice(&(u64::from(self.id) << SEQ_BITS).to_le_bytes());
        let hc = next_counter(self.id, &mut s.seq)?;
        s.seal
            .stamp(frame, s.cfg.peer_id, hc, wire::LABEL_PROBE)
            .ok()?;
        s.cfg.traffic.add(shard, traffic::TX_PKTS, 1);
        s.cfg
            .traffic
            .add(shard, traffic::TX_BYTES, wire::OVERHEAD as u64);
        let mut to = s.cfg.peer;
        to.set_port(s.cfg.peer.port().wrapping_add(s.cfg.peer_shards.max(1)));
        Some(Verdict::Send {
            to,
            len: wire::OVERHEAD,
        })
    }

    /// Counts a verdict's outcome after the backend tried it (sent / written or not).
    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.stats
            .udp
            .add(usize::from(self.id), traffic::TX_PKTS, 1);
        self.stats
            .udp
            .add(usize::from(self.id), traffic::TX_BYTES, bytes as u64);
    }

    /// Counts a packet written to sky0.
    #[inline]
    pub fn delivered(&self, bytes: usize) {
        self.stats
            .tun
            .add(usize::from(self.id), traffic::TX_PKTS, 1);
        self.stats
            .tun
            .add(usize::from(self.id), traffic::TX_BYTES, bytes as u64);
    }

    /// Counts `pkts` packets of `bytes` in all written to sky0 (as one coalesced write).
    #[inline]
    pub fn delivered_many(&self, pkts: u64, bytes: usize) {
        let id = usize::from(self.id);
        self.stats.tun.add(id, traffic::TX_PKTS, pkts);
        self.stats.tun.add(id, traffic::TX_BYTES, bytes as u64);
    }

    /// Counts a drop.
    #[inline]
    pub fn discard(&self, why: DropReason) -> Verdict {
        self.stats.count_drop(usize::from(self.id), why);
        Verdict::Drop(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{shard, three_hops, v6_packet};
    use crate::stats::NodeStats;

    fn pair() -> (Shard, Shard) {
        let a = shard(
            "  - {session: 1, label: 100, deliver: [fd00::2/128], key: 2}\n",
            &[(1, 1, 1, 2)],
            "  - {prefix: fd00::2/128, session: 1, label: 100, key: 1}\n",
        );
        let b = shard(
            "  - {session: 1, label: 100, deliver: [fd00::1/128], key: 1}\n",
            &[(1, 1, 2, 1)],
            "  - {prefix: fd00::1/128, session: 1, label: 100, key: 2}\n",
        );
        (a, b)
    }

    #[test]
    fn a_to_b_delivers_and_checks_the_source() {
        let (mut a, mut b) = pair();
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 2, 100);
        let pkt = buf[HEADROOM..HEADROOM + n].to_vec();
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!("not sent")
        };
        let mut replay = buf[..len].to_vec();
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Deliver { len: n });
        assert_eq!(&buf[HEADROOM..HEADROOM + n], &pkt[..]);
        // The same frame again is a replay.
        assert_eq!(
            b.from_udp(&mut replay, len),
            Verdict::Drop(DropReason::Replay)
        );
        // A spoofed source from a (fd00::9 instead of fd00::1) is refused at b.
        let n = v6_packet(&mut buf, 9, 2, 10);
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!()
        };
        assert_eq!(
            b.from_udp(&mut buf, len),
            Verdict::Drop(DropReason::BadSource)
        );
        // No route: counted as a drop, and the packet is left in place to be punted.
        let n = v6_packet(&mut buf, 1, 7, 10);
        let pkt = buf[HEADROOM..HEADROOM + n].to_vec();
        let before = a.stats().drops.sum(DropReason::NoRule as usize);
        assert_eq!(a.from_tun(&mut buf, n), Verdict::Punt { len: n });
        assert_eq!(a.stats().drops.sum(DropReason::NoRule as usize), before + 1);
        assert_eq!(&buf[HEADROOM..HEADROOM + n], &pkt[..]);
    }

    #[test]
    fn a_probe_is_consumed_and_counted_as_the_peer_heard_and_a_forged_or_replayed_one_is_not() {
        let (mut a, mut b) = pair();
        let heard = |b: &Shard| b.fib.sessions[&1].traffic.sum(traffic::RX_PKTS);
        let mut buf = vec![0u8; BUF_SIZE];
        let Some(Verdict::Send { len, .. }) = a.probe(1, &mut buf) else {
            panic!("no probe")
        };
        assert_eq!(len, wire::OVERHEAD);
        assert_eq!(a.fib.sessions[&1].traffic.sum(traffic::TX_PKTS), 1);
        let mut replay = buf[..len].to_vec();
        let mut forged = buf[..len].to_vec();
        forged[20] ^= 1; // the route counter (covered by the hop tag)
        assert_eq!(
            b.from_udp(&mut forged, len),
            Verdict::Drop(DropReason::BadTag)
        );
        assert_eq!(
            heard(&b),
            0,
            "a refused probe must not count as the peer heard"
        );
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Consumed);
        assert_eq!(heard(&b), 1);
        // Nothing reached a rule or the device: a probe goes no further than the hop.
        assert_eq!(b.stats().tun.sum(traffic::TX_PKTS), 0);
        assert_eq!(
            b.from_udp(&mut replay, len),
            Verdict::Drop(DropReason::Replay)
        );
        assert_eq!(
            heard(&b),
            1,
            "a replayed probe must not count as the peer heard"
        );
        // No probe for a session the shard lacks.
        assert_eq!(a.probe(9, &mut buf), None);
    }

    #[test]
    fn a_data_port_refuses_probes_and_the_probe_port_refuses_data() {
        let (mut a, b) = pair();
        let mut b = b.receiving_one_of(1);
        let mut buf = vec![0u8; BUF_SIZE];
        let Some(Verdict::Send { to, len }) = a.probe(1, &mut buf) else {
            panic!("no probe")
        };
        // Sent to the peer's probe port: its base port + its shard count.
        assert_eq!(to.port(), a.fib.sessions[&1].peer.port() + 1);
        let probe = buf[..len].to_vec();
        assert_eq!(
            b.from_udp(&mut buf, len),
            Verdict::Drop(DropReason::WrongShard)
        );
        let (_, b) = pair();
        let mut p = b.receiving_probes();
        let mut frame = probe.clone();
        assert_eq!(p.from_udp(&mut frame, len), Verdict::Consumed);
        let n = v6_packet(&mut buf, 1, 2, 100);
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!("not sent")
        };
        assert_eq!(
            p.from_udp(&mut buf, len),
            Verdict::Drop(DropReason::WrongShard)
        );
    }

    /// b has two receiving shards; a (one sending shard, stream 0) sends to b's port 0 only.
    #[test]
    fn a_frame_replayed_to_another_receiving_shard_or_naming_a_stream_the_peer_lacks_is_dropped() {
        use crate::config::Static;
        let k = crate::fixtures::key_hex;
        let y = format!(
            "node:\n  listen: 127.0.0.1:7000\nsessions:\n  - {{id: 1, peer_id: 1, peer: \"127.0.0.1:7100\", peer_shards: 1, tx_key: {}, rx_key: {}}}\nroute_keys:\n  - {{id: 1, key: {}}}\nrules:\n  - {{session: 1, label: 100, deliver: [fd00::1/128], key: 1}}\nroutes: []\n",
            k(2),
            k(1),
            k(101)
        );
        let st = Static::parse(&y, std::path::Path::new("b.yaml"), 2).unwrap();
        let cell = Arc::new(FibCell::new(st.fib));
        let stats = Arc::new(NodeStats::new(3));
        let mut b0 = Shard::new(0, cell.clone(), stats.clone()).receiving_one_of(2);
        let mut b1 = Shard::new(1, cell, stats).receiving_one_of(2);
        let (mut a, _) = pair();
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 2, 100);
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!("not sent")
        };
        let frame = buf[..len].to_vec();
        // Captured and replayed to b's other port: refused before any decryption.
        let mut copy = frame.clone();
        assert_eq!(
            b1.from_udp(&mut copy, len),
            Verdict::Drop(DropReason::WrongShard)
        );
        let mut copy = frame.clone();
        assert_eq!(b0.from_udp(&mut copy, len), Verdict::Deliver { len: n });
        // A counter naming a sending shard a does not have (a has one, plus its fib thread).
        let mut forged = frame.clone();
        forged[15] = 7; // the counter (little endian, bytes 8..16): its top byte
        assert_eq!(
            crate::wire::parse_header(&forged).unwrap().counter >> SEQ_BITS,
            7,
            "the byte is the stream"
        );
        assert_eq!(
            b1.from_udp(&mut forged, len),
            Verdict::Drop(DropReason::WrongShard)
        );
        assert_eq!(b0.stats().drops.sum(DropReason::WrongShard as usize), 2);
    }

    /// After a rekey the previous receive key opens frames in flight until the table forgets
    /// it; then only the current key is tried.
    #[test]
    fn a_forgotten_previous_key_opens_nothing() {
        use crate::config::Static;
        let k = crate::fixtures::key_hex;
        let y = format!(
            "node:\n  listen: 127.0.0.1:7000\nsessions:\n  - {{id: 1, peer_id: 1, peer: \"127.0.0.1:7100\", tx_key: {}, rx_key: {}}}\nroute_keys:\n  - {{id: 1, key: {}}}\nrules:\n  - {{session: 1, label: 100, deliver: [fd00::1/128], key: 1}}\nroutes: []\n",
            k(2),
            k(1),
            k(101)
        );
        let st = Static::parse(&y, std::path::Path::new("b.yaml"), 1).unwrap();
        let cell = Arc::new(FibCell::new(st.fib));
        let mut b = Shard::new(0, cell.clone(), Arc::new(NodeStats::new(1)));
        let (mut a, _) = pair();
        let frame = |a: &mut Shard| {
            let mut buf = vec![0u8; BUF_SIZE];
            let n = v6_packet(&mut buf, 1, 2, 100);
            let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
                panic!("not sent")
            };
            (buf, len, n)
        };
        // b switches its receive key (a still sends with the old one).
        cell.update(|f| {
            let mut c = (*f.sessions[&1]).clone();
            c.prev_rx_key = Some(c.rx_key);
            c.rx_key = [9; 32];
            f.sessions.insert(1, Arc::new(c));
        });
        b.refresh();
        let (mut buf, len, n) = frame(&mut a);
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Deliver { len: n });
        cell.update(|f| {
            let mut c = (*f.sessions[&1]).clone();
            c.prev_rx_key = None;
            f.sessions.insert(1, Arc::new(c));
        });
        b.refresh();
        let (mut buf, len, _) = frame(&mut a);
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Drop(DropReason::BadTag));
    }

    /// Frames that fail to open make no replay windows: only authenticated streams have state.
    #[test]
    fn forged_frames_make_no_replay_windows() {
        let (mut a, mut b) = pair();
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 2, 100);
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!()
        };
        let mut bad = buf[..len].to_vec();
        bad[len - 1] ^= 1;
        assert_eq!(b.from_udp(&mut bad, len), Verdict::Drop(DropReason::BadTag));
        assert!(
            b.sessions[&1].windows.is_empty(),
            "a forged frame made a window"
        );
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Deliver { len: n });
        assert_eq!(b.sessions[&1].windows.len(), 1);
    }

    #[test]
    fn relay_rewrites_label_and_session() {
        let (mut a, mut r, mut b) = three_hops();
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 3, 1200);
        let pkt = buf[HEADROOM..HEADROOM + n].to_vec();
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!()
        };
        let Verdict::Send { len, .. } = r.from_udp(&mut buf, len) else {
            panic!("relay did not forward")
        };
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Deliver { len: n });
        assert_eq!(&buf[HEADROOM..HEADROOM + n], &pkt[..]);
    }

    fn hop_key(n: u8) -> HopKey {
        let k: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(n));
        HopKey::new(crate::wire::preferred(), &k).unwrap()
    }

    /// a -> r -> b with a marker in the packet: the frame r receives and the one it sends
    /// carry the payload sealed exactly as a sealed it, r's tables hold no route key, and
    /// someone holding r's hop keys (r itself) verifies the hop layer but finds no marker.
    #[test]
    fn a_relay_holds_no_key_that_opens_the_payload() {
        const MARKER: &[u8] = b"SKYWIRE-PLAINTEXT-MARKER";
        let (mut a, mut r, mut b) = three_hops();
        assert_eq!(r.route_keys(), 0, "the relay has a route key");
        assert!(r.fib.route_keys.is_empty());
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 3, 600);
        for chunk in buf[HEADROOM + 40..HEADROOM + n].chunks_mut(MARKER.len()) {
            chunk.copy_from_slice(&MARKER[..chunk.len()]);
        }
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!("not sent")
        };
        let received = buf[..len].to_vec();
        let Verdict::Send { len: out, .. } = r.from_udp(&mut buf, len) else {
            panic!("relay did not forward")
        };
        assert_eq!(out, len);
        let sent = buf[..len].to_vec();
        // r's receive key from a is fixture key 1, its send key to b is 3.
        hop_key(1).verify(&received).unwrap();
        hop_key(3).verify(&sent).unwrap();
        for frame in [&received, &sent] {
            assert!(
                !frame.windows(8).any(|w| MARKER.windows(8).any(|m| m == w)),
                "plaintext on the wire at the relay"
            );
        }
        assert_eq!(
            received[HEADROOM..len - crate::wire::TAG_LEN],
            sent[HEADROOM..len - crate::wire::TAG_LEN],
            "the relay changed the sealed payload"
        );
        assert_eq!(b.from_udp(&mut buf, len), Verdict::Deliver { len: n });
        assert!(buf[HEADROOM + 40..HEADROOM + 40 + MARKER.len()] == *MARKER);
    }

    /// A hostile relay with valid hop keys: it alters the payload, replays a frame, or moves
    /// it to another route, each time with a correct hop MAC. The egress drops each one,
    /// counted by reason, and still delivers the real traffic.
    #[test]
    fn a_hostile_relay_can_only_carry_or_drop() {
        let (mut a, mut r, _) = three_hops();
        // b with a second route from another origin (fd00::2, key 2) on label 202.
        let mut b = crate::fixtures::shard(
            "  - {session: 1, label: 201, deliver: [fd00::1/128], key: 1}\n  - {session: 1, label: 202, deliver: [fd00::2/128], key: 2}\n",
            &[(1, 2, 4, 3)],
            "",
        );
        let r_to_b = hop_key(3);
        let mut hop_counter = 1000u64;
        let mut restamp = |frame: &mut [u8], label: u32| {
            hop_counter += 1;
            r_to_b.stamp(frame, 1, hop_counter, label).unwrap();
        };
        let mut relayed = || {
            let mut buf = vec![0u8; BUF_SIZE];
            let n = v6_packet(&mut buf, 1, 3, 100);
            let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
                panic!()
            };
            let Verdict::Send { len, .. } = r.from_udp(&mut buf, len) else {
                panic!()
            };
            buf.truncate(len);
            buf
        };
        let drops = |b: &Shard, why: DropReason| b.stats().drops.sum(why as usize);
        // Altered payload.
        let mut f = relayed();
        f[HEADROOM + 50] ^= 0x20;
        restamp(&mut f, 201);
        let len = f.len();
        assert_eq!(
            b.from_udp(&mut f, len),
            Verdict::Drop(DropReason::RouteBadTag)
        );
        // Replayed under a fresh hop counter: the first copy is delivered, the second not.
        let f = relayed();
        let len = f.len();
        let mut first = f.clone();
        assert!(matches!(
            b.from_udp(&mut first, len),
            Verdict::Deliver { .. }
        ));
        let mut again = f.clone();
        restamp(&mut again, 201);
        assert_eq!(
            b.from_udp(&mut again, len),
            Verdict::Drop(DropReason::RouteReplay)
        );
        // Moved onto the other origin's route: it does not open with that route's key.
        let mut moved = relayed();
        restamp(&mut moved, 202);
        assert_eq!(
            b.from_udp(&mut moved, len),
            Verdict::Drop(DropReason::RouteBadTag)
        );
        // The route counter rewritten (to dodge the replay window): the route tag fails.
        let mut f = f;
        f[crate::wire::ROUTE_COUNTER_OFFSET] ^= 0x40;
        restamp(&mut f, 201);
        assert_eq!(
            b.from_udp(&mut f, len),
            Verdict::Drop(DropReason::RouteBadTag)
        );
        assert_eq!(drops(&b, DropReason::RouteBadTag), 3);
        assert_eq!(drops(&b, DropReason::RouteReplay), 1);
        // Forged frames made no route windows beyond the one real stream.
        let rs = &b.routes[&1];
        assert_eq!(rs.windows.len(), 1);
        assert!(b.routes[&2].windows.is_empty());
        // Real traffic still flows.
        let mut f = relayed();
        let len = f.len();
        assert!(matches!(b.from_udp(&mut f, len), Verdict::Deliver { .. }));
    }

    /// Someone on the wire without the hop key: any altered header byte or tag, at the relay,
    /// is dropped there as a bad tag, before any rule is looked at.
    #[test]
    fn a_stranger_cannot_alter_a_frame_at_the_relay() {
        let (mut a, mut r, _) = three_hops();
        let mut buf = vec![0u8; BUF_SIZE];
        let n = v6_packet(&mut buf, 1, 3, 100);
        let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
            panic!()
        };
        let frame = buf[..len].to_vec();
        // Label, route counter, route tag, hop tag (not the receiver: that is another session).
        for at in [16, 20, 27, len - 32, len - 1] {
            let mut f = frame.clone();
            f[at] ^= 1;
            assert_eq!(
                r.from_udp(&mut f, len),
                Verdict::Drop(DropReason::BadTag),
                "byte {at}"
            );
        }
        let mut f = frame.clone();
        assert!(matches!(r.from_udp(&mut f, len), Verdict::Send { .. }));
    }

    /// Two nodes whose session keys are changed in place the way the controlplane rekeys:
    /// step 1 (the initiator) accepts the new receive key and keeps sending with the old one,
    /// step 2 both send with the new keys; nothing is lost on the way and sealing counters never
    /// restart under an unchanged key.
    #[test]
    fn rekey_in_two_steps_loses_nothing_and_never_reuses_a_nonce() {
        use crate::config::Static;
        let k = |n: u8| crate::fixtures::key_hex(n);
        let node = |me: u8, peer: u8, tx: u8, rx: u8| {
            let y = format!(
                "node:\n  listen: 127.0.0.1:7000\nsessions:\n  - {{id: 1, peer_id: 1, peer: \"127.0.0.1:7100\", tx_key: {}, rx_key: {}}}\nroute_keys:\n  - {{id: 1, key: {}}}\n  - {{id: 2, key: {}}}\nrules:\n  - {{session: 1, label: 5, deliver: [fd00::{peer}/128], key: 2}}\nroutes:\n  - {{prefix: fd00::{peer}/128, session: 1, label: 5, key: 1}}\n",
                k(tx),
                k(rx),
                k(100 + me),
                k(100 + peer)
            );
            let st = Static::parse(&y, std::path::Path::new("t.yaml"), 1).unwrap();
            let cell = Arc::new(FibCell::new(st.fib));
            (
                Shard::new(0, cell.clone(), Arc::new(NodeStats::new(1))),
                cell,
            )
        };
        let rekey = |cell: &FibCell, tx: u8, rx: u8| {
            let key = |n: u8| -> [u8; 32] {
                std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(n))
            };
            cell.update(|f| {
                let old = f.sessions[&1].clone();
                let mut c = (*old).clone();
                c.tx_key = key(tx);
                c.rx_key = key(rx);
                c.prev_rx_key = if old.rx_key != c.rx_key {
                    Some(old.rx_key)
                } else {
                    old.prev_rx_key
                };
                f.sessions.insert(1, Arc::new(c));
            });
        };
        let (mut a, ca) = node(1, 2, 1, 2);
        let (mut b, cb) = node(2, 1, 2, 1);
        let mut buf = vec![0u8; BUF_SIZE];
        let send = |from: &mut Shard, to: &mut Shard, src: u8, dst: u8| -> (Verdict, u64) {
            let mut buf = vec![0u8; BUF_SIZE];
            let n = v6_packet(&mut buf, src, dst, 50);
            let Verdict::Send { len, .. } = from.from_tun(&mut buf, n) else {
                panic!("not sent")
            };
            let counter = crate::wire::parse_header(&buf[..len]).unwrap().counter;
            (to.from_udp(&mut buf, len), counter)
        };
        for _ in 0..3 {
            assert!(matches!(
                send(&mut a, &mut b, 1, 2).0,
                Verdict::Deliver { .. }
            ));
            assert!(matches!(
                send(&mut b, &mut a, 2, 1).0,
                Verdict::Deliver { .. }
            ));
        }
        // A frame b sealed with the old key, still in flight during the rekey.
        let n = v6_packet(&mut buf, 2, 1, 50);
        let Verdict::Send { len: late_len, .. } = b.from_tun(&mut buf, n) else {
            panic!()
        };
        let late = buf[..late_len].to_vec();
        // Step 1 at a: new receive key (b's new tx = 12), old send key.
        rekey(&ca, 1, 12);
        a.refresh();
        let (v, c) = send(&mut a, &mut b, 1, 2);
        assert!(matches!(v, Verdict::Deliver { .. }));
        assert_eq!(
            c & 0xff_ffff,
            3,
            "a's sequence continues under its unchanged key"
        );
        // Step 1 at b (responder): both keys new, previous receive key kept.
        rekey(&cb, 12, 11);
        b.refresh();
        // b now seals with 12, which a already accepts; a still seals with its old key 1, which
        // b accepts as its previous receive key.
        assert!(matches!(
            send(&mut b, &mut a, 2, 1).0,
            Verdict::Deliver { .. }
        ));
        assert!(matches!(
            send(&mut a, &mut b, 1, 2).0,
            Verdict::Deliver { .. }
        ));
        // Step 2 at a: new send key too.
        rekey(&ca, 11, 12);
        a.refresh();
        let (v, c) = send(&mut a, &mut b, 1, 2);
        assert!(matches!(v, Verdict::Deliver { .. }));
        assert_eq!(c & 0xff_ffff, 0, "a new key starts a new sequence");
        assert!(matches!(
            send(&mut b, &mut a, 2, 1).0,
            Verdict::Deliver { .. }
        ));
        // The frame sealed before the rekey still arrives, once.
        let mut f = late.clone();
        assert!(matches!(
            a.from_udp(&mut f, late_len),
            Verdict::Deliver { .. }
        ));
        let mut f = late;
        assert_eq!(
            a.from_udp(&mut f, late_len),
            Verdict::Drop(DropReason::Replay)
        );
    }

    proptest::proptest! {
        /// Any bytes from the network: a verdict, never a panic.
        #[test]
        fn garbage_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let (_, mut b) = pair();
            let mut buf = vec![0u8; BUF_SIZE];
            buf[..bytes.len()].copy_from_slice(&bytes);
            let v = b.from_udp(&mut buf, bytes.len());
            proptest::prop_assert!(matches!(v, Verdict::Drop(_)));
        }
    }
}
