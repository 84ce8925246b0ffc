//! The driver: links, node manager, dataplane (fib ring) and viscript, in one loop.
//!
//! Link events and node-manager actions are turned into fib-ring changes (sessions per link,
//! rules, routes), committed together once per turn. Packets the dataplane punts for a node
//! with no route are queued (bounded) while the node manager sets a route up, then injected.

use crate::appsock;
use crate::config::Config;
use crate::identity::{Identity, NodeId};
use crate::links::{self, LinkCtx, LinkEvent, LinkHandle};
use crate::nm::{self, Action, NodeManager, RuleThen};
use dataplane::fib::Prefix;
use dataplane::fibproto::{FibMsg, RuleAction};
use dataplane::fibring::FibClient;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// Packets queued per destination while its route is set up.
const QUEUE_PER_DST: usize = 32;
/// How long a queued packet waits for its route.
const QUEUE_TTL: Duration = Duration::from_secs(3);
/// Longest sleep of the loop.
const TURN: Duration = Duration::from_millis(100);

struct Link {
    endpoint: std::net::SocketAddr,
    id: u64,
    session: u32,
    initiator: bool,
    handle: LinkHandle,
    rtt_us: Option<u32>,
    cost_sent: u32,
    keys: Keys,
}

/// A link's data keys and where they are in a rekey.
struct Keys {
    peer_id: u32,
    peer_shards: u16,
    cipher: dataplane::wire::Cipher,
    tx: [u8; 32],
    rx: [u8; 32],
    generation: u32,
    /// Initiator: the generation asked for and when, awaiting the peer's confirmation.
    pending: Option<(u32, Instant)>,
    since: Instant,
    bytes_at_rekey: u64,
}

/// Live state, for inspection and counters.
pub struct Driver {
    cfg: Config,
    me: NodeId,
    nm: NodeManager,
    fib: FibClient,
    links: HashMap<NodeId, Link>,
    queued: HashMap<NodeId, VecDeque<(Instant, Vec<u8>)>>,
    by_addr: HashMap<IpAddr, NodeId>,
    dirty: bool,
    epoch: Instant,
    /// Prefixes apps attached to nodes, per app connection.
    attached: HashMap<u64, HashMap<NodeId, Vec<Prefix>>>,
    /// Attached prefixes routed in the dataplane now, and to which node.
    programmed: HashMap<Prefix, NodeId>,
    /// Deliver rules installed: (session, label) -> the node whose route ends here.
    delivers: HashMap<(u32, u32), NodeId>,
    /// Services apps published, per app connection.
    app_services: HashMap<u64, Vec<crate::messenger::Service>>,
    /// The messenger client's record updates (none without messengers).
    services_tx: Option<std::sync::mpsc::Sender<crate::msgclient::AppMsg>>,
    /// Counters for `ru`.
    pub stats: Stats,
}

/// Driver counters.
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
    /// Fib commits refused by the dataplane.
    pub fib_errors: u64,
    /// Data-key rotations completed.
    pub rekeys: u64,
    /// App socket requests refused.
    pub app_errors: u64,
}

impl Keys {
    /// The addressing part (keys zeroed) for programming a session with other keys.
    fn clone_meta(&self) -> Keys {
        Keys {
            peer_id: self.peer_id,
            peer_shards: self.peer_shards,
            cipher: self.cipher,
            tx: [0; 32],
            rx: [0; 32],
            generation: self.generation,
            pending: None,
            since: self.since,
            bytes_at_rekey: self.bytes_at_rekey,
        }
    }
}

