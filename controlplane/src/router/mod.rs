//! The router core: what the controlplane decides, without I/O or a clock.
//!
//! It owns the node manager and the per-link state the dataplane needs (sessions, data keys
//! and their rotation, RTT and cost), the deliver rules, the app attachments and services, the
//! punt queue and route-usage tracking. Inputs are `handle_*(now, ...)` calls from the driver
//! ([`crate::run`]); outputs are [`Output`] values drained with [`Router::poll_output`] in
//! order, and [`Router::poll_timeout`] says when to call [`Router::handle_timeout`] next.
//!
//! Ordering contract: fib changes are queued as [`Output::Fib`] and made live by
//! [`Output::Commit`]; a message that announces a rule (a SetupAck's label) is only emitted
//! after the commit that installs it, so the driver runs the outputs strictly in order.

mod attach;
mod mirror;
mod reload;
#[cfg(test)]
mod tests;
mod views;

use crate::config::Config;
use crate::identity::NodeId;
use crate::link::LinkParams;
use crate::linkcore::{self, DataKeys, KeyStep, Metric, RekeyPolicy};
use crate::messenger::Service;
use crate::nm::{Action, NodeManager, RuleThen};
use dataplane::fibproto::{FibMsg, Key, RuleAction, Traffic};
use mirror::Mirror;
use netbase::Prefix;
pub use reload::Reloaded;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Packets queued per destination while its route is set up.
pub const QUEUE_PER_DST: usize = 32;
/// How long a queued packet waits for its route.
pub const QUEUE_TTL: Duration = Duration::from_secs(3);
/// An unconfirmed rekey request is repeated after this long.
const REKEY_RETRY: Duration = Duration::from_secs(2);
/// How long a link's previous receive key keeps opening frames after a rotation: frames in
/// flight and in socket queues are long gone by then; after it, a forged frame costs one AEAD
/// attempt instead of two.
pub const PREVIOUS_KEY_LIFETIME: Duration = Duration::from_secs(10);
/// Punts the router takes per second from its dataplane (all shards), and the burst: each
/// may start a route setup. The dataplane already limits each shard (`PUNTS_PER_SEC`); this
/// bounds the router's own work whatever the shard count.
pub const PUNTS_PER_SEC: u32 = 2000;
const PUNT_BURST: u32 = 500;
/// The address index is rebuilt from the known nodes when it outgrows twice its size after the
/// last rebuild, and at least this: addresses remembered for nodes that left since (an ended
/// route's origin, a node gone from the LSDB) go then, with no punt miss needed, and each
/// rebuild's hashing (one SHA-256 per known node) is paid for by as many new addresses.
const INDEX_REBUILD_MIN: usize = 1024;

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Queue this message on the fib ring (it takes effect at the next [`Output::Commit`]).
    Fib(FibMsg),
    /// Commit the queued fib changes; a refusal is reported with [`Router::fib_refused`].
    Commit,
    /// Inject a queued packet whose route came up; count it with [`Router::injected`].
    Inject(Vec<u8>),
    /// Send a node-manager message on link `link`.
    Send {
        /// The link (as numbered in [`LinkUp::link`]).
        link: u64,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Send a rekey request or confirmation on link `link`.
    SendRekey {
        /// The link.
        link: u64,
        /// Key generation.
        generation: u32,
        /// Confirmation.
        ack: bool,
    },
    /// Close link `link` (it will report down).
    Close {
        /// The link.
        link: u64,
    },
    /// Publish these services with the messengers.
    Publish(Vec<Service>),
}

/// A link that came up, as the router needs it.
#[derive(Debug, Clone)]
pub struct LinkUp {
    /// Link number.
    pub link: u64,
    /// Who.
    pub peer: NodeId,
    /// Whether we dialled.
    pub initiator: bool,
    /// Our dataplane parameters as sent.
    pub local: LinkParams,
    /// The peer's (its data endpoint as we reach it).
    pub remote: LinkParams,
    /// Data send key (generation 0).
    pub data_tx: [u8; 32],
    /// Data receive key (generation 0).
    pub data_rx: [u8; 32],
    /// The peer claimed another data address than the one it links from (it was replaced).
    pub endpoint_replaced: bool,
}

