//! Link-state database: acceptance rules, storage, ageing, and eviction when full.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::advert::Advert;
use super::types::NodeId;

/// Why an advert was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Signature is all zeros.
    Unsigned,
    /// Signature does not verify against the origin key.
    BadSignature,
    /// Sequence number older than the stored one.
    Stale,
    /// Same sequence number as the stored one (replay or flooding duplicate).
    Replay,
    /// Zero lifetime.
    BadLifetime,
    /// The database is full (entries or bytes) and nothing stored ranks below the advert
    /// (see [`Standing`]).
    TableFull,
}

/// Per-reason rejection counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    pub unsigned: u64,
    pub bad_signature: u64,
    pub stale: u64,
    pub replay: u64,
    pub bad_lifetime: u64,
    pub table_full: u64,
}

impl RejectCounts {
    fn bump(&mut self, r: Reject) {
        let c = match r {
            Reject::Unsigned => &mut self.unsigned,
            Reject::BadSignature => &mut self.bad_signature,
            Reject::Stale => &mut self.stale,
            Reject::Replay => &mut self.replay,
            Reject::BadLifetime => &mut self.bad_lifetime,
            Reject::TableFull => &mut self.table_full,
        };
        *c += 1;
    }
}

/// One stored advert.
#[derive(Clone, Debug)]
pub struct Entry {
    pub advert: Advert,
    /// Encoded `Msg::Advert` ready to flood (signature included).
    pub msg: Vec<u8>,
    pub received_ms: u64,
    pub expires_ms: u64,
    /// When the origin came into the table, as an order (kept over its refreshes, so a
    /// refresh does not make an entry look new).
    pub added: u64,
}

/// Where an entry stands when the table is full and an entry must go to make room; sorted
/// worst first. What lifts an entry needs the other end of a link to list it back, so keys
/// alone (free to make) buy only [`Standing::Unconfirmed`]: Sybils that claim links to each
/// other or to real nodes are confirmed only by nodes that list them, and anchored only when
/// such a chain reaches this node's own advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// No link of it is listed back by its other end: claims only.
    Unconfirmed,
    /// A link of it is listed back by its other end, but no chain of such links reaches this
    /// node.
    Confirmed,
    /// Reachable from this node's own advert over links both ends list: the nodes routes can
    /// use.
    Anchored,
    /// This node's own advert and its direct neighbours': never evicted.
    Protected,
}

/// How long a ranking of the entries ([`Lsdb`]'s eviction order) is used after the LSDB
/// changed before it is computed again. Computing it costs a lookup per link of every entry
/// (O(L log N), see [`Lsdb::rank`]: a million lookups and more at 100 000 entries), and in a
/// large mesh the LSDB changes many times a second (refreshes), so while the table is full
/// and new origins keep coming (a Sybil flood) it is computed once per this period. Within
/// it entries keep the standing they were ranked with and origins that came in meanwhile are
/// not evicted, which next to advert lifetimes of an hour changes little.
pub const RANKING_REFRESH_MS: u64 = 10_000;

/// The eviction order of the entries, computed when the table is full and a decision is due.
#[derive(Debug)]
struct Ranking {
    /// The LSDB version it was computed for, and when.
    version: u64,
    at_ms: u64,
    /// Origins reachable from this node over links both ends list.
    anchored: BTreeSet<NodeId>,
    /// Evictable entries, worst first: (standing, most recently added first, origin).
    order: Vec<(Standing, Reverse<u64>, NodeId)>,
    /// `order[..next]` is gone (evicted, expired or re-added since): not looked at again.
    next: usize,
}

/// The database.
#[derive(Debug)]
pub struct Lsdb {
    entries: BTreeMap<NodeId, Entry>,
    expiry: BTreeSet<(u64, NodeId)>,
    max_entries: usize,
    /// Memory the entries may take ([`entry_cost`] summed), and what they take now.
    max_bytes: usize,
    bytes: usize,
    max_lifetime_ms: u32,
    pub accepted: u64,
    pub expired: u64,
    /// Entries removed to make room for a better-standing advert (see [`Standing`]).
    pub evicted: u64,
    pub rejected: RejectCounts,
    /// Bumped on every change of content (insert, replace, expire, evict).
    pub version: u64,
    /// This node: its advert is never evicted, and anchors [`Standing::Anchored`].
    own: Option<NodeId>,
    /// This node's direct neighbours: their adverts are never evicted.
    neighbours: BTreeSet<NodeId>,
    /// Order given to the next new origin ([`Entry::added`]).
    next_added: u64,
    ranking: Option<Ranking>,
}