fn prefix(id: &NodeId) -> Prefix {
    Prefix {
        addr: IpAddr::V6(id.overlay_addr()),
        len: 128,
    }
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
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
    }

    fn link_event(&mut self, ev: LinkEvent) {
        let now = self.now_ms();
        match ev {
            LinkEvent::Up(up) => {
                let peer = up.peer;
                // Two links to one peer (both dialled): keep the one the smaller key dialled.
                if let Some(old) = self.links.get(&peer) {
                    let keep_new =
                        (up.initiator && self.me < peer) || (!up.initiator && peer < self.me);
                    let keep_old =
                        (old.initiator && self.me < peer) || (!old.initiator && peer < self.me);
                    if keep_old && !keep_new {
                        up.handle.close();
                        return;
                    }
                    old.handle.close();
                    let _ = self.fib.send(&FibMsg::RemoveSession { id: old.session });
                }
                let cipher = up.local.cipher_with(&up.remote);
                let _ = self.fib.send(&FibMsg::AddSession {
                    id: up.local.session_id,
                    peer_id: up.remote.session_id,
                    peer: up.remote.data_endpoint,
                    peer_shards: up.remote.data_shards,
                    cipher,
                    tx_key: up.data_tx,
                    rx_key: up.data_rx,
                });
                self.dirty = true;
                self.remember(peer);
                let cost = self.cost_of(&peer, None);
                self.links.insert(
                    peer,
                    Link {
                        endpoint: up.remote.data_endpoint,
                        id: up.link,
                        session: up.local.session_id,
                        initiator: up.initiator,
                        handle: up.handle,
                        rtt_us: None,
                        cost_sent: cost,
                        keys: Keys {
                            peer_id: up.remote.session_id,
                            peer_shards: up.remote.data_shards,
                            cipher,
                            tx: up.data_tx,
                            rx: up.data_rx,
                            generation: 0,
                            pending: None,
                            since: Instant::now(),
                            bytes_at_rekey: 0,
                        },
                    },
                );
                self.stats.links_up += 1;
                eprintln!(
                    "skywire-control: link up to {} ({})",
                    peer.hex(),
                    up.remote.data_endpoint
                );
                self.nm.link_up(now, peer.0, cost);
            }
            LinkEvent::Down { peer, link, why } => {
                if self.links.get(&peer).is_some_and(|l| l.id == link) {
                    if let Some(l) = self.links.remove(&peer) {
                        let _ = self.fib.send(&FibMsg::RemoveSession { id: l.session });
                        self.delivers.retain(|(s, _), _| *s != l.session);
                        self.dirty = true;
                    }
                    self.stats.links_down += 1;
                    eprintln!("skywire-control: link down to {}: {why}", peer.hex());
                    self.nm.link_down(now, peer.0);
                }
            }
            LinkEvent::Rtt { peer, link, rtt_us } => {
                let Some(l) = self.links.get_mut(&peer).filter(|l| l.id == link) else {
                    return;
                };
                let s = match l.rtt_us {
                    None => rtt_us,
                    Some(old) => ((u64::from(old) * 7 + u64::from(rtt_us)) / 8) as u32,
                };
                l.rtt_us = Some(s);
                let sent = l.cost_sent;
                let cost = self.cost_of(&peer, Some(s));
                // Re-advertise only on a real change (25 %), not on jitter.
                if cost.abs_diff(sent) * 4 > sent {
                    if let Some(l) = self.links.get_mut(&peer) {
                        l.cost_sent = cost;
                    }
                    self.nm.link_cost(now, peer.0, cost);
                }
            }
            LinkEvent::Rekey {
                peer,
                link,
                generation,
                ack,
            } => {
                if self.links.get(&peer).is_none_or(|l| l.id != link) {
                    return;
                }
                self.rekey_event(peer, generation, ack);
            }
            LinkEvent::Msg { peer, link, bytes } => {
                if self.links.get(&peer).is_some_and(|l| l.id == link) {
                    self.nm.handle(now, peer.0, &bytes);
                }
            }
        }
    }

    fn program_keys(
        &mut self,
        session: u32,
        endpoint: std::net::SocketAddr,
        k: &Keys,
        tx: [u8; 32],
        rx: [u8; 32],
    ) {
        let _ = self.fib.send(&FibMsg::AddSession {
            id: session,
            peer_id: k.peer_id,
            peer: endpoint,
            peer_shards: k.peer_shards,
            cipher: k.cipher,
            tx_key: tx,
            rx_key: rx,
        });
        self.dirty = true;
        self.commit();
    }

    /// Rekey, initiator side: every `rekey_secs` or `rekey_bytes`, step 1 accepts the next
    /// receive key while still sending with the current one, then asks the peer to switch.
    fn rekey_timers(&mut self, traffic: &HashMap<u32, dataplane::fibproto::Traffic>) {
        let every = Duration::from_secs(self.cfg.rekey_secs);
        let bytes = self.cfg.rekey_bytes;
        let due: Vec<NodeId> = self
            .links
            .iter()
            .filter(|(_, l)| l.initiator)
            .filter(|(_, l)| match l.keys.pending {
                // No confirmation: ask again.
                Some((_, at)) => at.elapsed() > Duration::from_secs(2),
                None => {
                    let used = traffic
                        .get(&l.session)
                        .map(|t| t.rx_bytes + t.tx_bytes)
                        .unwrap_or(0);
                    l.keys.since.elapsed() >= every
                        || used.saturating_sub(l.keys.bytes_at_rekey) >= bytes
                }
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let Some(l) = self.links.get(&peer) else {
                continue;
            };
            let g = match l.keys.pending {
                Some((g, _)) => g,
                None => l.keys.generation + 1,
            };
            let (session, endpoint) = (l.session, l.endpoint);
            let new_rx = crate::link::next_key(&l.keys.rx, g);
            let tx = l.keys.tx;
            let k = l.keys.clone_meta();
            self.program_keys(session, endpoint, &k, tx, new_rx);
            if let Some(l) = self.links.get_mut(&peer) {
                l.keys.pending = Some((g, Instant::now()));
                l.keys.bytes_at_rekey = traffic
                    .get(&session)
                    .map(|t| t.rx_bytes + t.tx_bytes)
                    .unwrap_or(0);
                l.handle.send_rekey(g, false);
            }
        }
    }

    fn rekey_event(&mut self, peer: NodeId, generation: u32, ack: bool) {
        let Some(l) = self.links.get(&peer) else {
            return;
        };
        let (session, endpoint) = (l.session, l.endpoint);
        if !ack && !l.initiator {
            // Responder: switch both keys now (the initiator already accepts our next send key
            // and we keep accepting its current one as the previous key), then confirm.
            if generation == l.keys.generation + 1 {
                let tx = crate::link::next_key(&l.keys.tx, generation);
                let rx = crate::link::next_key(&l.keys.rx, generation);
                let k = l.keys.clone_meta();
                self.program_keys(session, endpoint, &k, tx, rx);
                if let Some(l) = self.links.get_mut(&peer) {
                    l.keys.tx = tx;
                    l.keys.rx = rx;
                    l.keys.generation = generation;
                    l.keys.since = Instant::now();
                }
                self.stats.rekeys += 1;
            }
            if let Some(l) = self.links.get(&peer)
                && generation <= l.keys.generation
            {
                l.handle.send_rekey(generation, true);
            }
        } else if ack && l.initiator && l.keys.pending.is_some_and(|(g, _)| g == generation) {
            // Initiator, step 2: the peer switched; send with the new key too.
            let tx = crate::link::next_key(&l.keys.tx, generation);
            let rx = crate::link::next_key(&l.keys.rx, generation);
            let k = l.keys.clone_meta();
            self.program_keys(session, endpoint, &k, tx, rx);
            if let Some(l) = self.links.get_mut(&peer) {
                l.keys.tx = tx;
                l.keys.rx = rx;
                l.keys.generation = generation;
                l.keys.pending = None;
                l.keys.since = Instant::now();
            }
            self.stats.rekeys += 1;
        }
    }

    fn session_of(&self, n: &nm::NodeId) -> Option<u32> {
        self.links.get(&NodeId(*n)).map(|l| l.session)
    }

    fn actions(&mut self) {
        while let Some(a) = self.nm.poll_action() {
            match a {
                Action::Send { to, bytes } => {
                    // Rules queued before this message must be live before the message can
                    // announce them (a SetupAck's label is used as soon as it arrives).
                    self.commit();
                    if let Some(l) = self.links.get(&NodeId(to)) {
                        l.handle.send(&bytes);
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
                        RuleThen::Deliver { origin } => {
                            let origin = NodeId(origin);
                            self.remember(origin);
                            self.delivers.insert((session, in_label), origin);
                            RuleAction::Deliver {
                                sources: self.sources_of(&origin),
                            }
                        }
                    };
                    let _ = self.fib.send(&FibMsg::AddRule {
                        session,
                        label: in_label,
                        action,
                    });
                    self.dirty = true;
                }
                Action::RemoveRule { in_from, in_label } => {
                    if let Some(session) = self.session_of(&in_from) {
                        self.delivers.remove(&(session, in_label));
                        let _ = self.fib.send(&FibMsg::RemoveRule {
                            session,
                            label: in_label,
                        });
                        self.dirty = true;
                    }
                }
                Action::RouteUp { dst, via, label } => {
                    let dst = NodeId(dst);
                    self.remember(dst);
                    let Some(session) = self.session_of(&via) else {
                        continue;
                    };
                    let _ = self.fib.send(&FibMsg::AddRoute {
                        prefix: prefix(&dst),
                        session,
                        label,
                        keepalive: true,
                    });
                    self.dirty = true;
                    if self.has_attachments(&dst) {
                        self.program_attached(dst);
                    }
                    self.commit();
                    if let Some(q) = self.queued.remove(&dst) {
                        for (_, p) in q {
                            if self.fib.send(&FibMsg::Inject { packet: p }).is_ok() {
                                self.stats.injected += 1;
                            }
                        }
                    }
                }
                Action::RouteDown { dst } => {
                    let _ = self.fib.send(&FibMsg::RemoveRoute {
                        prefix: prefix(&NodeId(dst)),
                    });
                    self.dirty = true;
                    if self.has_attachments(&NodeId(dst)) {
                        self.program_attached(NodeId(dst));
                    }
                }
            }
        }
    }

    /// Sources a route from `origin` may carry: its overlay address and what apps attached.
    fn sources_of(&self, origin: &NodeId) -> Vec<Prefix> {
        let mut v = vec![prefix(origin)];
        v.extend(self.attached_prefixes(origin));
        v.truncate(dataplane::fibproto::MAX_LIST);
        v
    }

    /// Whether apps attached prefixes to `node`, or its attached routes are still programmed
    /// (route events of other nodes need no attachment work).
    fn has_attachments(&self, node: &NodeId) -> bool {
        self.attached.values().any(|m| m.contains_key(node))
            || self.programmed.values().any(|n| n == node)
    }

    /// Every prefix attached to `node` (by any app connection).
    fn attached_prefixes(&self, node: &NodeId) -> Vec<Prefix> {
        let mut v: Vec<Prefix> = Vec::new();
        for p in self.attached.values().filter_map(|m| m.get(node)).flatten() {
            if !v.contains(p) {
                v.push(*p);
            }
        }
        v
    }

    /// The node an attached prefix holding `ip` belongs to (longest match).
    fn attached_node_for(&self, ip: IpAddr) -> Option<NodeId> {
        self.attached
            .values()
            .flat_map(|m| m.iter())
            .flat_map(|(n, ps)| ps.iter().map(move |p| (n, p)))
            .filter(|(_, p)| p.contains(ip))
            .max_by_key(|(_, p)| p.len)
            .map(|(n, _)| *n)
    }

    /// Brings the dataplane in line with the prefixes attached to `node`: routes for them
    /// follow the node's current route (none while it has none), and the deliver rules of
    /// routes from it accept them as sources.
    fn program_attached(&mut self, node: NodeId) {
        let want = self.attached_prefixes(&node);
        let via = self
            .nm
            .mapping(&node.0)
            .and_then(|(via, label)| self.session_of(&via).map(|s| (s, label)));
        let stale: Vec<Prefix> = self
            .programmed
            .iter()
            .filter(|(p, n)| **n == node && (via.is_none() || !want.contains(p)))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.programmed.remove(&p);
            let _ = self.fib.send(&FibMsg::RemoveRoute { prefix: p });
            self.dirty = true;
        }
        if let Some((session, label)) = via {
            for p in &want {
                let _ = self.fib.send(&FibMsg::AddRoute {
                    prefix: *p,
                    session,
                    label,
                    keepalive: true,
                });
                self.programmed.insert(*p, node);
                self.dirty = true;
            }
        }
        let rules: Vec<(u32, u32)> = self
            .delivers
            .iter()
            .filter(|(_, o)| **o == node)
            .map(|(k, _)| *k)
            .collect();
        let sources = self.sources_of(&node);
        for (session, label) in rules {
            let _ = self.fib.send(&FibMsg::AddRule {
                session,
                label,
                action: RuleAction::Deliver {
                    sources: sources.clone(),
                },
            });
            self.dirty = true;
        }
    }

    /// Answers one app-socket request.
    fn app_request(&mut self, conn: u64, req: appsock::Request) -> String {
        let r = match req {
            appsock::Request::WhoAmI => Ok(format!("{} {}", self.me.hex(), self.me.overlay_addr())),
            appsock::Request::Underlay => {
                let mut ips: Vec<IpAddr> = Vec::new();
                let all = self
                    .links
                    .values()
                    .map(|l| l.endpoint.ip())
                    .chain(
                        self.cfg
                            .neighbours
                            .iter()
                            .filter_map(|n| n.endpoint.map(|e| e.ip())),
                    )
                    .chain(self.cfg.messengers.iter().map(|(_, e)| e.ip()));
                for ip in all {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                Ok(ips
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(" "))
            }
            appsock::Request::Route { node } => Ok(if self.nm.mapping(&node.0).is_some() {
                "up".to_string()
            } else {
                "pending".to_string()
            }),
            appsock::Request::Detach { node } => {
                if let Some(m) = self.attached.get_mut(&conn) {
                    m.remove(&node);
                }
                self.program_attached(node);
                self.commit();
                Ok(String::new())
            }
            appsock::Request::Attach { node, prefixes } => self.attach(conn, node, prefixes),
            appsock::Request::Find { .. } => Err("find is answered by the messenger client".into()),
            appsock::Request::Service { kind, port } => {
                let list = self.app_services.entry(conn).or_default();
                list.retain(|s| s.kind != kind);
                list.push(crate::messenger::Service {
                    kind,
                    port,
                    meta: String::new(),
                });
                Ok(if self.publish_services() {
                    String::new()
                } else {
                    "unpublished (no messenger configured)".to_string()
                })
            }
        };
        match r {
            Ok(s) if s.is_empty() => "ok".to_string(),
            Ok(s) => format!("ok {s}"),
            Err(e) => {
                self.stats.app_errors += 1;
                format!("err {e}")
            }
        }
    }

    fn attach(&mut self, conn: u64, node: NodeId, prefixes: Vec<Prefix>) -> Result<String, String> {
        if node == self.me {
            return Err("cannot attach prefixes to this node itself".into());
        }
        for (c, m) in &self.attached {
            for (n, ps) in m {
                if *n == node {
                    continue;
                }
                // Nested prefixes are fine (longest match picks), the same one twice is not.
                if let Some(p) = prefixes.iter().find(|p| ps.contains(p)) {
                    return Err(format!(
                        "{p} is already attached to {} (app connection {c})",
                        &n.hex()[..16]
                    ));
                }
            }
        }
        self.remember(node);
        self.attached
            .entry(conn)
            .or_default()
            .insert(node, prefixes.clone());
        self.program_attached(node);
        self.commit();
        if self.nm.mapping(&node.0).is_none() {
            let now = self.now_ms();
            self.nm.request_route(now, node.0);
        }
        eprintln!(
            "skywire-control: app {conn} attached {} to {}",
            prefixes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            &node.hex()[..16]
        );
        Ok(String::new())
    }

    fn app_event(&mut self, ev: appsock::Event) {
        match ev {
            appsock::Event::Request {
                req: appsock::Request::Find { kind },
                reply,
                ..
            } => {
                // The messenger client answers (within its own timeout); the loop goes on.
                match &self.services_tx {
                    Some(tx) => {
                        if let Err(e) = tx.send(crate::msgclient::AppMsg::Find(kind, reply)) {
                            let crate::msgclient::AppMsg::Find(_, reply) = e.0 else {
                                return;
                            };
                            let _ = reply.send("err the messenger client stopped".into());
                        }
                    }
                    None => {
                        self.stats.app_errors += 1;
                        let _ = reply.send("err no messenger configured".into());
                    }
                }
            }
            appsock::Event::Request { conn, req, reply } => {
                let r = self.app_request(conn, req);
                let _ = reply.send(r);
            }
            appsock::Event::Closed { conn } => {
                if self.app_services.remove(&conn).is_some() {
                    self.publish_services();
                }
                if let Some(m) = self.attached.remove(&conn) {
                    for node in m.into_keys() {
                        eprintln!(
                            "skywire-control: app {conn} gone; detached from {}",
                            &node.hex()[..16]
                        );
                        self.program_attached(node);
                    }
                    self.commit();
                }
            }
        }
    }

    /// Sends the messenger client the configured services plus those apps published; false
    /// when there is no messenger to publish with.
    fn publish_services(&self) -> bool {
        let Some(tx) = &self.services_tx else {
            return false;
        };
        let mut all = self.cfg.services.clone();
        for s in self.app_services.values().flatten() {
            if !all.iter().any(|x| x.kind == s.kind && x.port == s.port) {
                all.push(s.clone());
            }
        }
        tx.send(crate::msgclient::AppMsg::Services(all)).is_ok()
    }

    /// Keeps the routes to nodes with attached prefixes up, used or not.
    fn keep_attached(&mut self) {
        let now = self.now_ms();
        let nodes: Vec<NodeId> = self
            .attached
            .values()
            .flat_map(|m| m.keys().copied())
            .collect();
        for n in nodes {
            if self.nm.mapping(&n.0).is_some() {
                self.nm.touch_route(now, n.0);
            } else {
                self.nm.request_route(now, n.0);
            }
        }
    }

    fn commit(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if let Err(e) = self.fib.commit(Duration::from_secs(2)) {
            self.stats.fib_errors += 1;
            eprintln!("skywire-control: dataplane refused a change: {e}");
        }
    }

    fn fib_messages(&mut self) {
        let now = self.now_ms();
        while let Ok(Some(m)) = self.fib.recv(Duration::ZERO) {
            if let FibMsg::Punt { dst, packet } = m {
                self.stats.punts += 1;
                let Some(node) = self
                    .by_addr
                    .get(&dst)
                    .copied()
                    .or_else(|| self.attached_node_for(dst))
                    .or_else(|| self.lookup_addr(&dst))
                else {
                    self.stats.punt_drops += 1;
                    continue;
                };
                let q = self.queued.entry(node).or_default();
                if q.len() >= QUEUE_PER_DST {
                    self.stats.punt_drops += 1;
                    continue;
                }
                q.push_back((Instant::now(), packet));
                self.nm.request_route(now, node.0);
            }
        }
        let mut expired = 0;
        for q in self.queued.values_mut() {
            while q.front().is_some_and(|(t, _)| t.elapsed() > QUEUE_TTL) {
                q.pop_front();
                expired += 1;
            }
        }
        self.queued.retain(|_, q| !q.is_empty());
        self.stats.punt_drops += expired;
    }

    fn lookup_addr(&mut self, dst: &IpAddr) -> Option<NodeId> {
        for (n, _) in self.nm.lsdb_summary() {
            self.remember(NodeId(n));
        }
        self.by_addr.get(dst).copied()
    }

    /// Tells the node manager which routes carry traffic (from the dataplane's route counters),
    /// so those are kept alive and idle ones can be released.
    fn touch_used_routes(
        &mut self,
        last: &mut HashMap<Prefix, u64>,
        sessions_out: &mut HashMap<u32, dataplane::fibproto::Traffic>,
    ) {
        let Ok(FibMsg::Counters {
            routes, sessions, ..
        }) = self.fib.counters(Duration::from_millis(500))
        else {
            return;
        };
        *sessions_out = sessions.into_iter().collect();
        let now = self.now_ms();
        for (p, t) in routes {
            let prev = last.insert(p, t.tx_pkts).unwrap_or(0);
            if t.tx_pkts > prev
                && let Some(n) = self.by_addr.get(&p.addr).copied()
            {
                self.nm.touch_route(now, n.0);
            }
        }
    }

    /// The `peers` view: one line per link.
    fn peers_text(&self, traffic: &HashMap<u32, dataplane::fibproto::Traffic>) -> String {
        let mut out = format!(
            "{:<16}  {:<22} {:>9} {:>7}  {:>10} {:>10}\n",
            "PEER", "DATA ENDPOINT", "RTT", "SESSION", "RX BYTES", "TX BYTES"
        );
        let mut links: Vec<_> = self.links.iter().collect();
        links.sort_by_key(|(pk, _)| **pk);
        for (pk, l) in links {
            let t = traffic.get(&l.session).copied().unwrap_or_default();
            let rtt = l
                .rtt_us
                .map(|r| format!("{:.2} ms", f64::from(r) / 1000.0))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<16}  {:<22} {:>9} {:>7}  {:>10} {:>10}\n",
                &pk.hex()[..16],
                l.endpoint.to_string(),
                rtt,
                l.session,
                t.rx_bytes,
                t.tx_bytes
            ));
        }
        if self.links.is_empty() {
            out.push_str("(no links up)\n");
        }
        out
    }

    /// The `routes` view: routes this node originated, then transit state it holds.
    fn routes_text(&self) -> String {
        let short = |n: &nm::NodeId| NodeId(*n).hex()[..8].to_string();
        let mut out = format!(
            "{:<10} {:<8} {:<8} {:>6} {:>6} {:>8}  {}\n",
            "DEST", "ROLE", "STATE", "LABEL", "REV", "AGE", "PATH"
        );
        for r in self.nm.routes(self.now_ms()) {
            out.push_str(&format!(
                "{:<10} {:<8} {:<8} {:>6} {:>6} {:>7.1}s  {}\n",
                short(&r.dst),
                format!("{:?}{}", r.role, if r.active { "*" } else { "" }),
                format!("{:?}", r.state),
                r.label.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                r.rev_label,
                r.age_ms as f64 / 1000.0,
                r.path.iter().map(short).collect::<Vec<_>>().join(" > ")
            ));
        }
        let transit = self.nm.transit();
        if !transit.is_empty() {
            out.push_str(&format!(
                "transit/egress state held here: {}\n",
                transit.len()
            ));
        }
        out.push_str("(* = the route in use; addresses: dest is the node's key, its overlay address is in `peers`/`show`)\n");
        out
    }

    /// Counters for a usage report.
    pub fn report(&self) -> Vec<(String, u64)> {
        let c = self.nm.counters();
        let v = vec![
            ("links".to_string(), self.links.len() as u64),
            ("links_up_total".to_string(), self.stats.links_up),
            ("links_down_total".to_string(), self.stats.links_down),
            ("punts".to_string(), self.stats.punts),
            ("injected".to_string(), self.stats.injected),
            ("punt_drops".to_string(), self.stats.punt_drops),
            ("fib_errors".to_string(), self.stats.fib_errors),
            ("rekeys".to_string(), self.stats.rekeys),
            (
                "attached_prefixes".to_string(),
                self.programmed.len() as u64,
            ),
            ("app_errors".to_string(), self.stats.app_errors),
            ("lsdb".to_string(), c.lsdb_size as u64),
            ("routes_up".to_string(), c.routes_up as u64),
            ("routes_pending".to_string(), c.routes_pending as u64),
            ("backups_ready".to_string(), c.backups_ready as u64),
            ("transit_states".to_string(), c.transit_states as u64),
            ("adverts_accepted".to_string(), c.adverts_accepted),
            ("adverts_rejected".to_string(), {
                let r = &c.adverts_rejected;
                r.unsigned + r.bad_signature + r.stale + r.replay + r.bad_lifetime + r.table_full
            }),
            ("msgs_malformed".to_string(), c.msgs_malformed),
            ("failovers".to_string(), c.failovers),
            ("rebuilds".to_string(), c.rebuilds),
            ("setups_started".to_string(), c.setups_started),
        ];
        v
    }
}