struct Link {
    endpoint: SocketAddr,
    id: u64,
    session: u32,
    peer_session: u32,
    peer_shards: u16,
    cipher: dataplane::wire::Cipher,
    initiator: bool,
    metric: Metric,
    keys: DataKeys,
    /// When the dataplane forgets the receive key of before the last rotation.
    forget_previous_at: Option<Instant>,
}

/// Router counters.
#[derive(Default, Debug, Clone)]
pub struct Stats {
    /// Packets punted by the dataplane.
    pub punts: u64,
    /// Punted packets injected after their route came up.
    pub injected: u64,
    /// Punted packets dropped (queue full, expired, unknown destination).
    pub punt_drops: u64,
    /// Links that came up.
    pub links_up: u64,
    /// Links that went down.
    pub links_down: u64,
    /// Of those, links the dataplane found silent (liveness probes) before their keepalive.
    pub links_silent: u64,
    /// Fib commits refused by the dataplane.
    pub fib_errors: u64,
    /// Punts dropped over the router's punt budget ([`PUNTS_PER_SEC`]).
    pub punts_over_budget: u64,
    /// Neighbours that claimed a data address other than the one they link from.
    pub endpoint_claims_replaced: u64,
    /// Data-key rotations completed.
    pub rekeys: u64,
    /// Rotation requests refused: sooner than `MIN_REKEY_INTERVAL` after the last one.
    pub rekeys_too_soon: u64,
    /// Rekey messages that fit no step, or repeats answered once already (see
    /// [`DataKeys::ignored`]).
    pub rekeys_ignored: u64,
    /// App socket requests refused.
    pub app_errors: u64,
    /// Times the dataplane went away (and its links were closed).
    pub dataplane_restarts: u64,
}

/// The router core. See the module documentation.
pub struct Router {
    cfg: Config,
    me: NodeId,
    nm: NodeManager,
    epoch: Instant,
    links: HashMap<NodeId, Link>,
    queued: HashMap<NodeId, VecDeque<(Instant, Vec<u8>)>>,
    by_addr: HashMap<IpAddr, NodeId>,
    /// Prefixes apps attached to nodes, per app connection.
    attached: HashMap<u64, HashMap<NodeId, Vec<Prefix>>>,
    /// Attached prefixes routed in the dataplane now, and to which node.
    programmed: HashMap<Prefix, NodeId>,
    /// Deliver rules installed: (session, label) -> the node whose route ends here.
    delivers: HashMap<(u32, u32), (NodeId, u64)>,
    /// Services apps published, per app connection.
    app_services: HashMap<u64, Vec<Service>>,
    /// Whether a messenger client takes [`Output::Publish`].
    messenger: bool,
    /// The dataplane's per-session traffic, as last read.
    traffic: HashMap<u32, Traffic>,
    /// Per-route packets sent, as last read (to see which routes carry traffic).
    route_tx: HashMap<Prefix, u64>,
    /// What the dataplane was told (to program a restarted one again).
    mirror: Mirror,
    /// The LSDB version `by_addr` was last rebuilt for.
    indexed: Option<u64>,
    /// `by_addr` is rebuilt when it grows past this ([`INDEX_REBUILD_MIN`]).
    index_limit: usize,
    punt_budget: crate::nm::flood::TokenBucket,
    dirty: bool,
    out: VecDeque<Output>,
    /// Counters for `ru`.
    pub stats: Stats,
}

fn prefix(id: &NodeId) -> Prefix {
    Prefix::host(IpAddr::V6(id.overlay_addr()))
}

