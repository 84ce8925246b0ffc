//! The messenger client, sans-IO: every controlplane runs one. It keeps its own record
//! registered with every connected messenger (re-signed with a new seq before the TTL runs
//! out), sends lookups, queries and relays to the first reachable messenger of its list (failing
//! over to the next when one is down or does not answer), verifies every record it receives,
//! and keeps a cache of records that answers lookups while all messengers are down.
//!
//! The caller tells it which messengers are connected ([`MessengerClient::connected`],
//! [`MessengerClient::disconnected`]), feeds it what they send ([`MessengerClient::handle`]),
//! calls [`MessengerClient::tick`] periodically, sends what [`MessengerClient::poll_transmit`]
//! returns and reads answers from [`MessengerClient::poll_event`].

use super::record::{Record, RecordError, Service};
use super::wire::{MAX_RELAY, Msg, Reject};
use crate::identity::{Identity, NodeId};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Messengers, in order of preference.
    pub servers: Vec<NodeId>,
    /// TTL of our record; it is re-registered after half of it.
    pub ttl_ms: u32,
    /// How long to wait for an answer before trying the next messenger.
    pub request_timeout_ms: u64,
    /// How long a messenger that did not answer is passed over.
    pub retry_after_ms: u64,
    /// Most cached records.
    pub cache_max: usize,
    /// How long a cached record is kept after its TTL (used only while no messenger answers).
    pub cache_keep_ms: u64,
    /// First seq of our record; must exceed any seq used before by this key (e.g. the Unix
    /// time in milliseconds at start).
    pub seq_start: u64,
}

impl ClientConfig {
    /// Defaults for the given messengers and first seq.
    pub fn new(servers: Vec<NodeId>, seq_start: u64) -> Self {
        ClientConfig {
            servers,
            ttl_ms: 60_000,
            request_timeout_ms: 3_000,
            retry_after_ms: 10_000,
            cache_max: 4096,
            cache_keep_ms: 24 * 3_600_000,
            seq_start,
        }
    }
}

/// What the client has to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A lookup's answer.
    Found {
        /// The record (signature verified).
        record: Record,
        /// Answered from the cache rather than by a messenger.
        from_cache: bool,
        /// The record's TTL has passed (only given while no messenger answers).
        stale: bool,
    },
    /// No record for `pk`.
    NotFound {
        /// Looked up.
        pk: NodeId,
        /// No messenger could be asked and nothing was cached (not an authoritative answer).
        offline: bool,
    },
    /// A query's answer.
    Services {
        /// Asked for.
        kind: String,
        /// Records offering it (signatures verified).
        records: Vec<Record>,
        /// The messenger had more than it sent.
        truncated: bool,
        /// Answered from the cache (no messenger could be asked); may include stale records.
        from_cache: bool,
    },
    /// A message relayed to us.
    Relayed {
        /// Sender, as authenticated by the messenger.
        from: NodeId,
        /// Payload.
        bytes: Vec<u8>,
    },
    /// A messenger accepted our record.
    Registered {
        /// Which messenger.
        server: NodeId,
        /// Which seq.
        seq: u64,
    },
    /// A messenger rejected a request.
    Rejected {
        /// Which messenger.
        server: NodeId,
        /// Why.
        code: Reject,
        /// The key concerned, if any.
        subject: Option<NodeId>,
    },
}

/// Why a request could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No messenger is connected.
    #[error("no messenger is reachable")]
    NoServer,
    /// Relay payload over [`MAX_RELAY`].
    #[error("relay payload too large")]
    TooLarge,
}

/// What the client has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Messages from messengers that did not decode.
    pub malformed: u64,
    /// Messages from keys not in our messenger list, or answers nobody asked for.
    pub unexpected: u64,
    /// Records with bad signatures, wrong keys or older seqs than cached.
    pub bad_records: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Requests moved to another messenger.
    pub failovers: u64,
    /// Lookups and queries answered from the cache because no messenger could be asked.
    pub offline_answers: u64,
}

