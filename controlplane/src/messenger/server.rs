//! The messenger server, sans-IO: the caller authenticates clients (Noise), tells the server who
//! is connected, feeds it each request with the current time, and sends what it returns.
//!
//! It holds signed records with a TTL, answers lookups and service queries, relays small
//! messages between connected clients, and rejects (and counts, by [`Reject`] reason) anything
//! malformed, forged, unsigned, stale, replayed or over its rate limits. Nothing a client sends
//! can make it panic.

use super::record::Record;
use super::wire::{MAX_QUERY_RESULTS, MAX_RELAY, Msg, Reject};
use crate::identity::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Registrations per second per client (token bucket refill).
    pub register_per_s: u32,
    /// Registration burst per client.
    pub register_burst: u32,
    /// Requests of any kind per second per client.
    pub request_per_s: u32,
    /// Request burst per client.
    pub request_burst: u32,
    /// Longest TTL a record may ask for.
    pub max_ttl_ms: u32,
    /// Most records held.
    pub max_records: usize,
    /// How long the last seq of a key is remembered after its record expires (so an old
    /// record cannot be re-registered after expiry).
    pub seq_memory_ms: u64,
    /// Records one client address (an IPv4 address, an IPv6 /64) may hold: keys cost nothing
    /// to make, addresses do, so one host cannot fill the server (or a service's answers)
    /// with keys of its own. Routers behind one NAT share an address: keep it well above one.
    pub max_records_per_source: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            register_per_s: 5,
            register_burst: 10,
            request_per_s: 100,
            request_burst: 200,
            max_ttl_ms: 3_600_000,
            max_records: 100_000,
            seq_memory_ms: 24 * 3_600_000,
            max_records_per_source: 64,
        }
    }
}

/// What the server has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Requests received (including malformed ones).
    pub requests: u64,
    /// Records accepted.
    pub registered: u64,
    /// Lookups answered with a record.
    pub found: u64,
    /// Lookups answered with NotFound.
    pub not_found: u64,
    /// Queries answered.
    pub queries: u64,
    /// Messages relayed.
    pub relayed: u64,
    /// Records dropped at the end of their TTL.
    pub expired: u64,
    rejected: [u64; Reject::ALL.len()],
}

impl ServerCounters {
    /// Requests rejected for `reason`.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected.get(reason.index()).copied().unwrap_or(0)
    }

    /// All rejected requests.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

struct Entry {
    record: Record,
    expires_at: u64,
    /// The address it was registered from (`None`: unknown, not capped).
    source: Option<IpAddr>,
}

/// What a source address counts as: IPv4 addresses one by one, IPv6 by /64 (one host usually
/// has a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// A token bucket in thousandths of a token.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    at: u64,
}

impl Bucket {
    fn level(&self, now: u64, per_s: u32, burst: u32) -> u64 {
        let cap = u64::from(burst) * 1000;
        let refill = now.saturating_sub(self.at).saturating_mul(u64::from(per_s));
        self.milli.saturating_add(refill).min(cap)
    }

