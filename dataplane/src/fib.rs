//! The forwarding information base: sessions, label rules and prefix routes, published as an
//! immutable snapshot that shards pick up between batches (no lock on the packet path, no pause
//! while it changes).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use netbase::Prefix;

use crate::stats::Traffic;
use crate::wire::Cipher;

/// A session index: the number a receiver puts in frames' receiver field to find its keys.
pub type SessionId = u32;
/// A route label, meaningful per (incoming session) at each hop.
pub type Label = u32;

/// Multiply-shift hashing for small integer keys: the keys are ours (installed by the
/// controlplane), so a keyed hash buys nothing and SipHash costs ~20 ns per lookup.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// HashMap with [`IntHasher`].
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Longest-prefix match: one hash table per prefix length in use, probed from the longest.
/// Overlay routes are nearly all /128 (and VPN ones a handful of lengths), so a lookup is a few
/// hash probes whatever the table size.
#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    v4: Vec<(u8, IntMap<u128, V>)>,
    v6: Vec<(u8, IntMap<u128, V>)>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            v4: Vec::new(),
            v6: Vec::new(),
            len: 0,
        }
    }
}

impl<V> PrefixTable<V> {
    fn family(&mut self, v4: bool) -> &mut Vec<(u8, IntMap<u128, V>)> {
        if v4 { &mut self.v4 } else { &mut self.v6 }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, p: Prefix, v: V) -> Option<V> {
        let (bits, v4) = Prefix::key(p.addr());
        let fam = self.family(v4);
        let i = match fam.iter().position(|(l, _)| *l == p.len()) {
            Some(i) => i,
            None => {
                fam.push((p.len(), IntMap::default()));
                // Longest first.
                fam.sort_by_key(|e| std::cmp::Reverse(e.0));
                fam.iter().position(|(l, _)| *l == p.len()).unwrap_or(0)
            }
        };
        let old = fam[i].1.insert(bits, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes a prefix.
    pub fn remove(&mut self, p: &Prefix) -> Option<V> {
        let (bits, v4) = Prefix::key(p.addr());
        let fam = self.family(v4);
        let i = fam.iter().position(|(l, _)| *l == p.len())?;
        let old = fam[i].1.remove(&bits);
        if fam[i].1.is_empty() {
            fam.remove(i);
        }
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value of the longest prefix containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        let (bits, v4) = Prefix::key(ip);
        let (fam, max) = if v4 { (&self.v4, 32) } else { (&self.v6, 128) };
        fam.iter()
            .find_map(|(len, t)| t.get(&Prefix::mask_key(bits, *len, max)))
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, &V)> {
        let v4 = self.v4.iter().map(|e| (true, e));
        let v6 = self.v6.iter().map(|e| (false, e));
        // Every key was inserted from a prefix, so `from_key` gives it back.
        v4.chain(v6).flat_map(|(is_v4, (len, t))| {
            t.iter()
                .filter_map(move |(k, v)| Some((Prefix::from_key(*k, is_v4, *len)?, v)))
        })
    }
}

/// Keys and addressing of one session (both directions).
#[derive(Clone)]
pub struct SessionCfg {
    /// Our index: frames from the peer carry it.
    pub id: SessionId,
    /// The peer's index for this session: our frames carry it.
    pub peer_id: SessionId,
    /// The peer's base UDP endpoint (its shard `i` listens on port + i).
    pub peer: SocketAddr,
    /// How many shards (ports) the peer has.
    pub peer_shards: u16,
    /// AEAD.
    pub cipher: Cipher,
    /// Key we seal with.
    pub tx_key: [u8; 32],
    /// Key we open with.
    pub rx_key: [u8; 32],
    /// The key we opened with before the last rekey, still accepted so frames the peer sealed
    /// before it switched are not lost.
    pub prev_rx_key: Option<[u8; 32]>,
    /// Traffic on this session (rx = frames from the peer, tx = frames to it).
    pub traffic: Arc<Traffic>,
    /// Fast failure detection by probes ([`crate::liveness`]); `None`: not watched.
    pub liveness: Option<crate::liveness::Liveness>,
}

impl std::fmt::Debug for SessionCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("SessionCfg")
            .field("id", &self.id)
            .field("peer_id", &self.peer_id)
            .field("peer", &self.peer)
            .field("peer_shards", &self.peer_shards)
            .field("cipher", &self.cipher)
            .field("liveness", &self.liveness)
            .finish_non_exhaustive()
    }
}