/// What an entry holds in memory, about: the encoded message, the decoded advert (about as
/// large) and the bookkeeping.
pub fn entry_cost(msg_len: usize) -> usize {
    2 * msg_len + 128
}

impl Lsdb {
    /// Memory bound of a new LSDB unless [`Lsdb::with_max_bytes`] says otherwise.
    pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

    /// The same LSDB with a memory bound of `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same LSDB kept by node `own` (whose advert is never evicted).
    pub fn with_own(mut self, own: NodeId) -> Self {
        self.own = Some(own);
        self
    }

    /// `nb` is (`up`) or is no longer a direct neighbour: a neighbour's advert is never
    /// evicted.
    pub fn set_neighbour(&mut self, nb: NodeId, up: bool) {
        if up {
            self.neighbours.insert(nb);
        } else {
            self.neighbours.remove(&nb);
        }
    }

    /// Memory its entries take now (as [`entry_cost`] counts it).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn new(max_entries: usize, max_lifetime_ms: u32) -> Self {
        Self {
            entries: BTreeMap::new(),
            expiry: BTreeSet::new(),
            max_entries,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            bytes: 0,
            max_lifetime_ms,
            accepted: 0,
            expired: 0,
            evicted: 0,
            rejected: RejectCounts::default(),
            version: 0,
            own: None,
            neighbours: BTreeSet::new(),
            next_added: 0,
            ranking: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get(&self, origin: &NodeId) -> Option<&Entry> {
        self.entries.get(origin)
    }
    pub fn advert(&self, origin: &NodeId) -> Option<&Advert> {
        self.entries.get(origin).map(|e| &e.advert)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Entry)> {
        self.entries.iter()
    }
    /// Earliest expiry time of any entry.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// Cheap checks (no signature work): what a new advert would be
    /// rejected for by sequence number alone.
    pub fn precheck(&self, adv: &Advert) -> Result<(), Reject> {
        if adv.is_unsigned() {
            return Err(Reject::Unsigned);
        }
        if adv.lifetime_ms == 0 {
            return Err(Reject::BadLifetime);
        }
        match self.entries.get(&adv.origin) {
            Some(e) if adv.seq < e.advert.seq => Err(Reject::Stale),
            Some(e) if adv.seq == e.advert.seq => Err(Reject::Replay),
            _ => Ok(()),
        }
    }

    /// Full acceptance check and insert. Cheap checks run first so stale
    /// and duplicate copies (the common case while flooding) cost no
    /// signature verification. When the advert does not fit (entries or bytes), entries
    /// standing below it are evicted to make room ([`Lsdb::make_room`]), else it is refused
    /// with [`Reject::TableFull`]. On success returns the evicted origins. Every rejection is
    /// counted by reason.
    pub fn offer(&mut self, now_ms: u64, adv: Advert, msg: Vec<u8>) -> Result<Vec<NodeId>, Reject> {
        let r = self.precheck(&adv).and_then(|()| {
            if !adv.verify() {
                return Err(Reject::BadSignature);
            }
            // Sybil adverts (keys cost nothing) must not grow the table past its bounds.
            if self.fits(&adv.origin, msg.len()) {
                if !self.entries.contains_key(&adv.origin) {
                    // Room for new origins: the ranking (memory of the order of the table's
                    // size) can go.
                    self.ranking = None;
                }
                Ok(Vec::new())
            } else {
                self.make_room(now_ms, &adv, msg.len())
            }
        });
        match r {
            Ok(victims) => {
                self.accepted += 1;
                for v in &victims {
                    self.remove(v);
                }
                self.evicted += victims.len() as u64;
                self.insert(now_ms, adv, msg);
                Ok(victims)
            }
            Err(e) => {
                self.rejected.bump(e);
                Err(e)
            }
        }
    }

    /// Whether `origin`'s advert of `msg_len` bytes fits without evicting anything.
    fn fits(&self, origin: &NodeId, msg_len: usize) -> bool {
        let old = self.entries.get(origin).map(|e| entry_cost(e.msg.len()));
        let count_ok = old.is_some() || self.entries.len() < self.max_entries;
        count_ok && self.bytes - old.unwrap_or(0) + entry_cost(msg_len) <= self.max_bytes
    }

    fn is_protected(&self, origin: &NodeId) -> bool {
        self.own == Some(*origin) || self.neighbours.contains(origin)
    }

    /// Where `adv` stands (stored or not) given the `anchored` set: a link of it counts when
    /// the advert at its other end lists it back. O(links x log entries).
    fn standing(&self, adv: &Advert, anchored: &BTreeSet<NodeId>) -> Standing {
        let origin = adv.origin;
        if self.is_protected(&origin) {
            return Standing::Protected;
        }
        let mut confirmed = false;
        for (nb, _) in &adv.links {
            if self
                .advert(nb)
                .is_some_and(|b| b.cost_to(&origin).is_some())
            {
                if anchored.contains(nb) {
                    return Standing::Anchored;
                }
                confirmed = true;
            }
        }
        if confirmed {
            Standing::Confirmed
        } else {
            Standing::Unconfirmed
        }
    }

    /// The eviction order of every entry. Cost: a walk from this node over links both ends
    /// list, and a look at every link of every entry, each a lookup of its other end and a
    /// binary search of that end's links: O(L log N) for L links over N entries (L <= N x
    /// `MAX_LINKS`), then a sort, O(N log N); memory O(N). Done only when the table is full and
    /// a decision is due, and at most once per [`RANKING_REFRESH_MS`] while the LSDB changes.
    fn rank(&self, now_ms: u64) -> Ranking {
        let mut anchored = BTreeSet::new();
        if let Some(own) = self.own.filter(|o| self.entries.contains_key(o)) {
            anchored.insert(own);
            let mut todo = vec![own];
            while let Some(u) = todo.pop() {
                let Some(a) = self.advert(&u) else { continue };
                for (v, _) in &a.links {
                    if !anchored.contains(v)
                        && self.advert(v).is_some_and(|b| b.cost_to(&u).is_some())
                    {
                        anchored.insert(*v);
                        todo.push(*v);
                    }
                }
            }
        }
        let mut order: Vec<_> = self
            .entries
            .iter()
            .map(|(o, e)| (self.standing(&e.advert, &anchored), Reverse(e.added), *o))
            .filter(|(s, _, _)| *s != Standing::Protected)
            .collect();
        order.sort_unstable();
        Ranking {
            version: self.version,
            at_ms: now_ms,
            anchored,
            order,
            next: 0,
        }
    }

    /// The entries to evict, worst first, so that `adv` (of `msg_len` bytes, signature
    /// checked) fits; `TableFull` unless every one of them stands strictly below it.
    ///
    /// Order, worst first: unanchored before anchored, unconfirmed before confirmed (see
    /// [`Standing`]); within a standing the origin that came in most recently goes first, and
    /// a newcomer never displaces an entry of its own standing. Not the one expiring soonest:
    /// the lifetime is the origin's to choose and refresh at will, so an attacker's entries
    /// would always expire last and honest ones be evicted, and equal newcomers would churn
    /// the table. Most recent first keeps what has been in the table longest (and stays
    /// there by being refreshed), so a flood in progress displaces only itself; and as a
    /// newcomer must stand strictly higher than what it evicts, fresh keys (unconfirmed) evict
    /// nothing at all. The own advert and the direct neighbours' are never evicted.
    ///
    /// Cost: the ranking ([`Lsdb::rank`]) when it is missing or out of date, then the
    /// newcomer's standing, O(links x log N), and a walk from the worst entry that skips what
    /// is gone for good (amortised O(1)).
    fn make_room(
        &mut self,
        now_ms: u64,
        adv: &Advert,
        msg_len: usize,
    ) -> Result<Vec<NodeId>, Reject> {
        let due = self.ranking.as_ref().is_none_or(|r| {
            r.version != self.version && now_ms >= r.at_ms.saturating_add(RANKING_REFRESH_MS)
        });
        let mut rk = match self.ranking.take() {
            Some(r) if !due => r,
            _ => self.rank(now_ms),
        };
        let newcomer = self.standing(adv, &rk.anchored);
        let old = self
            .entries
            .get(&adv.origin)
            .map(|e| entry_cost(e.msg.len()));
        let mut count = self.entries.len() + usize::from(old.is_none());
        let mut bytes = self.bytes - old.unwrap_or(0) + entry_cost(msg_len);
        let mut victims = Vec::new();
        let mut i = rk.next;
        let r = loop {
            if count <= self.max_entries && bytes <= self.max_bytes {
                break Ok(victims);
            }
            let Some(&(standing, Reverse(added), o)) = rk.order.get(i) else {
                break Err(Reject::TableFull);
            };
            i += 1;
            let Some(e) = self.entries.get(&o).filter(|e| e.added == added) else {
                // Gone since the ranking (or gone and back, with another place in it).
                if victims.is_empty() {
                    rk.next = i;
                }
                continue;
            };
            if self.is_protected(&o)
                || o == adv.origin
                || (adv.cost_to(&o).is_some() && e.advert.cost_to(&adv.origin).is_some())
            {
                // A neighbour now, the advert's own older copy, or an entry the newcomer
                // confirms (the two list each other: evicting it would take the newcomer's own
                // confirmation away).
                continue;
            }
            let cost = entry_cost(e.msg.len());
            if standing >= newcomer {
                break Err(Reject::TableFull);
            }
            victims.push(o);
            count -= 1;
            bytes -= cost;
        };
        self.ranking = Some(rk);
        r
    }

    fn remove(&mut self, origin: &NodeId) {
        if let Some(e) = self.entries.remove(origin) {
            self.expiry.remove(&(e.expires_ms, *origin));
            self.bytes -= entry_cost(e.msg.len());
            self.version += 1;
        }
    }

    /// Record a rejection decided outside `offer` (e.g. the node's own
    /// adverts coming back with a bad signature).
    pub fn count_reject(&mut self, r: Reject) {
        self.rejected.bump(r);
    }

    /// Insert without checks (used for the node's own advert).
    pub fn insert(&mut self, now_ms: u64, adv: Advert, msg: Vec<u8>) {
        let life = adv.lifetime_ms.min(self.max_lifetime_ms) as u64;
        let expires_ms = now_ms.saturating_add(life);
        let origin = adv.origin;
        self.bytes += entry_cost(msg.len());
        let added = match self.entries.get(&origin) {
            Some(e) => e.added,
            None => {
                self.next_added += 1;
                self.next_added
            }
        };
        if let Some(old) = self.entries.insert(
            origin,
            Entry {
                advert: adv,
                msg,
                received_ms: now_ms,
                expires_ms,
                added,
            },
        ) {
            self.expiry.remove(&(old.expires_ms, origin));
            self.bytes -= entry_cost(old.msg.len());
        }
        self.expiry.insert((expires_ms, origin));
        self.version += 1;
    }

    /// Remove every entry whose lifetime has run out; returns their origins.
    pub fn expire(&mut self, now_ms: u64) -> Vec<NodeId> {
        let mut gone = Vec::new();
        while let Some(&(t, origin)) = self.expiry.first() {
            if t > now_ms {
                break;
            }
            self.expiry.remove(&(t, origin));
            if let Some(e) = self.entries.remove(&origin) {
                self.bytes -= entry_cost(e.msg.len());
            }
            gone.push(origin);
        }
        if !gone.is_empty() {
            self.expired += gone.len() as u64;
            self.version += 1;
        }
        gone
    }

    /// Cost of the link u -> v if BOTH ends report it (two-way check): the larger of the two
    /// ends' claims, so neither end alone can make the link look cheaper than the other says.
    pub fn two_way_cost(&self, u: &NodeId, v: &NodeId) -> Option<u32> {
        let cu = self.advert(u)?.cost_to(v)?;
        let cv = self.advert(v)?.cost_to(u)?;
        Some(cu.max(cv))
    }
}

#[cfg(test)]
mod tests {
    use super::super::advert::{AdvertFlags, keypair_from_seed};
    use super::super::wire::Msg;
    use super::*;