impl Router {
    /// A router for `me` driving `nm`, with `epoch` the time the node manager counts from.
    /// `messenger` says whether a messenger client takes published services.
    pub fn new(cfg: Config, me: NodeId, nm: NodeManager, epoch: Instant, messenger: bool) -> Self {
        let mut r = Router {
            cfg,
            me,
            nm,
            epoch,
            links: HashMap::new(),
            queued: HashMap::new(),
            by_addr: HashMap::new(),
            attached: HashMap::new(),
            programmed: HashMap::new(),
            delivers: HashMap::new(),
            app_services: HashMap::new(),
            messenger,
            traffic: HashMap::new(),
            route_tx: HashMap::new(),
            mirror: Mirror::default(),
            indexed: None,
            index_limit: INDEX_REBUILD_MIN,
            punt_budget: crate::nm::flood::TokenBucket::new(PUNTS_PER_SEC, PUNT_BURST, 0),
            dirty: false,
            out: VecDeque::new(),
            stats: Stats::default(),
        };
        r.remember(me);
        r
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Router::handle_timeout`] is due next (the node manager's timers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nm
            .poll_timeout()
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// The node manager's timers and whatever they decide; the punt queue's expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.nm.tick(self.ms(now));
        self.actions();
        self.expire_queued(now);
    }

    /// Once a second: keep the routes of attachments up and rotate data keys that are due.
    pub fn handle_second(&mut self, now: Instant) {
        self.keep_attached(now);
        self.rekey_timers(now);
        self.forget_previous_keys(now);
        self.actions();
    }

    /// Ends a turn of the driver: the fib changes queued since the last commit become one
    /// [`Output::Commit`] (each commit costs the dataplane a copy of its tables).
    pub fn flush(&mut self) {
        self.commit();
    }

    /// The dataplane refused a commit.
    pub fn fib_refused(&mut self, why: &str) {
        self.stats.fib_errors += 1;
        tracing::error!("dataplane refused a change: {why}");
    }

    /// An [`Output::Inject`] reached the dataplane.
    pub fn injected(&mut self) {
        self.stats.injected += 1;
    }

    /// The messenger client is gone: services are no longer published.
    pub fn messenger_gone(&mut self) {
        self.messenger = false;
    }

    /// Read access for the views and tests.
    pub fn node_manager(&self) -> &NodeManager {
        &self.nm
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn fib(&mut self, m: FibMsg) {
        self.mirror.apply(&m);
        self.out.push_back(Output::Fib(m));
        self.dirty = true;
    }

    /// The dataplane went away (its process exited, or another one serves its socket). Every
    /// link's data session lived in it, with counters the neighbours' replay windows have seen,
    /// so the links are closed: they come back with fresh sessions and keys, and until then the
    /// neighbours route around this node. What the router decides meanwhile is kept in its
    /// mirror for [`Router::handle_dataplane_back`].
    pub fn handle_dataplane_lost(&mut self, now: Instant) {
        self.stats.dataplane_restarts += 1;
        let mut links: Vec<(NodeId, u64)> = self.links.iter().map(|(p, l)| (*p, l.id)).collect();
        links.sort();
        for (peer, link) in links {
            self.out.push_back(Output::Close { link });
            self.handle_link_down(now, peer, link, "the dataplane went away");
        }
        // Counters of the old dataplane mean nothing to the next one.
        self.route_tx.clear();
        self.traffic.clear();
    }

    /// A dataplane is serving again (its tables empty): it gets everything the router holds,
    /// in one commit.
    /// Route keys are not given again (see [`mirror`]): the routes this node is an end of
    /// are set up anew.
    pub fn handle_dataplane_back(&mut self, now: Instant) {
        self.out.push_back(Output::Fib(FibMsg::Clear));
        for m in self.mirror.replay() {
            self.out.push_back(Output::Fib(m));
        }
        self.dirty = true;
        self.commit();
        let ms = self.ms(now);
        self.nm.data_keys_lost(ms);
        self.actions();
        self.commit();
    }

    fn commit(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.out.push_back(Output::Commit);
        }
    }

    fn cost_of(&self, peer: &NodeId, rtt: Option<u32>) -> u32 {
        self.cfg
            .neighbours
            .iter()
            .find(|n| n.pk == *peer)
            .and_then(|n| n.cost_us)
            .or(rtt)
            .unwrap_or(1000)
            .max(1)
    }

    fn remember(&mut self, id: NodeId) {
        self.by_addr.insert(IpAddr::V6(id.overlay_addr()), id);
        if self.by_addr.len() > self.index_limit {
            self.rebuild_index();
        }
    }

    fn live(&self, peer: &NodeId, link: u64) -> bool {
        self.links.get(peer).is_some_and(|l| l.id == link)
    }

    /// A link came up. A second link to a peer replaces the first unless the first is the
    /// one the tie-break keeps ([`linkcore::keep_new_link`]); the loser is closed.
    pub fn handle_link_up(&mut self, now: Instant, up: LinkUp) {
        let peer = up.peer;
        if let Some(old) = self.links.get(&peer) {
            if !linkcore::keep_new_link(&self.me, &peer, up.initiator, old.initiator) {
                self.out.push_back(Output::Close { link: up.link });
                return;
            }
            let (old_link, old_session) = (old.id, old.session);
            self.out.push_back(Output::Close { link: old_link });
            self.fib(FibMsg::RemoveSession { id: old_session });
        }
        if up.endpoint_replaced {
            self.stats.endpoint_claims_replaced += 1;
        }
        let cipher = up.local.cipher_with(&up.remote);
        self.fib(FibMsg::AddSession {
            id: up.local.session_id,
            peer_id: up.remote.session_id,
            peer: up.remote.data_endpoint,
            peer_shards: up.remote.data_shards,
            cipher,
            tx_key: Key(up.data_tx),
            rx_key: Key(up.data_rx),
            liveness: self.cfg.liveness,
        });
        self.remember(peer);
        let cost = self.cost_of(&peer, None);
        self.links.insert(
            peer,
            Link {
                endpoint: up.remote.data_endpoint,
                id: up.link,
                session: up.local.session_id,
                peer_session: up.remote.session_id,
                peer_shards: up.remote.data_shards,
                cipher,
                initiator: up.initiator,
                metric: Metric::new(cost),
                keys: DataKeys::new(now, up.initiator, up.data_tx, up.data_rx),
                forget_previous_at: None,
            },
        );
        self.stats.links_up += 1;
        tracing::info!("link up to {} ({})", peer.hex(), up.remote.data_endpoint);
        let ms = self.ms(now);
        self.nm.link_up(ms, peer, cost);
        self.actions();
    }

    /// Link `link` to `peer` ended (an older, replaced link's end changes nothing).
    pub fn handle_link_down(&mut self, now: Instant, peer: NodeId, link: u64, why: &str) {
        if !self.live(&peer, link) {
            return;
        }
        if let Some(l) = self.links.remove(&peer) {
            self.fib(FibMsg::RemoveSession { id: l.session });
            self.delivers.retain(|(s, _), _| *s != l.session);
        }
        self.stats.links_down += 1;
        tracing::warn!("link down to {}: {why}", peer.hex());
        let ms = self.ms(now);
        self.nm.link_down(ms, peer);
        self.actions();
    }

    /// The dataplane heard nothing on data session `session` for `silent_ms` (its liveness
    /// probes, [`dataplane::liveness`]): the link is down now, tens of ms before its
    /// keepalive would say so. It is closed (the dialling side dials again) and its routes
    /// fail over to their backups.
    pub fn handle_session_down(&mut self, now: Instant, session: u32, silent_ms: u32) {
        let Some((peer, link)) = self
            .links
            .iter()
            .find(|(_, l)| l.session == session)
            .map(|(p, l)| (*p, l.id))
        else {
            return;
        };
        self.stats.links_silent += 1;
        self.out.push_back(Output::Close { link });
        self.handle_link_down(
            now,
            peer,
            link,
            &format!("its data session was silent for {silent_ms} ms"),
        );
    }

    /// A round trip measured on link `link`; the cost is re-advertised on a real change.
    pub fn handle_rtt(&mut self, now: Instant, peer: NodeId, link: u64, rtt_us: u32) {
        if !self.live(&peer, link) {
            return;
        }
        let smoothed = match self.links.get_mut(&peer) {
            Some(l) => l.metric.sample(rtt_us),
            None => return,
        };
        let cost = self.cost_of(&peer, Some(smoothed));
        let changed = self
            .links
            .get_mut(&peer)
            .is_some_and(|l| l.metric.readvertise(cost));
        if changed {
            let ms = self.ms(now);
            self.nm.link_cost(ms, peer, cost);
            self.actions();
        }
    }

    /// A node-manager message from the peer on link `link`.
    pub fn handle_msg(&mut self, now: Instant, peer: NodeId, link: u64, bytes: &[u8]) {
        if self.live(&peer, link) {
            let ms = self.ms(now);
            self.nm.handle(ms, peer, bytes);
            self.actions();
        }
    }

    /// A rekey request or confirmation from the peer on link `link`.
    pub fn handle_rekey(
        &mut self,
        now: Instant,
        peer: NodeId,
        link: u64,
        generation: u32,
        ack: bool,
    ) {
        let Some(l) = self.links.get_mut(&peer).filter(|l| l.id == link) else {
            return;
        };
        let (before, ignored) = (l.keys.refused_too_soon(), l.keys.ignored());
        let (steps, rotated) = l.keys.handle(now, generation, ack);
        self.stats.rekeys_too_soon += l.keys.refused_too_soon() - before;
        self.stats.rekeys_ignored += l.keys.ignored() - ignored;
        if rotated {
            self.stats.rekeys += 1;
            l.forget_previous_at = Some(now + PREVIOUS_KEY_LIFETIME);
        }
        self.key_steps(&peer, steps);
    }

    /// Previous receive keys whose lifetime after a rotation ran out.
    fn forget_previous_keys(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .links
            .values_mut()
            .filter(|l| l.forget_previous_at.is_some_and(|t| t <= now))
            .map(|l| {
                l.forget_previous_at = None;
                l.session
            })
            .collect();
        for id in due {
            self.fib(FibMsg::ForgetPreviousKey { id });
        }
    }

    /// Initiator side of every link: rotations due by time or by volume.
    fn rekey_timers(&mut self, now: Instant) {
        let policy = RekeyPolicy {
            every: Duration::from_secs(self.cfg.rekey_secs),
            bytes: self.cfg.rekey_bytes,
            retry: REKEY_RETRY,
        };
        let mut peers: Vec<NodeId> = self.links.keys().copied().collect();
        peers.sort();
        for peer in peers {
            let Some(l) = self.links.get_mut(&peer) else {
                continue;
            };
            let used = self
                .traffic
                .get(&l.session)
                .map(|t| t.rx_bytes + t.tx_bytes)
                .unwrap_or(0);
            let steps = l.keys.poll(now, used, &policy);
            self.key_steps(&peer, steps);
        }
    }

    fn key_steps(&mut self, peer: &NodeId, steps: Vec<KeyStep>) {
        let Some(l) = self.links.get(peer) else {
            return;
        };
        let (session, link) = (l.session, l.id);
        let (peer_id, endpoint, peer_shards, cipher) =
            (l.peer_session, l.endpoint, l.peer_shards, l.cipher);
        for s in steps {
            match s {
                KeyStep::Program { tx, rx } => {
                    self.fib(FibMsg::AddSession {
                        id: session,
                        peer_id,
                        peer: endpoint,
                        peer_shards,
                        cipher,
                        tx_key: Key(tx),
                        rx_key: Key(rx),
                        liveness: self.cfg.liveness,
                    });
                    self.commit();
                }
                KeyStep::Send { generation, ack } => self.out.push_back(Output::SendRekey {
                    link,
                    generation,
                    ack,
                }),
            }
        }
    }

    fn session_of(&self, n: &NodeId) -> Option<u32> {
        self.links.get(n).map(|l| l.session)
    }

    /// Turns the node manager's actions into outputs.
    fn actions(&mut self) {
        while let Some(a) = self.nm.poll_action() {
            match a {
                Action::Send { to, bytes } => {
                    // Rules queued before this message must be live before the message can
                    // announce them (a SetupAck's label is used as soon as it arrives).
                    self.commit();
                    if let Some(l) = self.links.get(&to) {
                        self.out.push_back(Output::Send { link: l.id, bytes });
                    }
                }
                Action::InstallRule {
                    in_from,
                    in_label,
                    then,
                } => {
                    let Some(session) = self.session_of(&in_from) else {
                        continue;
                    };
                    let action = match then {
                        RuleThen::Forward { to, label } => match self.session_of(&to) {
                            Some(s) => RuleAction::Forward { session: s, label },
                            None => continue,
                        },
                        RuleThen::Deliver { origin, key } => {
                            self.remember(origin);
                            self.delivers.insert((session, in_label), (origin, key));
                            RuleAction::Deliver {
                                sources: self.sources_of(&origin),
                                key,
                            }
                        }
                    };
                    self.fib(FibMsg::AddRule {
                        session,
                        label: in_label,
                        action,
                    });
                }
                Action::RemoveRule { in_from, in_label } => {
                    if let Some(session) = self.session_of(&in_from) {
                        self.delivers.remove(&(session, in_label));
                        self.fib(FibMsg::RemoveRule {
                            session,
                            label: in_label,
                        });
                    }
                }
                Action::AddKey { id, cipher, key } => {
                    self.fib(FibMsg::AddRouteKey { id, cipher, key });
                }
                Action::RemoveKey { id } => {
                    // The dataplane drops whatever still names the key; so does this copy.
                    self.delivers.retain(|_, (_, k)| *k != id);
                    self.fib(FibMsg::RemoveRouteKey { id });
                }
                Action::RouteUp {
                    dst,
                    via,
                    label,
                    key,
                } => {
                    self.remember(dst);
                    let Some(session) = self.session_of(&via) else {
                        continue;
                    };
                    self.fib(FibMsg::AddRoute {
                        prefix: prefix(&dst),
                        session,
                        label,
                        key,
                        keepalive: true,
                    });
                    if self.has_attachments(&dst) {
                        self.program_attached(dst);
                    }
                    self.commit();
                    if let Some(q) = self.queued.remove(&dst) {
                        for (_, p) in q {
                            self.out.push_back(Output::Inject(p));
                        }
                    }
                }
                Action::RouteDown { dst } => {
                    self.fib(FibMsg::RemoveRoute {
                        prefix: prefix(&dst),
                    });
                    if self.has_attachments(&dst) {
                        self.program_attached(dst);
                    }
                }
            }
        }
    }

    /// A packet the dataplane punted (no route to `dst`): queued (bounded) while its route is
    /// set up, dropped when no node is known for `dst`.
    pub fn handle_punt(&mut self, now: Instant, dst: IpAddr, packet: Vec<u8>) {
        self.stats.punts += 1;
        if !self.punt_budget.try_take(self.ms(now)) {
            self.stats.punts_over_budget += 1;
            self.stats.punt_drops += 1;
            return;
        }
        let Some(node) = self
            .by_addr
            .get(&dst)
            .copied()
            .or_else(|| self.attached_node_for(dst))
            .or_else(|| self.lookup_addr(&dst))
        else {
            self.stats.punt_drops += 1;
            return;
        };
        let q = self.queued.entry(node).or_default();
        if q.len() >= QUEUE_PER_DST {
            self.stats.punt_drops += 1;
            return;
        }
        q.push_back((now, packet));
        let ms = self.ms(now);
        self.nm.request_route(ms, node);
        self.actions();
    }

    fn expire_queued(&mut self, now: Instant) {
        let mut expired = 0;
        for q in self.queued.values_mut() {
            while q
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > QUEUE_TTL)
            {
                q.pop_front();
                expired += 1;
            }
        }
        self.queued.retain(|_, q| !q.is_empty());
        self.stats.punt_drops += expired;
    }

    /// `dst` after rebuilding the address index, if the LSDB changed since it was built: a
    /// miss costs a hash lookup, and the SHA-256 of every known node only once per LSDB change
    /// (not once per punt, as a local process sending to random overlay addresses could make
    /// it). The rebuild also drops addresses of nodes no longer known.
    fn lookup_addr(&mut self, dst: &IpAddr) -> Option<NodeId> {
        if self.indexed != Some(self.nm.lsdb_version()) {
            self.rebuild_index();
        }
        self.by_addr.get(dst).copied()
    }

    /// `by_addr` again from the nodes known now (the LSDB, links, routes ending here and
    /// attachments), dropping the others.
    fn rebuild_index(&mut self) {
        self.indexed = Some(self.nm.lsdb_version());
        self.by_addr.clear();
        let mut nodes: Vec<NodeId> = vec![self.me];
        nodes.extend(self.nm.lsdb_summary().into_iter().map(|(n, _)| n));
        nodes.extend(self.links.keys().copied());
        nodes.extend(self.delivers.values().map(|(n, _)| *n));
        nodes.extend(self.attached.values().flat_map(|m| m.keys().copied()));
        for n in nodes {
            self.by_addr.insert(IpAddr::V6(n.overlay_addr()), n);
        }
        self.index_limit = (2 * self.by_addr.len()).max(INDEX_REBUILD_MIN);
    }

    /// The dataplane's counters: routes that carried traffic since the last read are kept
    /// alive; per-session traffic drives rekeys by volume and the `peers` view.
    pub fn handle_counters(
        &mut self,
        now: Instant,
        routes: Vec<(Prefix, Traffic)>,
        sessions: Vec<(u32, Traffic)>,
    ) {
        self.traffic = sessions.into_iter().collect();
        let ms = self.ms(now);
        for (p, t) in routes {
            let prev = self.route_tx.insert(p, t.tx_pkts).unwrap_or(0);
            if t.tx_pkts > prev
                && let Some(n) = self.by_addr.get(&p.addr()).copied()
            {
                self.nm.touch_route(ms, n);
            }
        }
        self.actions();
    }
}