/// A route key's index: the controlplane names each route direction's key once, for the
/// route's whole life, and never reuses a name while it runs.
pub type KeyId = u64;

/// One direction of a route's end-to-end key, as the route's ends hold it (a relay never has
/// one). Its sealing counters live in the shards for as long as the table holds the key.
#[derive(Clone)]
pub struct RouteKeyCfg {
    /// AEAD the route's handshake chose.
    pub cipher: Cipher,
    /// The key.
    pub key: [u8; 32],
    /// Traffic sealed (tx) or opened (rx) with this key.
    pub traffic: Arc<Traffic>,
}

impl std::fmt::Debug for RouteKeyCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("RouteKeyCfg")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// What to do with a frame that arrived on (session, label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Relay: check the hop MAC, re-MAC for `session` with `label` (the payload is not touched).
    Forward {
        /// Outgoing session.
        session: SessionId,
        /// Label on the next hop.
        label: Label,
    },
    /// This router is the egress: write the inner packet to sky0 if its source is allowed.
    Deliver {
        /// Sources the route's origin may use (its overlay address, its VPN address).
        sources: Vec<Prefix>,
        /// The route key the packet must open with (the route's handshake proved its origin).
        key: KeyId,
    },
}

/// An ingress mapping: packets to a prefix enter route `label` on `session`.
#[derive(Debug, Clone)]
pub struct Route {
    /// First-hop session.
    pub session: SessionId,
    /// Label on the first hop.
    pub label: Label,
    /// The route key packets are sealed with.
    pub key: KeyId,
    /// Kept even when idle.
    pub keepalive: bool,
    /// Traffic that entered this route here (tx side).
    pub traffic: Arc<Traffic>,
}

/// One immutable version of the tables.
#[derive(Clone, Default)]
pub struct Fib {
    /// Sessions by our index.
    pub sessions: IntMap<SessionId, Arc<SessionCfg>>,
    /// Route keys (of routes this node is an end of) by id.
    pub route_keys: IntMap<KeyId, Arc<RouteKeyCfg>>,
    /// Label rules by (incoming session, label).
    pub rules: IntMap<(SessionId, Label), Action>,
    /// Destination prefix -> route.
    pub routes: PrefixTable<Route>,
    /// Idle routes (not keepalive) older than this are removed by the sweeper.
    pub route_idle: Option<Duration>,
}

impl Fib {
    /// Checks references: every rule and route names an existing session, and every deliver
    /// rule and route an existing route key. No rule or route uses a label the dataplane keeps
    /// for itself ([`crate::wire::LABEL_PROBE`]: such frames would be taken for probes and
    /// refused on the data ports).
    pub fn validate(&self) -> Result<(), String> {
        let reserved = |l: Label| l == crate::wire::LABEL_PROBE;
        for ((s, l), a) in &self.rules {
            if reserved(*l) || matches!(a, Action::Forward { label, .. } if reserved(*label)) {
                return Err(format!(
                    "rule ({s}, {l}) uses label {}, reserved for liveness probes",
                    crate::wire::LABEL_PROBE
                ));
            }
            if !self.sessions.contains_key(s) {
                return Err(format!(
                    "rule ({s}, {l}) names unknown incoming session {s}"
                ));
            }
            match a {
                Action::Forward { session, .. } if !self.sessions.contains_key(session) => {
                    return Err(format!(
                        "rule ({s}, {l}) forwards to unknown session {session}"
                    ));
                }
                Action::Deliver { key, .. } if !self.route_keys.contains_key(key) => {
                    return Err(format!("rule ({s}, {l}) names unknown route key {key}"));
                }
                _ => {}
            }
        }
        for (p, r) in self.routes.iter() {
            if reserved(r.label) {
                return Err(format!(
                    "route {p} uses label {}, reserved for liveness probes",
                    r.label
                ));
            }
            if !self.sessions.contains_key(&r.session) {
                return Err(format!("route {p} names unknown session {}", r.session));
            }
            if !self.route_keys.contains_key(&r.key) {
                return Err(format!("route {p} names unknown route key {}", r.key));
            }
        }
        Ok(())
    }
}

