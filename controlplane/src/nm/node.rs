//! The node manager: sans-IO state machine tying the LSDB, flooding,
//! path computation and hop-by-hop route setup together.
//!
//! Route setup, keep-alive, teardown and failover live in `routing.rs`
//! (a second `impl NodeManager` block).

use std::collections::{BTreeMap, VecDeque};

use ring::signature::Ed25519KeyPair;

use super::advert::{Advert, AdvertFlags, keypair_from_seed};
use super::flood::{FloodState, TokenBucket};
use super::labels::LabelAllocator;
use super::lsdb::{Lsdb, Reject, RejectCounts};
use super::session::{Initiator, RouteKeys, SetupWindow, x25519_private};
use super::types::{Action, NodeId, RouteId};
use super::wire::Msg;

/// Operator configuration. All times in milliseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Re-originate the own advert this often (must be < lifetime).
    pub advert_refresh_ms: u64,
    /// Lifetime written into the own advert.
    pub advert_lifetime_ms: u32,
    /// Cap applied to the lifetime of received adverts.
    pub max_advert_lifetime_ms: u32,
    /// Minimum spacing of re-originations caused by link-up / cost changes
    /// (link-down and policy changes re-originate at once).
    pub advert_min_interval_ms: u64,
    /// Link cost changes smaller than this percentage of the advertised
    /// cost are not re-advertised (hysteresis against RTT jitter).
    pub cost_hysteresis_pct: u32,
    /// Flood retransmit interval while an advert is unacknowledged.
    pub retransmit_ms: u64,
    /// Flooding rate limit per neighbour (adverts per second; 0 = none).
    pub flood_rate_per_s: u32,
    /// Token bucket depth per neighbour.
    pub flood_burst: u32,
    /// Ingress refreshes each route this often.
    pub route_keepalive_ms: u64,
    /// Hops drop route state not refreshed for this long.
    pub route_timeout_ms: u64,
    /// Route setups a neighbour may pass us per second (transit and egress alike), and the
    /// burst: each costs labels, rules, a fib commit and at the egress a handshake. Over the
    /// rate a Setup is dropped (counted); its origin's setup times out and is retried.
    pub setup_rate_per_s: u32,
    pub setup_burst: u32,
    /// Routes (transit or egress state) held for one neighbour at most: what one neighbour
    /// can make this node keep, whatever it claims; beyond it Setups are refused.
    pub max_routes_per_neighbour: usize,
    /// Ingress gives up on a setup without ack after this long.
    pub setup_timeout_ms: u64,
    /// Retry interval when no path to a requested destination exists.
    pub setup_retry_ms: u64,
    /// Release routes not requested/touched for this long (0 = never).
    pub route_idle_ms: u64,
    /// Pre-establish a node-disjoint backup for every primary route.
    pub backup_routes: bool,
    /// Advertised cost per neighbour, replacing the measured one.
    pub cost_override: Vec<(NodeId, u32)>,
    /// Move transit routes away from this node; refuse new transit.
    pub drain: bool,
    /// Refuse to be an intermediate hop of new routes.
    pub no_transit: bool,
    /// Service names published in the advert.
    pub services: Vec<String>,
    /// LSDB capacity (origins).
    pub max_lsdb_entries: usize,
    /// Memory the LSDB may take (entries hold their encoded and decoded advert): with keys
    /// free to make, the entry count alone does not bound it (100 000 adverts of 21 KB each
    /// would be 4 GB).
    pub max_lsdb_bytes: usize,
    /// New origins (nodes not in the LSDB yet) one neighbour may bring per second, and the
    /// burst (a whole mesh's worth when the link comes up and the LSDBs synchronise). Over it
    /// adverts are not acknowledged, so they come again later: a Sybil flood is slowed, a
    /// real mesh still converges.
    pub new_origins_per_s: u32,
    pub new_origins_burst: u32,
    /// Largest label handed out (labels start at `labels::FIRST_LABEL`).
    pub max_label: u32,
    /// Route ids this node originates start above this. A restarted node must not reuse the
    /// ids of its previous life (neighbours may still hold state for them): the driver passes
    /// something that grows across restarts, e.g. the wall clock in microseconds.
    pub first_route_counter: u64,
    /// Whether this CPU has AES instructions: a route's data uses AES-256-GCM when both its
    /// ends have them, else ChaCha20-Poly1305.
    pub route_aes: bool,
    /// A route's end-to-end keys are replaced after this long (0: never): the primary is set
    /// up again make-before-break (a new handshake, new keys) and an old backup set up anew.
    /// With the route counter it also bounds what one key seals (2 minutes at 10 Gbit/s is
    /// about 2^27 packets, far below the AEADs' limits).
    pub route_rekey_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            advert_refresh_ms: 20 * 60_000,
            advert_lifetime_ms: 60 * 60_000,
            max_advert_lifetime_ms: 2 * 60 * 60_000,
            advert_min_interval_ms: 50,
            cost_hysteresis_pct: 10,
            retransmit_ms: 500,
            flood_rate_per_s: 1000,
            flood_burst: 200,
            route_keepalive_ms: 1_000,
            route_timeout_ms: 3_500,
            setup_rate_per_s: 200,
            setup_burst: 400,
            max_routes_per_neighbour: 4096,
            setup_timeout_ms: 1_000,
            setup_retry_ms: 1_000,
            route_idle_ms: 0,
            backup_routes: true,
            cost_override: Vec::new(),
            drain: false,
            no_transit: false,
            services: Vec::new(),
            max_lsdb_entries: 100_000,
            max_lsdb_bytes: Lsdb::DEFAULT_MAX_BYTES,
            new_origins_per_s: 50,
            new_origins_burst: 2000,
            max_label: (1 << 20) - 1,
            first_route_counter: 0,
            route_aes: dataplane::wire::preferred() == dataplane::wire::Cipher::Aes256Gcm,
            route_rekey_ms: 120_000,
        }
    }
}

/// Statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub lsdb_size: usize,
    pub own_seq: u64,
    pub adverts_originated: u64,
    pub adverts_accepted: u64,
    pub adverts_expired: u64,
    /// Adverts evicted from the full LSDB for better-standing ones (see `lsdb::Standing`).
    pub adverts_evicted: u64,
    /// Rejections by reason (unsigned, bad signature, stale, replay, ...).
    pub adverts_rejected: RejectCounts,
    /// Our own advert came back with a newer seq (restart): jumped past it.
    pub own_advert_newer_seen: u64,
    pub msgs_received: u64,
    pub msgs_malformed: u64,
    pub msgs_from_non_neighbour: u64,
    pub msgs_sent: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub acks_sent: u64,
    pub acks_received: u64,
    pub setups_sent: u64,
    pub setup_acks_sent: u64,
    pub keepalives_sent: u64,
    pub teardowns_sent: u64,
    pub flood_retransmits: u64,
    /// Adverts queued while the neighbour's token bucket was empty.
    pub flood_rate_limited: u64,
    /// Queued adverts replaced by a newer version before being sent.
    pub flood_superseded: u64,
    pub setups_started: u64,
    pub setups_refused: u64,
    /// Setups refused at the egress: the handshake did not prove the claimed origin (forged,
    /// modified, bound to another route or path).
    pub setups_unauthenticated: u64,
    /// Setups refused at the egress: a route id of the origin seen before (a replay).
    pub setups_replayed: u64,
    /// SetupAcks whose handshake answer did not open at the origin.
    pub setup_acks_unauthenticated: u64,
    /// Keepalives the egress did not take: wrong MAC, or a sequence number not newer.
    pub keepalives_unauthenticated: u64,
    /// Teardowns and Keepalives of a route held here that came from a neighbour not next to
    /// this node on the route's path (forged: ignored; a Keepalive is answered with a Teardown,
    /// as for an unknown route).
    pub route_msgs_off_path: u64,
    /// Adverts of a neighbour claiming its link to this node costs less than half of what
    /// this node advertises for it (measured, or the operator's `cost_us`): the claim is
    /// stored but never used (a link costs the larger of its two ends' claims).
    pub cost_claims_below_ours: u64,
    /// Setups dropped: the neighbour was over its setup rate.
    pub setups_rate_limited: u64,
    /// Adverts of new origins left unacknowledged: the neighbour was over its new-origin rate.
    pub adverts_new_origin_limited: u64,
    /// Memory the LSDB takes now (as its bound counts it).
    pub lsdb_bytes: usize,
    /// Setups refused: the neighbour already has `max_routes_per_neighbour` routes here.
    pub setups_over_quota: u64,
    pub setup_failures: u64,
    pub route_failures: u64,
    pub failovers: u64,
    pub rebuilds: u64,
    pub migrations: u64,
    /// Routes replaced because their keys reached `route_rekey_ms` (primaries and backups).
    pub route_rekeys: u64,
    pub no_path: u64,
    pub routes_up: usize,
    pub routes_pending: usize,
    pub backups_ready: usize,
    pub mappings: usize,
    pub transit_states: usize,
    pub labels_in_use: usize,
}