    fn adv(seed: u8, seq: u64) -> Advert {
        let (kp, id) = keypair_from_seed(&[seed; 32]);
        Advert::new_signed(
            &kp,
            id,
            seq,
            10_000,
            vec![(NodeId([200; 32]), 5)],
            AdvertFlags::default(),
            &[],
        )
    }
    fn offer(db: &mut Lsdb, now: u64, a: Advert) -> Result<(), Reject> {
        let m = Msg::Advert(a.clone()).encode();
        db.offer(now, a, m).map(|_| ())
    }

    #[test]
    fn acceptance_and_rejections() {
        let mut db = Lsdb::new(100, 60_000);
        assert_eq!(offer(&mut db, 0, adv(1, 5)), Ok(()));
        assert_eq!(db.len(), 1);
        // replay: same seq
        assert_eq!(offer(&mut db, 1, adv(1, 5)), Err(Reject::Replay));
        // stale: older seq
        assert_eq!(offer(&mut db, 1, adv(1, 4)), Err(Reject::Stale));
        // forged: newer seq, content changed after signing
        let mut f = adv(1, 6);
        f.links[0].1 = 1;
        assert_eq!(offer(&mut db, 1, f), Err(Reject::BadSignature));
        // forged: signed by another key but claiming origin 1
        let mut f2 = adv(2, 7);
        f2.origin = adv(1, 1).origin;
        assert_eq!(offer(&mut db, 1, f2), Err(Reject::BadSignature));
        // unsigned
        let mut u = adv(1, 8);
        u.sig = [0; 64];
        assert_eq!(offer(&mut db, 1, u), Err(Reject::Unsigned));
        // newer valid one accepted
        assert_eq!(offer(&mut db, 2, adv(1, 9)), Ok(()));
        assert_eq!(db.advert(&adv(1, 1).origin).unwrap().seq, 9);
        let r = db.rejected;
        assert_eq!(
            (r.replay, r.stale, r.bad_signature, r.unsigned),
            (1, 1, 2, 1)
        );
        assert_eq!(db.accepted, 2);
    }