fn connect_fib(cfg: &Config) -> Result<FibClient, String> {
    let t = Instant::now();
    loop {
        match FibClient::connect(&cfg.fib_socket) {
            Ok(c) => return Ok(c),
            Err(e) if t.elapsed() > Duration::from_secs(30) => {
                return Err(format!(
                    "dataplane fib ring at {}: {e}",
                    cfg.fib_socket.display()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn add_overlay_address(cfg: &Config, id: &NodeId) -> Result<(), String> {
    let mut nl = dataplane::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let t = Instant::now();
    let index = loop {
        match nl.link_index(&cfg.tun) {
            Ok(Some(i)) => break i,
            _ if t.elapsed() > Duration::from_secs(30) => {
                return Err(format!("device {} not found", cfg.tun));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    match nl.add_address(index, IpAddr::V6(id.overlay_addr()), 32) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the controlplane until `stop` is set (or viscript asks it to shut down).
pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    let (ident, created) = Identity::load_or_create(&cfg.key).map_err(|e| e.to_string())?;
    if created {
        eprintln!("skywire-control: created identity {}", cfg.key.display());
    }
    let me = ident.id();
    eprintln!("skywire-control: pk {me} address {}", me.overlay_addr());
    let mut fib = connect_fib(&cfg)?;
    // Start from a clean table: whatever a previous controlplane left refers to dead sessions.
    fib.send(&FibMsg::Clear)
        .map_err(|e| format!("fib ring: {e}"))?;
    fib.commit(Duration::from_secs(5))
        .map_err(|e| format!("fib ring: {e}"))?;
    add_overlay_address(&cfg, &me)?;
    let nm_cfg = nm::Config {
        cost_override: cfg
            .neighbours
            .iter()
            .filter_map(|n| n.cost_us.map(|c| (n.pk.0, c)))
            .collect(),
        drain: cfg.policy.drain,
        no_transit: cfg.policy.no_transit,
        // Route ids must not repeat across restarts (neighbours may still hold the old ones).
        first_route_counter: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
        ..nm::Config::default()
    };
    let epoch = Instant::now();
    let seed = ident.seed();
    let nm = NodeManager::new(seed, nm_cfg, 0);
    let (etx, erx) = channel();
    let wake = links::wake_fd().map_err(|e| format!("eventfd: {e}"))?;
    let allowed_keys: Vec<NodeId> = cfg.neighbours.iter().map(|n| n.pk).collect();
    let allow_any = cfg.allow_any;
    let ctx = LinkCtx {
        id: Arc::new(ident),
        data_port: cfg.data_port,
        data_shards: cfg.data_shards,
        keepalive: Duration::from_millis(cfg.keepalive_ms),
        dead_after: cfg.dead_after,
        allowed: Arc::new(move |p| allow_any || allowed_keys.contains(p)),
        events: etx,
        wake: wake.clone(),
        next_session: Arc::new(AtomicU32::new(1)),
        next_link: Arc::new(AtomicU64::new(1)),
        linked: Default::default(),
        stop: stop.clone(),
    };
    let listener =
        TcpListener::bind(cfg.listen).map_err(|e| format!("listen {}: {e}", cfg.listen))?;
    let c = ctx.clone();
    std::thread::spawn(move || links::listen(c, listener));
    let mut services_tx = None;
    if !cfg.messengers.is_empty() {
        let (stx, srx) = channel();
        services_tx = Some(stx);
        let wanted: Vec<NodeId> = cfg
            .neighbours
            .iter()
            .filter(|n| n.endpoint.is_none())
            .map(|n| n.pk)
            .collect();
        crate::msgclient::spawn(
            seed,
            cfg.messengers.clone(),
            cfg.advertise.clone(),
            cfg.services.clone(),
            wanted,
            ctx.clone(),
            srx,
        )?;
    }
    for n in &cfg.neighbours {
        if let Some(addr) = n.endpoint {
            let c = ctx.clone();
            let pk = n.pk;
            std::thread::spawn(move || links::dial(c, pk, addr));
        }
    }
    let mut d = Driver {
        cfg,
        me,
        nm,
        fib,
        links: HashMap::new(),
        queued: HashMap::new(),
        by_addr: HashMap::new(),
        dirty: false,
        epoch,
        attached: HashMap::new(),
        programmed: HashMap::new(),
        delivers: HashMap::new(),
        app_services: HashMap::new(),
        services_tx,
        stats: Stats::default(),
    };
    d.remember(me);
    let (app_tx, app_rx) = channel();
    let app_listener = appsock::bind(&d.cfg.app_socket)
        .map_err(|e| format!("app socket {}: {e}", d.cfg.app_socket.display()))?;
    {
        let w = wake.clone();
        std::thread::spawn(move || appsock::serve(app_listener, app_tx, w));
    }
    let session = match signal::Client::from_env() {
        Ok(Some(c)) => c
            .register("skywire-control", env!("CARGO_PKG_VERSION"))
            .ok(),
        _ => None,
    };
    let mut published: HashMap<String, Arc<AtomicU64>> = HashMap::new();
    let mut last_report = Instant::now();
    let mut last_touch = Instant::now();
    let mut route_tx: HashMap<Prefix, u64> = HashMap::new();
    let mut session_traffic: HashMap<u32, dataplane::fibproto::Traffic> = HashMap::new();
    // The `routes` and `peers` views, refreshed every second, answered from viscript's thread.
    let views: Arc<std::sync::Mutex<(String, String)>> =
        Arc::new(std::sync::Mutex::new((String::new(), String::new())));
    if let Some(s) = &session {
        let v = views.clone();
        s.on_query(
            "routes",
            Box::new(move || v.lock().map(|g| g.0.clone()).unwrap_or_default()),
        );
        let v = views.clone();
        s.on_query(
            "peers",
            Box::new(move || v.lock().map(|g| g.1.clone()).unwrap_or_default()),
        );
    }
    while !stop.load(Ordering::SeqCst) {
        if let Some(s) = &session
            && s.shutdown_requested().is_some()
        {
            s.ack_shutdown();
            break;
        }
        while let Ok(ev) = erx.try_recv() {
            d.link_event(ev);
        }
        while let Ok(ev) = app_rx.try_recv() {
            d.app_event(ev);
        }
        let now = d.now_ms();
        d.nm.tick(now);
        d.actions();
        d.fib_messages();
        d.actions();
        d.commit();
        if last_touch.elapsed() >= Duration::from_secs(1) {
            last_touch = Instant::now();
            d.touch_used_routes(&mut route_tx, &mut session_traffic);
            d.keep_attached();
            d.rekey_timers(&session_traffic);
            if let Ok(mut v) = views.lock() {
                *v = (d.routes_text(), d.peers_text(&session_traffic));
            }
        }
        // Sleep until a link event, a message from the dataplane, or the node manager's next
        // timer (at most TURN).
        let now = d.now_ms();
        let wait =
            d.nm.poll_timeout()
                .map(|t| Duration::from_millis(t.saturating_sub(now)))
                .unwrap_or(TURN)
                .min(TURN);
        if !wait.is_zero() && matches!(d.fib.arm(), Ok(true)) {
            use rustix::event::{PollFd, PollFlags, poll};
            let ts = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: wait.as_nanos() as i64,
            };
            let fib_fd = d.fib.wait_fd();
            let mut fds = [
                PollFd::new(&fib_fd, PollFlags::IN),
                PollFd::new(&*wake, PollFlags::IN),
            ];
            let _ = poll(&mut fds, Some(&ts));
            d.fib.disarm();
        }
        let mut drain = [0u8; 8];
        let _ = rustix::io::read(&*wake, &mut drain);
        if let Some(s) = &session
            && last_report.elapsed() >= Duration::from_millis(500)
        {
            last_report = Instant::now();
            for (k, v) in d.report() {
                published
                    .entry(k.clone())
                    .or_insert_with(|| s.counter(&k))
                    .store(v, Ordering::Relaxed);
            }
        }
    }
    let _ = std::fs::remove_file(&d.cfg.app_socket);
    stop.store(true, Ordering::SeqCst);
    Ok(())
}