/// Role of an own (ingress) route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteRole {
    Primary,
    Backup,
    /// Make-before-break replacement of a primary (drain / migration).
    Replacement,
}

/// Setup state of an own route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteState {
    Pending,
    Up,
}

/// One own route, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: NodeId,
    pub rid: RouteId,
    pub path: Vec<NodeId>,
    pub role: RouteRole,
    pub state: RouteState,
    /// Is this the route currently installed as the ingress mapping?
    pub active: bool,
    /// Label at the first hop (forward direction), once acked.
    pub label: Option<u32>,
    /// Our label for reverse traffic (from `path[1]`).
    pub rev_label: u32,
    pub age_ms: u64,
}

/// One transit/egress route state, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopInfo {
    pub rid: RouteId,
    pub prev: NodeId,
    /// `None` at the egress.
    pub next: Option<NodeId>,
    pub fwd_in: Option<u32>,
    pub fwd_out: Option<u32>,
    pub rev_in: Option<u32>,
    pub rev_out: u32,
    pub expires_ms: u64,
}

#[derive(Debug)]
pub(super) struct Neighbour {
    pub(super) advertised: u32,
    pub(super) flood: FloodState,
    /// The neighbour's Setup rate.
    pub(super) setups: TokenBucket,
    /// The rate of new origins it brings.
    pub(super) new_origins: TokenBucket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OwnState {
    Pending { deadline: u64 },
    Up { label: u32 },
}

#[derive(Clone, Debug)]
pub(super) struct OwnRoute {
    pub(super) dst: NodeId,
    pub(super) path: Vec<NodeId>,
    pub(super) rev_label: u32,
    pub(super) state: OwnState,
    pub(super) created: u64,
    pub(super) next_keepalive: u64,
    /// The route's end-to-end keys, once the egress answered the handshake.
    pub(super) keys: Option<RouteKeys>,
    /// The dataplane's names of its data keys (tx, rx), while they are installed.
    pub(super) key_ids: Option<(u64, u64)>,
    /// Keepalives sent (their sequence numbers).
    pub(super) ka_seq: u64,
}

impl OwnRoute {
    pub(super) fn first_hop(&self) -> NodeId {
        // Paths always hold >= 2 nodes (built by shortest_path with
        // src != dst); `get` keeps this total anyway.
        self.path.get(1).copied().unwrap_or(self.dst)
    }
    pub(super) fn is_up(&self) -> bool {
        matches!(self.state, OwnState::Up { .. })
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Dest {
    pub(super) primary: Option<RouteId>,
    pub(super) backup: Option<RouteId>,
    pub(super) replacing: Option<RouteId>,
    pub(super) last_used: u64,
    pub(super) retry_at: Option<u64>,
    /// No key renewal of this destination's routes is started before this (a failed renewal
    /// waits `setup_retry_ms` before the next).
    pub(super) rekey_not_before: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Hop {
    pub(super) prev: NodeId,
    pub(super) next: Option<NodeId>,
    pub(super) rev_in: Option<u32>,
    pub(super) rev_out: u32,
    pub(super) fwd_in: Option<u32>,
    pub(super) fwd_out: Option<u32>,
    pub(super) expires: u64,
    pub(super) created: u64,
    /// Egress: the route's end-to-end keys.
    pub(super) keys: Option<RouteKeys>,
    /// Egress: the dataplane's names of its data keys (tx, rx).
    pub(super) key_ids: Option<(u64, u64)>,
    /// Egress: the last keepalive sequence number taken.
    pub(super) ka_seq: u64,
    /// The handshake answer passed upstream (repeated for a duplicate setup or ack).
    pub(super) ack_hs: Vec<u8>,
}

/// Origins whose route-id windows an egress keeps: one per origin that proved its key with a
/// route to this node (a window exists only after a handshake succeeded). At the bound the
/// least recently used window goes, and with it the memory of that origin's old route ids:
/// large enough for every origin a router really serves, small enough (16 Ki x 56 bytes)
/// that keys made for the purpose cannot grow it.
pub const MAX_SETUP_ORIGINS: usize = 16_384;

/// The routing state machine of one node.
pub struct NodeManager {
    pub(super) cfg: Config,
    key: Ed25519KeyPair,
    /// X25519 private key of the route handshakes.
    pub(super) noise: [u8; 32],
    /// Origin: handshakes waiting for their SetupAck.
    pub(super) pending_hs: BTreeMap<RouteId, Initiator>,
    /// Egress: per-origin windows of route ids taken (replays refused), with last use.
    pub(super) setup_windows: BTreeMap<NodeId, (SetupWindow, u64)>,
    pub(super) id: NodeId,
    pub(super) lsdb: Lsdb,
    pub(super) nbs: BTreeMap<NodeId, Neighbour>,
    seq: u64,
    last_originate: u64,
    originate_pending: bool,
    originate_urgent: bool,
    next_refresh: u64,
    pub(super) labels: LabelAllocator,
    pub(super) own: BTreeMap<RouteId, OwnRoute>,
    pub(super) dests: BTreeMap<NodeId, Dest>,
    pub(super) hops: BTreeMap<RouteId, Hop>,
    /// Ingress mappings: destination -> (first hop, label, data key).
    pub(super) installed: BTreeMap<NodeId, (NodeId, u32, u64)>,
    pub(super) next_route: u64,
    /// Last data key id handed out (ids are never reused within this process).
    pub(super) next_key: u64,
    /// Data keys of routes that ended, erased from the dataplane at the end of the step
    /// (after the ingress mapping moved away from them).
    pub(super) dead_keys: Vec<u64>,
    /// Own routes replaced make-before-break, torn down at the deadline: the egress keeps
    /// sending on the old route's reverse until the new route's first keepalive shows that
    /// the origin holds its keys.
    pub(super) retiring: Vec<(u64, RouteId)>,
    pub(super) actions: VecDeque<Action>,
    pub(super) c: Counters,
    pub(super) topo_dirty: bool,
}

/// A neighbour's claimed cost of its link to us below this much less than ours is counted
/// ([`Counters::cost_claims_below_ours`]): two ends measure the same link a little
/// differently (RTT jitter, a few hundred µs on a loaded router), so only a claim under half
/// of ours and more than this below it is taken as a lie.
const COST_CLAIM_SLACK_US: u32 = 1000;

/// Whether `claim` (the neighbour's cost of our link) is a lie against `ours`.
fn claim_below(claim: u32, ours: u32) -> bool {
    u64::from(claim) * 2 < u64::from(ours) && ours - claim > COST_CLAIM_SLACK_US
}

impl NodeManager {
    /// Create a node from its 32-byte identity seed.
    pub fn new(seed: [u8; 32], cfg: Config, now_ms: u64) -> Self {
        let (key, id) = keypair_from_seed(&seed);
        let lsdb = Lsdb::new(cfg.max_lsdb_entries.max(1), cfg.max_advert_lifetime_ms)
            .with_max_bytes(cfg.max_lsdb_bytes)
            .with_own(id);
        let labels = LabelAllocator::new(cfg.max_label);
        let first_route = cfg.first_route_counter;
        let nm = Self {
            cfg,
            key,
            noise: x25519_private(&seed),
            pending_hs: BTreeMap::new(),
            setup_windows: BTreeMap::new(),
            id,
            lsdb,
            nbs: BTreeMap::new(),
            seq: 0,
            last_originate: now_ms,
            originate_pending: false,
            originate_urgent: false,
            next_refresh: u64::MAX,
            labels,
            own: BTreeMap::new(),
            dests: BTreeMap::new(),
            hops: BTreeMap::new(),
            installed: BTreeMap::new(),
            next_route: first_route,
            next_key: 0,
            dead_keys: Vec::new(),
            retiring: Vec::new(),
            actions: VecDeque::new(),
            c: Counters::default(),
            topo_dirty: false,
        };
        // No advert yet: the first one is originated once links exist
        // (after `advert_min_interval_ms`, so links reported together at
        // start-up go out in a single advert).
        nm
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Sequence number of our current advert.
    pub fn advert_seq(&self) -> u64 {
        self.seq
    }

    /// (origin, seq) of every LSDB entry, own included.
    /// Changes whenever the LSDB's set of adverts changes (for caches derived from it).
    pub fn lsdb_version(&self) -> u64 {
        self.lsdb.version
    }

    pub fn lsdb_summary(&self) -> Vec<(NodeId, u64)> {
        self.lsdb.iter().map(|(o, e)| (*o, e.advert.seq)).collect()
    }

    /// The stored advert of `origin`.
    pub fn advert(&self, origin: &NodeId) -> Option<&Advert> {
        self.lsdb.advert(origin)
    }

    /// Up neighbours with their advertised cost.
    pub fn neighbours(&self) -> Vec<(NodeId, u32)> {
        self.nbs.iter().map(|(n, s)| (*n, s.advertised)).collect()
    }

    fn advertised_cost(&self, nb: &NodeId, measured: u32) -> u32 {
        self.cfg
            .cost_override
            .iter()
            .find(|(n, _)| n == nb)
            .map_or(measured, |(_, c)| *c)
    }

    /// A link to `nb` came up with measured cost `cost_us`. If `nb` is
    /// already up, the new link replaces the old one (the neighbour may
    /// have restarted): route state over the old link is dropped as on
    /// `link_down` and the LSDB is synchronised again.
    pub fn link_up(&mut self, now_ms: u64, nb: NodeId, cost_us: u32) {
        if nb == self.id {
            return;
        }
        if self.nbs.remove(&nb).is_some() {
            self.routes_link_down(now_ms, &nb);
        }
        self.lsdb.set_neighbour(nb, true);
        let advertised = self.advertised_cost(&nb, cost_us);
        let mut flood = FloodState::new(self.cfg.flood_rate_per_s, self.cfg.flood_burst, now_ms);
        // Database synchronisation: offer the whole LSDB to the new
        // neighbour (it acks what it takes; duplicates cost no signature
        // check on its side).
        for (origin, _) in self.lsdb.iter() {
            flood.enqueue(*origin);
        }
        if self.cfg.flood_rate_per_s > 0 {
            // Whatever exceeds the initial burst waits for tokens.
            let burst = self.cfg.flood_burst.max(1) as usize;
            self.c.flood_rate_limited += self.lsdb.len().saturating_sub(burst) as u64;
        }
        let setups = TokenBucket::new(self.cfg.setup_rate_per_s, self.cfg.setup_burst, now_ms);
        let new_origins = TokenBucket::new(
            self.cfg.new_origins_per_s,
            self.cfg.new_origins_burst,
            now_ms,
        );
        self.nbs.insert(
            nb,
            Neighbour {
                advertised,
                flood,
                setups,
                new_origins,
            },
        );
        self.originate_pending = true;
        self.topo_dirty = true;
        self.finish(now_ms);
    }

    /// New measured cost for an up link.
    pub fn link_cost(&mut self, now_ms: u64, nb: NodeId, cost_us: u32) {
        let adv = self.advertised_cost(&nb, cost_us);
        let pct = u64::from(self.cfg.cost_hysteresis_pct);
        if let Some(n) = self.nbs.get_mut(&nb) {
            let old = u64::from(n.advertised);
            let diff = old.abs_diff(u64::from(adv));
            if diff > 0 && diff * 100 >= old * pct {
                n.advertised = adv;
                self.originate_pending = true;
            }
        }
        self.finish(now_ms);
    }

    /// The link to `nb` went down.
    pub fn link_down(&mut self, now_ms: u64, nb: NodeId) {
        if self.nbs.remove(&nb).is_none() {
            self.finish(now_ms);
            return;
        }
        self.lsdb.set_neighbour(nb, false);
        self.originate_pending = true;
        self.originate_urgent = true;
        self.topo_dirty = true;
        self.routes_link_down(now_ms, &nb);
        self.finish(now_ms);
    }

    /// Replace the per-neighbour cost overrides (a config reload). An up neighbour with an
    /// override is advertised at it at once; one whose override went is advertised at its
    /// measured cost from the next measurement on ([`NodeManager::link_cost`]).
    pub fn set_cost_overrides(&mut self, now_ms: u64, overrides: Vec<(NodeId, u32)>) {
        if self.cfg.cost_override != overrides {
            self.cfg.cost_override = overrides;
            for (nb, n) in self.nbs.iter_mut() {
                if let Some((_, c)) = self.cfg.cost_override.iter().find(|(o, _)| o == nb)
                    && n.advertised != *c
                {
                    n.advertised = *c;
                    self.originate_pending = true;
                    self.originate_urgent = true;
                }
            }
        }
        self.finish(now_ms);
    }

    /// Change this node's own policy flags (re-originates at once).
    pub fn set_policy(&mut self, now_ms: u64, drain: bool, no_transit: bool) {
        if self.cfg.drain != drain || self.cfg.no_transit != no_transit {
            self.cfg.drain = drain;
            self.cfg.no_transit = no_transit;
            self.originate_pending = true;
            self.originate_urgent = true;
        }
        self.finish(now_ms);
    }

    /// A message from neighbour `from`. Malformed input is counted and
    /// dropped.
    pub fn handle(&mut self, now_ms: u64, from: NodeId, bytes: &[u8]) {
        self.c.msgs_received += 1;
        if !self.nbs.contains_key(&from) {
            self.c.msgs_from_non_neighbour += 1;
        }
        match Msg::decode(bytes) {
            Err(_) => self.c.msgs_malformed += 1,
            Ok(Msg::Advert(adv)) => self.on_advert(now_ms, from, adv, bytes.to_vec()),
            Ok(Msg::LsaAck { origin, seq }) => {
                self.c.acks_received += 1;
                let cur = self.lsdb.advert(&origin).map(|a| a.seq);
                if let Some(n) = self.nbs.get_mut(&from) {
                    n.flood.acked(&origin, seq, cur);
                }
            }
            Ok(Msg::Setup {
                rid,
                path,
                rev_label,
                hs,
            }) => self.on_setup(now_ms, from, rid, path, rev_label, hs),
            Ok(Msg::SetupAck { rid, label, hs }) => self.on_setup_ack(now_ms, from, rid, label, hs),
            Ok(Msg::Keepalive { rid, seq, mac }) => self.on_keepalive(now_ms, from, rid, seq, mac),
            Ok(Msg::Teardown { rid, upstream }) => self.on_teardown(now_ms, from, rid, upstream),
        }
        self.finish(now_ms);
    }

    /// The dataplane has a packet for `dst` and no mapping: set a route up
    /// unless one exists or is being set up. Also marks the route as used.
    pub fn request_route(&mut self, now_ms: u64, dst: NodeId) {
        self.routes_request(now_ms, dst);
        self.finish(now_ms);
    }

    /// Mark the routes to `dst` as in use (relevant with `route_idle_ms`).
    pub fn touch_route(&mut self, now_ms: u64, dst: NodeId) {
        if let Some(d) = self.dests.get_mut(&dst) {
            d.last_used = now_ms;
        }
    }

    /// Tear down every own route to `dst`.
    pub fn release_route(&mut self, now_ms: u64, dst: NodeId) {
        self.routes_release(now_ms, dst);
        self.finish(now_ms);
    }

    /// Run timers. Call at (or after) `poll_timeout()`.
    /// The dataplane lost every route key (a new one started, or its tables were lost): the
    /// routes this node is an end of are torn down along their paths and set up again, with
    /// new handshakes and keys. A key is never handed to a dataplane twice, as its sealing
    /// counters would start again from 0.
    pub fn data_keys_lost(&mut self, now_ms: u64) {
        let own: Vec<RouteId> = self
            .own
            .iter()
            .filter(|(_, r)| r.key_ids.is_some())
            .map(|(rid, _)| *rid)
            .collect();
        for rid in own {
            if let Some(r) = self.own.get_mut(&rid) {
                // Already gone from the dataplane.
                r.key_ids = None;
            }
            // Torn down along its path and replaced.
            self.fail_own(now_ms, &rid, true);
        }
        let egress: Vec<RouteId> = self
            .hops
            .iter()
            .filter(|(_, h)| h.next.is_none() && h.key_ids.is_some())
            .map(|(rid, _)| *rid)
            .collect();
        for rid in egress {
            if let Some(h) = self.hops.get_mut(&rid) {
                h.key_ids = None;
            }
            // Torn down towards its origin, which sets up another.
            self.remove_hop(&rid, false, true);
        }
        self.finish(now_ms);
    }

    pub fn tick(&mut self, now_ms: u64) {
        let gone = self.lsdb.expire(now_ms);
        if !gone.is_empty() {
            self.topo_dirty = true;
            if gone.contains(&self.id) {
                self.originate_pending = true;
                self.originate_urgent = true;
            }
        }
        if now_ms >= self.next_refresh {
            self.originate_pending = true;
            self.originate_urgent = true;
        }
        self.routes_tick(now_ms);
        self.finish(now_ms);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next time `tick` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.next_refresh;
        if self.originate_pending {
            t = t.min(
                self.last_originate
                    .saturating_add(self.cfg.advert_min_interval_ms),
            );
        }
        if let Some(e) = self.lsdb.next_expiry() {
            t = t.min(e);
        }
        for n in self.nbs.values() {
            if let Some(d) = n.flood.next_due() {
                t = t.min(d);
            }
        }
        if let Some(r) = self.routes_next_timer() {
            t = t.min(r);
        }
        (t != u64::MAX).then_some(t)
    }

    /// Own (ingress) routes.
    pub fn routes(&self, now_ms: u64) -> Vec<RouteInfo> {
        let mut out = Vec::new();
        for (dst, d) in &self.dests {
            for (rid, role) in [
                (d.primary, RouteRole::Primary),
                (d.backup, RouteRole::Backup),
                (d.replacing, RouteRole::Replacement),
            ] {
                let Some(rid) = rid else { continue };
                let Some(r) = self.own.get(&rid) else {
                    continue;
                };
                let label = match r.state {
                    OwnState::Up { label } => Some(label),
                    OwnState::Pending { .. } => None,
                };
                let active = label.is_some()
                    && self
                        .installed
                        .get(dst)
                        .is_some_and(|(via, l, _)| (*via, Some(*l)) == (r.first_hop(), label));
                out.push(RouteInfo {
                    dst: *dst,
                    rid,
                    path: r.path.clone(),
                    role,
                    state: if label.is_some() {
                        RouteState::Up
                    } else {
                        RouteState::Pending
                    },
                    active,
                    label,
                    rev_label: r.rev_label,
                    age_ms: now_ms.saturating_sub(r.created),
                });
            }
        }
        out
    }

    /// Transit / egress route states held by this node.
    pub fn transit(&self) -> Vec<HopInfo> {
        self.hops
            .iter()
            .map(|(rid, h)| HopInfo {
                rid: *rid,
                prev: h.prev,
                next: h.next,
                fwd_in: h.fwd_in,
                fwd_out: h.fwd_out,
                rev_in: h.rev_in,
                rev_out: h.rev_out,
                expires_ms: h.expires,
            })
            .collect()
    }

    /// Current ingress mapping for `dst` (what the last RouteUp said).
    pub fn mapping(&self, dst: &NodeId) -> Option<(NodeId, u32, u64)> {
        self.installed.get(dst).copied()
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.c.clone();
        c.lsdb_size = self.lsdb.len();
        c.lsdb_bytes = self.lsdb.bytes();
        c.own_seq = self.seq;
        c.adverts_accepted = self.lsdb.accepted;
        c.adverts_expired = self.lsdb.expired;
        c.adverts_evicted = self.lsdb.evicted;
        c.adverts_rejected = self.lsdb.rejected;
        c.routes_up = self.own.values().filter(|r| r.is_up()).count();
        c.routes_pending = self.own.len() - c.routes_up;
        c.backups_ready = self
            .dests
            .values()
            .filter(|d| {
                d.backup
                    .and_then(|b| self.own.get(&b))
                    .is_some_and(|r| r.is_up())
            })
            .count();
        c.mappings = self.installed.len();
        c.transit_states = self.hops.len();
        c.labels_in_use = self.labels.total_in_use();
        c
    }

    // ----- internals -------------------------------------------------------

    pub(super) fn send(&mut self, to: NodeId, msg: &Msg) {
        self.c.msgs_sent += 1;
        match msg {
            Msg::Advert(_) => self.c.adverts_sent += 1,
            Msg::LsaAck { .. } => self.c.acks_sent += 1,
            Msg::Setup { .. } => self.c.setups_sent += 1,
            Msg::SetupAck { .. } => self.c.setup_acks_sent += 1,
            Msg::Keepalive { .. } => self.c.keepalives_sent += 1,
            Msg::Teardown { .. } => self.c.teardowns_sent += 1,
        }
        self.actions.push_back(Action::Send {
            to,
            bytes: msg.encode(),
        });
    }

    fn originate(&mut self, now_ms: u64) {
        self.seq += 1;
        let links: Vec<(NodeId, u32)> = self.nbs.iter().map(|(n, s)| (*n, s.advertised)).collect();
        let flags = AdvertFlags {
            no_transit: self.cfg.no_transit,
            drain: self.cfg.drain,
        };
        let adv = Advert::new_signed(
            &self.key,
            self.id,
            self.seq,
            self.cfg.advert_lifetime_ms,
            links,
            flags,
            &self.cfg.services,
        );
        let msg = Msg::Advert(adv.clone()).encode();
        self.lsdb.insert(now_ms, adv, msg);
        self.c.adverts_originated += 1;
        self.last_originate = now_ms;
        self.next_refresh = now_ms.saturating_add(self.cfg.advert_refresh_ms.max(1));
        self.originate_pending = false;
        self.originate_urgent = false;
        self.topo_dirty = true;
        let id = self.id;
        self.flood_to_all(now_ms, id, None);
    }

    fn flood_to_all(&mut self, now_ms: u64, origin: NodeId, except: Option<NodeId>) {
        for (n, s) in self.nbs.iter_mut() {
            if Some(*n) == except {
                continue;
            }
            if !s.flood.bucket.has_token(now_ms) {
                self.c.flood_rate_limited += 1;
            }
            if !s.flood.enqueue(origin) {
                self.c.flood_superseded += 1;
            }
        }
    }

    fn on_advert(&mut self, now_ms: u64, from: NodeId, adv: Advert, msg: Vec<u8>) {
        self.c.adverts_received += 1;
        let (origin, seq) = (adv.origin, adv.seq);
        if origin == self.id {
            // Our own advert coming back. A newer seq than ours means a
            // previous incarnation of this node: jump past it.
            if seq > self.seq {
                if !adv.verify() {
                    self.lsdb.count_reject(Reject::BadSignature);
                    return;
                }
                self.c.own_advert_newer_seen += 1;
                self.seq = seq;
                self.originate_pending = true;
                self.originate_urgent = true;
            }
            self.ack(from, origin, seq);
            return;
        }
        if self.lsdb.get(&origin).is_none()
            && let Some(n) = self.nbs.get_mut(&from)
            && !n.new_origins.try_take(now_ms)
        {
            // Not acknowledged: the neighbour sends it again later.
            self.c.adverts_new_origin_limited += 1;
            return;
        }
        match self.lsdb.offer(now_ms, adv, msg) {
            // Origins evicted to make room are gone as if expired (see `tick`): the topology
            // is checked again (routes over them fail over), caches keyed by the LSDB version
            // are rebuilt, and flooding skips them (`pump` sends only what the LSDB holds).
            Ok(_evicted) => {
                if let Some(n) = self.nbs.get(&origin)
                    && let Some(lsdb_adv) = self.lsdb.advert(&origin)
                    && lsdb_adv
                        .links
                        .iter()
                        .any(|(to, c)| *to == self.id && claim_below(*c, n.advertised))
                {
                    self.c.cost_claims_below_ours += 1;
                }
                self.ack(from, origin, seq);
                if let Some(n) = self.nbs.get_mut(&from) {
                    n.flood.acked(&origin, seq, Some(seq));
                }
                self.flood_to_all(now_ms, origin, Some(from));
                self.topo_dirty = true;
            }
            Err(Reject::Replay) => {
                // Duplicate from flooding: the sender has it (implicit ack).
                self.ack(from, origin, seq);
                if let Some(n) = self.nbs.get_mut(&from) {
                    n.flood.acked(&origin, seq, Some(seq));
                }
            }
            Err(Reject::Stale) => {
                // Stop its retransmission and teach it our newer copy.
                self.ack(from, origin, seq);
                if let Some(n) = self.nbs.get_mut(&from) {
                    n.flood.enqueue(origin);
                }
            }
            // Acknowledged, so not sent again: a refused origin comes back with its next
            // refresh, when more of its links may be listed back (and it may stand higher).
            Err(Reject::TableFull) => self.ack(from, origin, seq),
            Err(Reject::Unsigned | Reject::BadSignature | Reject::BadLifetime) => {}
        }
    }

    fn ack(&mut self, to: NodeId, origin: NodeId, seq: u64) {
        self.send(to, &Msg::LsaAck { origin, seq });
    }

    /// Common epilogue of every entry point: originate if due, react to
    /// topology changes, push queued floods within the rate limits.
    fn finish(&mut self, now_ms: u64) {
        if self.originate_pending
            && (self.originate_urgent
                || now_ms
                    >= self
                        .last_originate
                        .saturating_add(self.cfg.advert_min_interval_ms))
        {
            self.originate(now_ms);
        }
        if self.topo_dirty {
            self.topo_dirty = false;
            self.routes_topology_changed(now_ms);
        }
        for id in std::mem::take(&mut self.dead_keys) {
            self.actions.push_back(Action::RemoveKey { id });
        }
        self.pump(now_ms);
    }

    fn pump(&mut self, now_ms: u64) {
        let retx = self.cfg.retransmit_ms.max(1);
        for (nb, s) in self.nbs.iter_mut() {
            self.c.flood_retransmits += s.flood.requeue_due(now_ms) as u64;
            while s.flood.queue_len() > 0 && s.flood.bucket.try_take(now_ms) {
                let Some(origin) = s.flood.pop() else { break };
                let Some(e) = self.lsdb.get(&origin) else {
                    continue;
                };
                s.flood
                    .sent(origin, e.advert.seq, now_ms.saturating_add(retx));
                self.c.msgs_sent += 1;
                self.c.adverts_sent += 1;
                self.actions.push_back(Action::Send {
                    to: *nb,
                    bytes: e.msg.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod claim_tests {
    use super::claim_below;

    #[test]
    fn only_a_claim_far_below_ours_counts_as_a_lie() {
        // Cost 0 against an operator cost of 1 s, or half of a measured 10 ms.
        assert!(claim_below(0, 1_000_000));
        assert!(claim_below(4_000, 10_000));
        // RTT jitter between the two ends of a fast link, or a claim above ours: not a lie.
        assert!(!claim_below(20, 50));
        assert!(!claim_below(600, 1_500));
        assert!(!claim_below(9_000, 10_000));
        assert!(!claim_below(20_000, 10_000));
    }
}