    #[test]
    fn ageing_and_capacity() {
        let mut db = Lsdb::new(2, 60_000);
        offer(&mut db, 0, adv(1, 1)).unwrap();
        offer(&mut db, 5_000, adv(2, 1)).unwrap();
        assert_eq!(offer(&mut db, 0, adv(3, 1)), Err(Reject::TableFull));
        assert_eq!(db.next_expiry(), Some(10_000));
        assert!(db.expire(9_999).is_empty());
        assert_eq!(db.expire(10_000).len(), 1);
        assert_eq!(db.len(), 1);
        assert_eq!(db.expire(20_000).len(), 1);
        assert!(db.is_empty());
        assert_eq!(db.expired, 2);
    }

    #[test]
    fn two_way() {
        let (ka, a) = keypair_from_seed(&[1; 32]);
        let (kb, b) = keypair_from_seed(&[2; 32]);
        let mut db = Lsdb::new(10, 60_000);
        let aa = Advert::new_signed(&ka, a, 1, 1000, vec![(b, 10)], AdvertFlags::default(), &[]);
        offer(&mut db, 0, aa).unwrap();
        assert_eq!(db.two_way_cost(&a, &b), None);
        let bb = Advert::new_signed(&kb, b, 1, 1000, vec![(a, 30)], AdvertFlags::default(), &[]);
        offer(&mut db, 0, bb).unwrap();
        // a claims 10, b claims 30: the link costs 30 both ways.
        assert_eq!(db.two_way_cost(&a, &b), Some(30));
        assert_eq!(db.two_way_cost(&b, &a), Some(30));
    }