struct ServerState {
    id: NodeId,
    up: bool,
    /// Passed over until then (did not answer in time).
    skip_until: u64,
    /// Seq and time of the last registration sent, and whether it was acknowledged.
    reg_sent: Option<(u64, u64)>,
    reg_acked: bool,
}

struct Cached {
    record: Record,
    fetched_at: u64,
    expires_at: u64,
}

#[derive(Clone, Copy)]
struct Pending {
    server: NodeId,
    sent_at: u64,
}

/// The sans-IO messenger client.
pub struct MessengerClient {
    id: Identity,
    cfg: ClientConfig,
    servers: Vec<ServerState>,
    endpoints: Vec<SocketAddr>,
    services: Vec<Service>,
    publish: bool,
    next_seq: u64,
    record: Option<Record>,
    cache: HashMap<NodeId, Cached>,
    lookups: HashMap<NodeId, Pending>,
    queries: HashMap<String, Pending>,
    out: VecDeque<(NodeId, Vec<u8>)>,
    events: VecDeque<ClientEvent>,
    counters: ClientCounters,
}

impl MessengerClient {
    /// A client for `id`. It publishes nothing until [`MessengerClient::set_record`].
    pub fn new(id: Identity, cfg: ClientConfig) -> Self {
        let servers = cfg
            .servers
            .iter()
            .map(|s| ServerState {
                id: *s,
                up: false,
                skip_until: 0,
                reg_sent: None,
                reg_acked: false,
            })
            .collect();
        MessengerClient {
            id,
            next_seq: cfg.seq_start,
            cfg,
            servers,
            endpoints: Vec::new(),
            services: Vec::new(),
            publish: false,
            record: None,
            cache: HashMap::new(),
            lookups: HashMap::new(),
            queries: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// Our key.
    pub fn pk(&self) -> NodeId {
        self.id.id()
    }

    /// The counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Our last signed record.
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// The messenger requests go to now, if any.
    pub fn active(&self, now_ms: u64) -> Option<NodeId> {
        self.servers
            .iter()
            .find(|s| s.up && s.skip_until <= now_ms)
            .or_else(|| self.servers.iter().find(|s| s.up))
            .map(|s| s.id)
    }

    /// Whether `server` has our current record (acknowledged).
    pub fn is_registered_with(&self, server: &NodeId) -> bool {
        self.servers.iter().any(|s| s.id == *server && s.reg_acked)
    }

    /// Sets what we publish; it is signed and registered with every connected messenger.
    pub fn set_record(
        &mut self,
        now_ms: u64,
        endpoints: Vec<SocketAddr>,
        services: Vec<Service>,
    ) -> Result<(), RecordError> {
        // Check the limits before accepting (the signature is thrown away).
        Record::sign(
            &self.id,
            0,
            self.cfg.ttl_ms,
            endpoints.clone(),
            services.clone(),
        )?;
        self.endpoints = endpoints;
        self.services = services;
        self.publish = true;
        for s in &mut self.servers {
            s.reg_sent = None;
            s.reg_acked = false;
        }
        self.flush_registrations(now_ms);
        Ok(())
    }

    /// A connection to `server` is up (authenticated as `server`).
    pub fn connected(&mut self, now_ms: u64, server: NodeId) {
        let Some(s) = self.servers.iter_mut().find(|s| s.id == server) else {
            return;
        };
        s.up = true;
        s.skip_until = 0;
        s.reg_sent = None;
        s.reg_acked = false;
        self.flush_registrations(now_ms);
        // A more preferred messenger is back: move what waits on others to it.
        self.redispatch(now_ms, |p| p.server != server);
    }

    /// The connection to `server` closed.
    pub fn disconnected(&mut self, now_ms: u64, server: NodeId) {
        let Some(s) = self.servers.iter_mut().find(|s| s.id == server) else {
            return;
        };
        s.up = false;
        s.reg_sent = None;
        s.reg_acked = false;
        self.redispatch(now_ms, |p| p.server == server);
    }

    /// Looks `pk` up; the answer comes as [`ClientEvent::Found`] or [`ClientEvent::NotFound`].
    /// A cached record within its TTL answers at once.
    pub fn lookup(&mut self, now_ms: u64, pk: NodeId) {
        if let Some(c) = self.cache.get(&pk)
            && c.expires_at > now_ms
        {
            self.events.push_back(ClientEvent::Found {
                record: c.record.clone(),
                from_cache: true,
                stale: false,
            });
            return;
        }
        if self.lookups.contains_key(&pk) {
            return;
        }
        match self.active(now_ms) {
            Some(server) => {
                self.out.push_back((server, Msg::Lookup { pk }.encode()));
                self.lookups.insert(
                    pk,
                    Pending {
                        server,
                        sent_at: now_ms,
                    },
                );
            }
            None => self.lookup_offline(now_ms, pk),
        }
    }

    /// Asks which nodes offer `kind`; the answer comes as [`ClientEvent::Services`].
    pub fn query(&mut self, now_ms: u64, kind: &str) {
        if self.queries.contains_key(kind) {
            return;
        }
        match self.active(now_ms) {
            Some(server) => {
                let kind = kind.to_string();
                self.out
                    .push_back((server, Msg::Query { kind: kind.clone() }.encode()));
                self.queries.insert(
                    kind,
                    Pending {
                        server,
                        sent_at: now_ms,
                    },
                );
            }
            None => self.query_offline(kind.to_string()),
        }
    }

    /// Sends `bytes` to `to` through the active messenger (which must have `to` connected;
    /// if not, a [`ClientEvent::Rejected`] with [`Reject::Unreachable`] follows).
    pub fn relay(&mut self, now_ms: u64, to: NodeId, bytes: Vec<u8>) -> Result<(), ClientError> {
        if bytes.len() > MAX_RELAY {
            return Err(ClientError::TooLarge);
        }
        let server = self.active(now_ms).ok_or(ClientError::NoServer)?;
        self.out
            .push_back((server, Msg::Relay { to, bytes }.encode()));
        Ok(())
    }

    /// Handles a message from messenger `from`.
    pub fn handle(&mut self, now_ms: u64, from: NodeId, bytes: &[u8]) {
        if !self.servers.iter().any(|s| s.id == from) {
            self.counters.unexpected += 1;
            return;
        }
        let msg = match Msg::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match msg {
            Msg::Registered { pk, seq } => {
                let me = self.pk();
                match self.servers.iter_mut().find(|s| s.id == from) {
                    Some(s) if pk == me && s.reg_sent.map(|(q, _)| q) == Some(seq) => {
                        s.reg_acked = true;
                        self.events
                            .push_back(ClientEvent::Registered { server: from, seq });
                    }
                    _ => self.counters.unexpected += 1,
                }
            }
            Msg::Found(record) => {
                let pk = record.pk;
                if self.lookups.remove(&pk).is_none() {
                    self.counters.unexpected += 1;
                    return;
                }
                let record = self.accept(now_ms, record).or_else(|| {
                    // A bad answer: fall back to what we have.
                    self.cache.get(&pk).map(|c| c.record.clone())
                });
                match record {
                    Some(record) => self.events.push_back(ClientEvent::Found {
                        record,
                        from_cache: false,
                        stale: false,
                    }),
                    None => self
                        .events
                        .push_back(ClientEvent::NotFound { pk, offline: false }),
                }
            }
            Msg::NotFound { pk } => {
                if self.lookups.remove(&pk).is_none() {
                    self.counters.unexpected += 1;
                    return;
                }
                self.cache.remove(&pk);
                self.events
                    .push_back(ClientEvent::NotFound { pk, offline: false });
            }
            Msg::Services {
                kind,
                records,
                truncated,
            } => {
                if self.queries.remove(&kind).is_none() {
                    self.counters.unexpected += 1;
                    return;
                }
                let mut good = Vec::with_capacity(records.len());
                for r in records {
                    if !r.offers(&kind) {
                        self.counters.bad_records += 1;
                        continue;
                    }
                    if let Some(r) = self.accept(now_ms, r) {
                        good.push(r);
                    }
                }
                self.events.push_back(ClientEvent::Services {
                    kind,
                    records: good,
                    truncated,
                    from_cache: false,
                });
            }
            Msg::Relayed {
                from: sender,
                bytes,
            } => {
                self.events.push_back(ClientEvent::Relayed {
                    from: sender,
                    bytes,
                });
            }
            Msg::Error { code, subject } => {
                // A lookup the messenger would not answer: answer it from the cache.
                if let Some(pk) = subject
                    && self.lookups.get(&pk).is_some_and(|p| p.server == from)
                {
                    self.lookups.remove(&pk);
                    self.lookup_offline(now_ms, pk);
                }
                self.events.push_back(ClientEvent::Rejected {
                    server: from,
                    code,
                    subject,
                });
            }
            Msg::Register(_) | Msg::Lookup { .. } | Msg::Query { .. } | Msg::Relay { .. } => {
                self.counters.unexpected += 1;
            }
        }
    }

    /// Re-registers before the TTL runs out, retries unacknowledged registrations, fails over
    /// requests that were not answered in time, drops old cache entries.
    pub fn tick(&mut self, now_ms: u64) {
        let timeout = self.cfg.request_timeout_ms;
        let mut late = Vec::new();
        for p in self.lookups.values().chain(self.queries.values()) {
            if now_ms >= p.sent_at.saturating_add(timeout) && !late.contains(&p.server) {
                late.push(p.server);
            }
        }
        for server in &late {
            if let Some(s) = self.servers.iter_mut().find(|s| s.id == *server) {
                s.skip_until = now_ms.saturating_add(self.cfg.retry_after_ms);
            }
        }
        self.redispatch(now_ms, |p| now_ms >= p.sent_at.saturating_add(timeout));
        self.flush_registrations(now_ms);
        let keep = self.cfg.cache_keep_ms;
        self.cache
            .retain(|_, c| c.expires_at.saturating_add(keep) > now_ms);
    }

    /// The next message to send, and to which messenger.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// A cached record (possibly past its TTL).
    pub fn cached(&self, pk: &NodeId) -> Option<&Record> {
        self.cache.get(pk).map(|c| &c.record)
    }

    fn flush_registrations(&mut self, now: u64) {
        if !self.publish {
            return;
        }
        let refresh = u64::from(self.cfg.ttl_ms / 2);
        let timeout = self.cfg.request_timeout_ms;
        let due: Vec<NodeId> = self
            .servers
            .iter()
            .filter(|s| s.up)
            .filter(|s| match s.reg_sent {
                None => true,
                Some((_, at)) if s.reg_acked => now >= at.saturating_add(refresh),
                Some((_, at)) => now >= at.saturating_add(timeout.min(refresh)),
            })
            .map(|s| s.id)
            .collect();
        if due.is_empty() {
            return;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let rec = match Record::sign(
            &self.id,
            seq,
            self.cfg.ttl_ms,
            self.endpoints.clone(),
            self.services.clone(),
        ) {
            Ok(r) => r,
            // Checked in set_record; cannot happen.
            Err(_) => return,
        };
        let bytes = Msg::Register(rec.clone()).encode();
        for s in self.servers.iter_mut().filter(|s| due.contains(&s.id)) {
            s.reg_sent = Some((seq, now));
            s.reg_acked = false;
            self.out.push_back((s.id, bytes.clone()));
        }
        self.record = Some(rec);
    }

    /// Moves the pending requests selected by `pick` to the active messenger if that is another
    /// one; answers them from the cache when there is none, or when they timed out and the
    /// active messenger is the one that did not answer.
    fn redispatch(&mut self, now: u64, pick: impl Fn(&Pending) -> bool) {
        let moved_l: Vec<(NodeId, Pending)> = self
            .lookups
            .iter()
            .filter(|(_, p)| pick(p))
            .map(|(k, p)| (*k, *p))
            .collect();
        let moved_q: Vec<(String, Pending)> = self
            .queries
            .iter()
            .filter(|(_, p)| pick(p))
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        let active = self.active(now);
        for (pk, p) in moved_l {
            let late = now >= p.sent_at.saturating_add(self.cfg.request_timeout_ms);
            if late {
                self.counters.timeouts += 1;
            }
            match active {
                Some(server) if server != p.server => {
                    self.counters.failovers += 1;
                    self.out.push_back((server, Msg::Lookup { pk }.encode()));
                    self.lookups.insert(
                        pk,
                        Pending {
                            server,
                            sent_at: now,
                        },
                    );
                }
                // Still waiting on the only messenger there is.
                Some(_) if !late => {}
                // It did not answer and there is no other: answer from the cache.
                _ => {
                    self.lookups.remove(&pk);
                    self.lookup_offline(now, pk);
                }
            }
        }
        for (kind, p) in moved_q {
            let late = now >= p.sent_at.saturating_add(self.cfg.request_timeout_ms);
            if late {
                self.counters.timeouts += 1;
            }
            match active {
                Some(server) if server != p.server => {
                    self.counters.failovers += 1;
                    self.out
                        .push_back((server, Msg::Query { kind: kind.clone() }.encode()));
                    self.queries.insert(
                        kind,
                        Pending {
                            server,
                            sent_at: now,
                        },
                    );
                }
                Some(_) if !late => {}
                _ => {
                    self.queries.remove(&kind);
                    self.query_offline(kind);
                }
            }
        }
    }

    fn lookup_offline(&mut self, now: u64, pk: NodeId) {
        self.counters.offline_answers += 1;
        let ev = match self.cache.get(&pk) {
            Some(c) => ClientEvent::Found {
                record: c.record.clone(),
                from_cache: true,
                stale: c.expires_at <= now,
            },
            None => ClientEvent::NotFound { pk, offline: true },
        };
        self.events.push_back(ev);
    }

    fn query_offline(&mut self, kind: String) {
        self.counters.offline_answers += 1;
        let mut records: Vec<Record> = self
            .cache
            .values()
            .filter(|c| c.record.offers(&kind))
            .map(|c| c.record.clone())
            .collect();
        records.sort_by_key(|r| r.pk);
        self.events.push_back(ClientEvent::Services {
            kind,
            records,
            truncated: false,
            from_cache: true,
        });
    }

    /// Verifies a record from a messenger and caches it; returns the record to report (the
    /// cached one if the messenger sent an older seq).
    fn accept(&mut self, now: u64, r: Record) -> Option<Record> {
        if r.is_unsigned() || !r.verify() {
            self.counters.bad_records += 1;
            return None;
        }
        if let Some(c) = self.cache.get_mut(&r.pk) {
            if r.seq < c.record.seq {
                self.counters.bad_records += 1;
                return Some(c.record.clone());
            }
            c.expires_at = now.saturating_add(u64::from(r.ttl_ms));
            c.fetched_at = now;
            c.record = r.clone();
            return Some(r);
        }
        if self.cache.len() >= self.cfg.cache_max {
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, c)| c.fetched_at)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.cache.remove(&k);
            }
        }
        if self.cfg.cache_max > 0 {
            self.cache.insert(
                r.pk,
                Cached {
                    record: r.clone(),
                    fetched_at: now,
                    expires_at: now.saturating_add(u64::from(r.ttl_ms)),
                },
            );
        }
        Some(r)
    }
}