    fn take(&mut self, now: u64, per_s: u32, burst: u32) -> bool {
        self.milli = self.level(now, per_s, burst);
        self.at = self.at.max(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

fn take(map: &mut HashMap<NodeId, Bucket>, who: NodeId, now: u64, per_s: u32, burst: u32) -> bool {
    map.entry(who)
        .or_insert(Bucket {
            milli: u64::from(burst) * 1000,
            at: now,
        })
        .take(now, per_s, burst)
}

/// The sans-IO messenger server.
pub struct MessengerServer {
    cfg: ServerConfig,
    records: BTreeMap<NodeId, Entry>,
    by_kind: HashMap<String, BTreeSet<NodeId>>,
    /// Highest seq accepted per key, and when to forget it.
    seqs: HashMap<NodeId, (u64, u64)>,
    /// Connected clients (a count, as one key may briefly have two connections).
    connected: HashMap<NodeId, u32>,
    reg_buckets: HashMap<NodeId, Bucket>,
    req_buckets: HashMap<NodeId, Bucket>,
    /// Where each connected client comes from (as [`source_key`]).
    sources: HashMap<NodeId, IpAddr>,
    /// Records held per source.
    per_source: HashMap<IpAddr, usize>,
    counters: ServerCounters,
}

impl MessengerServer {
    /// An empty server.
    pub fn new(cfg: ServerConfig) -> Self {
        MessengerServer {
            cfg,
            records: BTreeMap::new(),
            by_kind: HashMap::new(),
            seqs: HashMap::new(),
            connected: HashMap::new(),
            reg_buckets: HashMap::new(),
            req_buckets: HashMap::new(),
            sources: HashMap::new(),
            per_source: HashMap::new(),
            counters: ServerCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }

    /// The live record of `pk`, if any.
    pub fn record(&self, pk: &NodeId, now_ms: u64) -> Option<&Record> {
        self.records
            .get(pk)
            .filter(|e| e.expires_at > now_ms)
            .map(|e| &e.record)
    }

    /// How many records are held (including expired ones not yet ticked away).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An authenticated client connected (from an address the caller does not know).
    pub fn connect(&mut self, pk: NodeId) {
        *self.connected.entry(pk).or_insert(0) += 1;
    }

    /// An authenticated client connected from `ip`: its records count against that address's
    /// [`ServerConfig::max_records_per_source`].
    pub fn connect_from(&mut self, pk: NodeId, ip: IpAddr) {
        self.connect(pk);
        self.sources.insert(pk, source_key(ip));
    }

    /// One of a client's connections closed.
    pub fn disconnect(&mut self, pk: NodeId) {
        if let Some(n) = self.connected.get_mut(&pk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.connected.remove(&pk);
                self.sources.remove(&pk);
            }
        }
    }

    /// How many clients (keys) are connected.
    pub fn clients(&self) -> usize {
        self.connected.len()
    }

    /// Whether `pk` has a connection.
    pub fn is_connected(&self, pk: &NodeId) -> bool {
        self.connected.contains_key(pk)
    }

    fn reject(
        &mut self,
        to: NodeId,
        code: Reject,
        subject: Option<NodeId>,
    ) -> Vec<(NodeId, Vec<u8>)> {
        if let Some(c) = self.counters.rejected.get_mut(code.index()) {
            *c += 1;
        }
        vec![(to, Msg::Error { code, subject }.encode())]
    }

    /// Handles one request from the authenticated client `from`; returns the messages to send
    /// (answers to `from`, relays to their targets).
    pub fn handle(&mut self, now_ms: u64, from: NodeId, req: &[u8]) -> Vec<(NodeId, Vec<u8>)> {
        self.counters.requests += 1;
        let msg = match Msg::decode(req) {
            Ok(m) => m,
            Err(_) => return self.reject(from, Reject::Malformed, None),
        };
        let subject = match &msg {
            Msg::Register(r) => Some(r.pk),
            Msg::Lookup { pk } => Some(*pk),
            Msg::Relay { to, .. } => Some(*to),
            _ => None,
        };
        let (per_s, burst) = (self.cfg.request_per_s, self.cfg.request_burst);
        if !take(&mut self.req_buckets, from, now_ms, per_s, burst) {
            return self.reject(from, Reject::RateLimited, subject);
        }
        match msg {
            Msg::Register(rec) => self.register(now_ms, from, rec),
            Msg::Lookup { pk } => {
                let m = match self.record(&pk, now_ms).cloned() {
                    Some(r) => {
                        self.counters.found += 1;
                        Msg::Found(r)
                    }
                    None => {
                        self.counters.not_found += 1;
                        Msg::NotFound { pk }
                    }
                };
                vec![(from, m.encode())]
            }
            Msg::Query { kind } => {
                self.counters.queries += 1;
                let mut records = Vec::new();
                let mut truncated = false;
                // A fair sample: each answer starts at another place of the key-ordered set
                // (a key ground to sort low gets no head start), wrapping around.
                let set: Vec<&NodeId> = self.by_kind.get(&kind).into_iter().flatten().collect();
                let start = if set.is_empty() {
                    0
                } else {
                    (self.counters.queries as usize) % set.len()
                };
                for pk in set[start..].iter().chain(set[..start].iter()) {
                    if let Some(e) = self.records.get(*pk).filter(|e| e.expires_at > now_ms) {
                        if records.len() == MAX_QUERY_RESULTS {
                            truncated = true;
                            break;
                        }
                        records.push(e.record.clone());
                    }
                }
                let m = Msg::Services {
                    kind,
                    records,
                    truncated,
                };
                vec![(from, m.encode())]
            }
            Msg::Relay { to, bytes } => {
                if bytes.len() > MAX_RELAY {
                    return self.reject(from, Reject::TooLarge, Some(to));
                }
                if !self.is_connected(&to) {
                    return self.reject(from, Reject::Unreachable, Some(to));
                }
                self.counters.relayed += 1;
                vec![(to, Msg::Relayed { from, bytes }.encode())]
            }
            _ => self.reject(from, Reject::Unexpected, None),
        }
    }

    fn register(&mut self, now: u64, from: NodeId, rec: Record) -> Vec<(NodeId, Vec<u8>)> {
        let pk = rec.pk;
        let (per_s, burst) = (self.cfg.register_per_s, self.cfg.register_burst);
        if !take(&mut self.reg_buckets, from, now, per_s, burst) {
            return self.reject(from, Reject::RateLimited, Some(pk));
        }
        if rec.is_unsigned() {
            return self.reject(from, Reject::Unsigned, Some(pk));
        }
        if pk != from {
            return self.reject(from, Reject::WrongSigner, Some(pk));
        }
        if rec.ttl_ms == 0 || rec.ttl_ms > self.cfg.max_ttl_ms {
            return self.reject(from, Reject::BadTtl, Some(pk));
        }
        if !rec.verify() {
            return self.reject(from, Reject::BadSignature, Some(pk));
        }
        if let Some(&(held, _)) = self.seqs.get(&pk) {
            if rec.seq < held {
                return self.reject(from, Reject::Stale, Some(pk));
            }
            if rec.seq == held {
                return self.reject(from, Reject::Replay, Some(pk));
            }
        } else if self.seqs.len() >= self.cfg.max_records.saturating_mul(2)
            || self.records.len() >= self.cfg.max_records
        {
            return self.reject(from, Reject::Full, Some(pk));
        }
        let source = self.sources.get(&from).copied();
        let same_source = self.records.get(&pk).is_some_and(|e| e.source == source);
        if let Some(ip) = source
            && !same_source
            && self.per_source.get(&ip).copied().unwrap_or(0) >= self.cfg.max_records_per_source
        {
            return self.reject(from, Reject::SourceFull, Some(pk));
        }
        let expires_at = now.saturating_add(u64::from(rec.ttl_ms));
        let seq = rec.seq;
        self.remove_record(&pk);
        for s in &rec.services {
            self.by_kind.entry(s.kind.clone()).or_default().insert(pk);
        }
        if let Some(ip) = source {
            *self.per_source.entry(ip).or_insert(0) += 1;
        }
        self.records.insert(
            pk,
            Entry {
                record: rec,
                expires_at,
                source,
            },
        );
        self.seqs
            .insert(pk, (seq, expires_at.saturating_add(self.cfg.seq_memory_ms)));
        self.counters.registered += 1;
        vec![(from, Msg::Registered { pk, seq }.encode())]
    }

    /// Drops `pk`'s record with its indexes and its source's count.
    fn remove_record(&mut self, pk: &NodeId) {
        self.unindex(pk);
        if let Some(e) = self.records.remove(pk)
            && let Some(ip) = e.source
            && let Some(n) = self.per_source.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    fn unindex(&mut self, pk: &NodeId) {
        if let Some(old) = self.records.get(pk) {
            for s in &old.record.services {
                if let Some(set) = self.by_kind.get_mut(&s.kind) {
                    set.remove(pk);
                    if set.is_empty() {
                        self.by_kind.remove(&s.kind);
                    }
                }
            }
        }
    }

    /// Expires records whose TTL ended, forgets old seqs and idle rate-limit state.
    pub fn tick(&mut self, now_ms: u64) {
        let dead: Vec<NodeId> = self
            .records
            .iter()
            .filter(|(_, e)| e.expires_at <= now_ms)
            .map(|(pk, _)| *pk)
            .collect();
        for pk in dead {
            self.remove_record(&pk);
            self.counters.expired += 1;
        }
        let records = &self.records;
        self.seqs
            .retain(|pk, (_, forget)| *forget > now_ms || records.contains_key(pk));
        let c = &self.cfg;
        // A bucket that would be full now carries no information: drop it.
        self.reg_buckets.retain(|_, b| {
            b.level(now_ms, c.register_per_s, c.register_burst) < u64::from(c.register_burst) * 1000
        });
        self.req_buckets.retain(|_, b| {
            b.level(now_ms, c.request_per_s, c.request_burst) < u64::from(c.request_burst) * 1000
        });
    }
}