    /// A signed advert of node `seed` listing `links`.
    fn node(seed: u8, seq: u64, links: &[NodeId]) -> Advert {
        let (kp, id) = keypair_from_seed(&[seed; 32]);
        let l = links.iter().map(|n| (*n, 10)).collect();
        Advert::new_signed(&kp, id, seq, 10_000, l, AdvertFlags::default(), &[])
    }
    fn id(seed: u8) -> NodeId {
        keypair_from_seed(&[seed; 32]).1
    }
    fn cost(a: &Advert) -> usize {
        entry_cost(Msg::Advert(a.clone()).encode().len())
    }
    fn offer_ev(db: &mut Lsdb, now: u64, a: Advert) -> Result<Vec<NodeId>, Reject> {
        let m = Msg::Advert(a.clone()).encode();
        db.offer(now, a, m)
    }
    fn own_insert(db: &mut Lsdb, a: Advert) {
        let m = Msg::Advert(a.clone()).encode();
        db.insert(0, a, m);
    }

    /// Own node 1 and its neighbour 2 listing each other; 2 also lists 3 (not there yet).
    /// Sybils 100.. claim links to 2, which does not list them.
    fn with_sybils(max_entries: usize, sybils: u8) -> Lsdb {
        let mut db = Lsdb::new(max_entries, 60_000).with_own(id(1));
        own_insert(&mut db, node(1, 1, &[id(2)]));
        offer_ev(&mut db, 0, node(2, 1, &[id(1), id(3)])).unwrap();
        for s in 0..sybils {
            offer_ev(&mut db, 0, node(100 + s, 1, &[id(2), id(101 + s)])).unwrap();
        }
        db
    }

