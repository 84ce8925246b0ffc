//! Link-state database: acceptance rules, storage and ageing.

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
    /// The database is full and the origin is new.
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
    pub rejected: RejectCounts,
    /// Bumped on every change of content (insert, replace, expire).
    pub version: u64,
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
            rejected: RejectCounts::default(),
            version: 0,
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
            Some(_) => Ok(()),
            None if self.entries.len() >= self.max_entries => Err(Reject::TableFull),
            None => Ok(()),
        }
    }

    /// Full acceptance check and insert. Cheap checks run first so stale
    /// and duplicate copies (the common case while flooding) cost no
    /// signature verification. On success returns the replaced entry, if
    /// any. Every rejection is counted by reason.
    pub fn offer(&mut self, now_ms: u64, adv: Advert, msg: Vec<u8>) -> Result<(), Reject> {
        let old = self
            .entries
            .get(&adv.origin)
            .map_or(0, |e| entry_cost(e.msg.len()));
        let r = self.precheck(&adv).and_then(|()| {
            // Sybil adverts (keys cost nothing) must not grow the table past its memory bound.
            if self.bytes - old + entry_cost(msg.len()) > self.max_bytes {
                return Err(Reject::TableFull);
            }
            if adv.verify() {
                Ok(())
            } else {
                Err(Reject::BadSignature)
            }
        });
        match r {
            Ok(()) => {
                self.accepted += 1;
                self.insert(now_ms, adv, msg);
                Ok(())
            }
            Err(e) => {
                self.rejected.bump(e);
                Err(e)
            }
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
        if let Some(old) = self.entries.insert(
            origin,
            Entry {
                advert: adv,
                msg,
                received_ms: now_ms,
                expires_ms,
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
        db.offer(now, a, m)
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
}