/// Where the current snapshot lives. Writers replace it whole; readers check a generation
/// number (one relaxed load per batch) and re-take the Arc only when it changed.
pub struct FibCell {
    current: Mutex<Arc<Fib>>,
    generation: AtomicU64,
}

impl FibCell {
    /// Starts with `fib`.
    pub fn new(fib: Fib) -> FibCell {
        FibCell {
            current: Mutex::new(Arc::new(fib)),
            generation: AtomicU64::new(1),
        }
    }

    /// Replaces the snapshot.
    pub fn publish(&self, fib: Fib) {
        let mut g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *g = Arc::new(fib);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Applies `f` to a copy of the current tables and publishes the result, atomically with
    /// respect to other updates.
    pub fn update<R>(&self, f: impl FnOnce(&mut Fib) -> R) -> R {
        let mut g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (**g).clone();
        let r = f(&mut next);
        *g = Arc::new(next);
        self.generation.fetch_add(1, Ordering::Release);
        r
    }

    /// The current generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot and its generation.
    pub fn load(&self) -> (Arc<Fib>, u64) {
        let g = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (g.clone(), self.generation.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTable::default();
        t.insert(p("10.0.0.0/8"), 1);
        t.insert(p("10.1.0.0/16"), 2);
        t.insert(p("0.0.0.0/0"), 0);
        t.insert(p("fd00::/8"), 6);
        t.insert(p("fd00::5/128"), 7);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&2));
        assert_eq!(t.lookup(ip("10.2.2.3")), Some(&1));
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(&0));
        assert_eq!(t.lookup(ip("fd00::5")), Some(&7));
        assert_eq!(t.lookup(ip("fd00::6")), Some(&6));
        assert_eq!(t.lookup(ip("fe80::1")), None);
        assert_eq!(t.len(), 5);
        assert_eq!(t.remove(&p("10.1.0.0/16")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&1));
        assert_eq!(t.iter().count(), 4);
    }

    #[test]
    fn prefix_parsing() {
        assert_eq!(p("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("fd00::1").len(), 128);
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense/3".parse::<Prefix>().is_err());
        assert!(p("10.0.0.0/8").contains("10.9.9.9".parse().unwrap()));
        assert!(!p("10.0.0.0/8").contains("fd00::1".parse().unwrap()));
    }

    proptest! {
        /// The table agrees with a linear scan for random prefixes and addresses.
        #[test]
        fn matches_linear_scan(
            entries in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut t = PrefixTable::default();
            let mut list: Vec<(Prefix, usize)> = Vec::new();
            for (i, (a, l)) in entries.iter().enumerate() {
                let pf = Prefix::new(IpAddr::V4((*a).into()), *l).unwrap();
                t.insert(pf, i);
                list.retain(|(q, _)| *q != pf);
                list.push((pf, i));
            }
            for a in probes {
                let ip = IpAddr::V4(a.into());
                let want = list.iter().filter(|(q, _)| q.contains(ip)).max_by_key(|(q, _)| q.len()).map(|(_, v)| v);
                prop_assert_eq!(t.lookup(ip), want);
            }
        }
    }
}