    #[test]
    fn a_table_full_of_sybils_takes_an_anchored_newcomer_evicting_the_latest_sybil() {
        let mut db = with_sybils(5, 3);
        assert_eq!(db.len(), 5);
        // Another Sybil is refused: it stands no better than those stored.
        assert_eq!(
            offer_ev(&mut db, 1, node(150, 1, &[id(2)])),
            Err(Reject::TableFull)
        );
        assert_eq!(db.rejected.table_full, 1);
        // 3 lists 2, and 2 lists 3: anchored through 2 (which 1 lists, and which lists 1).
        assert_eq!(
            offer_ev(&mut db, 2, node(3, 1, &[id(2)])),
            Ok(vec![id(102)])
        );
        assert_eq!(db.len(), 5);
        assert_eq!(db.evicted, 1);
        assert!(db.get(&id(3)).is_some());
        assert!(db.get(&id(100)).is_some() && db.get(&id(101)).is_some());
        assert!(db.get(&id(102)).is_none());
        // A confirmed but unanchored newcomer (4 and 5 list each other) still beats a Sybil.
        let mut db = with_sybils(6, 3);
        offer_ev(&mut db, 0, node(4, 1, &[id(5)])).unwrap();
        assert_eq!(
            offer_ev(&mut db, 1, node(5, 1, &[id(4)])),
            Ok(vec![id(102)])
        );
    }

    #[test]
    fn a_sybil_newcomer_is_refused_when_every_entry_is_anchored() {
        let mut db = Lsdb::new(4, 60_000).with_own(id(1));
        own_insert(&mut db, node(1, 1, &[id(2)]));
        offer_ev(&mut db, 0, node(2, 1, &[id(1), id(3), id(4)])).unwrap();
        offer_ev(&mut db, 0, node(3, 1, &[id(2)])).unwrap();
        offer_ev(&mut db, 0, node(4, 1, &[id(2)])).unwrap();
        // Claims links to real (anchored) nodes, none of which lists it.
        assert_eq!(
            offer_ev(&mut db, 1, node(100, 1, &[id(2), id(3), id(4)])),
            Err(Reject::TableFull)
        );
        // A new, anchored node does not displace anchored entries either.
        let mut db2 = Lsdb::new(4, 60_000).with_own(id(1));
        own_insert(&mut db2, node(1, 1, &[id(2)]));
        offer_ev(&mut db2, 0, node(2, 1, &[id(1), id(3), id(4), id(5)])).unwrap();
        offer_ev(&mut db2, 0, node(3, 1, &[id(2)])).unwrap();
        offer_ev(&mut db2, 0, node(4, 1, &[id(2)])).unwrap();
        assert_eq!(
            offer_ev(&mut db2, 1, node(5, 1, &[id(2)])),
            Err(Reject::TableFull)
        );
        assert_eq!((db.len(), db.evicted, db.rejected.table_full), (4, 0, 1));
        assert_eq!((db2.len(), db2.evicted), (4, 0));
        // Refreshes of stored origins still go in.
        assert_eq!(offer_ev(&mut db, 2, node(3, 2, &[id(2)])), Ok(vec![]));
    }

    #[test]
    fn the_own_and_the_neighbours_adverts_are_never_evicted() {
        // Decisions a ranking period apart, each on a fresh ranking.
        const T: u64 = RANKING_REFRESH_MS;
        let mut db = Lsdb::new(3, 60_000).with_own(id(1));
        own_insert(&mut db, node(1, 1, &[id(2), id(3), id(4)]));
        // A Sybil, then neighbour 2, whose advert lists nothing back (unconfirmed, and the
        // latest in): still not evicted, the Sybil goes.
        offer_ev(&mut db, 0, node(100, 1, &[id(1)])).unwrap();
        db.set_neighbour(id(2), true);
        offer_ev(&mut db, 0, node(2, 1, &[])).unwrap();
        assert_eq!(
            offer_ev(&mut db, T, node(3, 1, &[id(1)])),
            Ok(vec![id(100)])
        );
        // Table: own, neighbour 2, anchored 3. Another anchored node is refused...
        assert_eq!(
            offer_ev(&mut db, 2 * T, node(4, 1, &[id(1)])),
            Err(Reject::TableFull)
        );
        // ...a neighbour's advert is taken in the place of 3...
        db.set_neighbour(id(5), true);
        assert_eq!(offer_ev(&mut db, 3 * T, node(5, 1, &[])), Ok(vec![id(3)]));
        // ...and with only the own and neighbours' adverts left nothing goes.
        db.set_neighbour(id(6), true);
        assert_eq!(
            offer_ev(&mut db, 4 * T, node(6, 1, &[id(1)])),
            Err(Reject::TableFull)
        );
        assert!(db.get(&id(1)).is_some() && db.get(&id(2)).is_some());
        assert!(db.get(&id(5)).is_some());
        assert_eq!((db.len(), db.evicted), (3, 2));
    }

    #[test]
    fn a_table_full_by_bytes_evicts_as_many_sybils_as_the_newcomer_needs() {
        let own = node(1, 1, &[id(2)]);
        let nb = node(2, 1, &[id(1), id(3)]);
        let sybils: Vec<Advert> = (0..3)
            .map(|s| node(100 + s, 1, &[id(2), id(101 + s)]))
            .collect();
        // 3 is anchored through 2, and claims 3 more links: larger than one Sybil, smaller
        // than two.
        let newcomer = node(3, 1, &[id(2), id(50), id(51), id(52)]);
        assert!(cost(&newcomer) > cost(&sybils[0]) && cost(&newcomer) <= 2 * cost(&sybils[0]));
        let max = cost(&own) + cost(&nb) + sybils.iter().map(cost).sum::<usize>();
        let mut db = Lsdb::new(100, 60_000).with_own(id(1)).with_max_bytes(max);
        own_insert(&mut db, own);
        offer_ev(&mut db, 0, nb).unwrap();
        for s in sybils {
            offer_ev(&mut db, 0, s).unwrap();
        }
        assert_eq!(db.bytes(), max);
        assert_eq!(
            offer_ev(&mut db, 1, node(150, 1, &[id(2)])),
            Err(Reject::TableFull)
        );
        assert_eq!(offer_ev(&mut db, 1, newcomer), Ok(vec![id(102), id(101)]));
        assert!(db.bytes() <= max);
        assert!(db.get(&id(100)).is_some() && db.get(&id(3)).is_some());
        assert_eq!((db.len(), db.evicted), (4, 2));
    }

    #[test]
    fn the_ranking_is_kept_for_a_while_and_an_evicted_origin_may_come_back() {
        let mut db = with_sybils(5, 3);
        // Two anchored newcomers in a row use one ranking: the second Sybil goes next.
        let mut db_nb = node(2, 2, &[id(1), id(3), id(4)]);
        offer_ev(&mut db, 0, db_nb.clone()).unwrap();
        assert_eq!(
            offer_ev(&mut db, 1, node(3, 1, &[id(2)])),
            Ok(vec![id(102)])
        );
        assert_eq!(
            offer_ev(&mut db, 2, node(4, 1, &[id(2)])),
            Ok(vec![id(101)])
        );
        assert_eq!(db.ranking.as_ref().map(|r| r.at_ms), Some(1));
        // After RANKING_REFRESH_MS a change makes it computed again.
        db_nb = node(2, 3, &[id(1), id(3), id(4), id(102)]);
        offer_ev(&mut db, 3, db_nb).unwrap();
        let t = 1 + RANKING_REFRESH_MS;
        // 102 is now listed back by 2: confirmed, and anchored, above Sybil 100.
        assert_eq!(
            offer_ev(&mut db, t, node(102, 2, &[id(2), id(103)])),
            Ok(vec![id(100)])
        );
        assert_eq!(db.ranking.as_ref().map(|r| r.at_ms), Some(t));
        assert_eq!(db.evicted, 3);
    }
}
