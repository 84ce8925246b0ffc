//! The hostile keyed neighbour: a node with a valid key of its own that links to routers with
//! the controlplane library's own link code ([`links::dial`]: TCP, the Noise XX handshake, the
//! encrypted control channel with its keepalives), from inside a network namespace, and then
//! sends whatever node-manager or rekey message a test asks for.
//!
//! It runs no dataplane: the routers it links to add a data session for it that is never heard
//! from, which their liveness probes leave alone (a session never heard is not reported down,
//! see `dataplane::liveness`), so its links stay up on the keepalive alone.
//!
//! Besides what the test sends, it behaves like a quiet node: it acknowledges the adverts it
//! is flooded (so they are not retransmitted to it), answers the route Setups that end at it
//! with a genuine handshake (it holds its own key), and records what it receives: the Setups
//! passed to it, SetupAcks, Teardowns, keepalives and rekey confirmations. A Setup it forged
//! with [`Hostile::forge_setup`] whose SetupAck comes back is finished, and the route is then
//! kept alive with MAC'd keepalives (what an attacker would do with a route it was given).

use controlplane::identity::{Identity, NodeId};
use controlplane::links::{self, LinkCtx, LinkEvent, LinkHandle};
use controlplane::nm::advert::{Advert, AdvertFlags, keypair_from_seed};
use controlplane::nm::session::{self, RouteKeys};
use controlplane::nm::{Msg, RouteId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The attacker's link keepalive: the testbed routers' own (`keepalive_ms: 100`).
const KEEPALIVE: Duration = Duration::from_millis(100);
/// Missed keepalives before the attacker's side calls a link dead: generous, the attacker keeps
/// its links up while it floods (the router's side has its own timer).
const DEAD_AFTER: u32 = 30;
/// How long [`Hostile::send`] waits for room in a full link queue before giving up on a message
/// (the queue drains as fast as the router reads; a router that stops reading for this long is
/// a finding of its own).
const SEND_WAIT: Duration = Duration::from_secs(5);
/// Setups, SetupAcks and Teardowns recorded at most (what a test looks at is a few of them; the
/// counts go on).
const RECORD_AT_MOST: usize = 10_000;
/// Keepalive period of the routes the attacker was given: twice as often as the routers'
/// (`nm::Config::route_keepalive_ms`, 1 s), well inside their route timeout (3.5 s).
const ROUTE_KEEPALIVE: Duration = Duration::from_millis(500);
/// How often the event pump wakes without events (route keepalives, the stop flag).
const PUMP_TICK: Duration = Duration::from_millis(20);

/// What the attacker received, for the test to look at.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Links that came up, and went down.
    pub ups: u64,
    pub downs: u64,
    /// Adverts flooded to it (all acknowledged).
    pub adverts: u64,
    /// Setups passed to it: (route id, path).
    pub setups: Vec<(RouteId, Vec<NodeId>)>,
    /// SetupAcks that reached it.
    pub setup_acks: Vec<RouteId>,
    /// Teardowns that reached it: (route id, upstream).
    pub teardowns: Vec<(RouteId, bool)>,
    pub teardowns_total: u64,
    /// Route keepalives that reached it.
    pub keepalives: u64,
    /// Rekey confirmations, by peer: the latest generation confirmed, and how many.
    pub rekey_acks: HashMap<NodeId, (u32, u64)>,
    /// Forged routes whose handshake it could finish (it should never have one).
    pub forged_routes_won: Vec<RouteId>,
}

struct Forged {
    init: Option<session::Initiator>,
    path: Vec<NodeId>,
    /// The node after the attacker on the path (where its keepalives go).
    next: Option<NodeId>,
    /// Keys and the last keepalive sequence number, once won.
    keys: Option<(RouteKeys, u64)>,
}

struct State {
    links: HashMap<NodeId, LinkHandle>,
    seen: Seen,
    forged: HashMap<RouteId, Forged>,
    next_label: u32,
}

/// A hostile neighbour (see the module documentation). Dropping it closes its links.
pub struct Hostile {
    /// Its identity (a key of its own, valid in every way).
    pub ident: Arc<Identity>,
    pub id: NodeId,
    ctx: LinkCtx,
    netns: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
    seq: AtomicU64,
}

impl Hostile {
    /// A new attacker with a fresh key; its links are made from network namespace `netns`.
    pub fn new(netns: &str) -> Hostile {
        let ident = Arc::new(Identity::generate().expect("a key"));
        let id = ident.id();
        let (etx, erx) = sync_channel(links::LINK_EVENTS);
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = LinkCtx {
            id: ident.clone(),
            data_port: 7000,
            data_shards: 1,
            keepalive: KEEPALIVE,
            dead_after: DEAD_AFTER,
            allowed: Arc::new(|_| true),
            events: etx,
            wake: links::wake_fd().expect("eventfd"),
            next_session: Arc::new(AtomicU32::new(1)),
            next_link: Arc::new(AtomicU64::new(1)),
            linked: Default::default(),
            stop: stop.clone(),
        };
        let state = Arc::new(Mutex::new(State {
            links: HashMap::new(),
            seen: Seen::default(),
            forged: HashMap::new(),
            next_label: controlplane::nm::labels::FIRST_LABEL,
        }));
        let pump = {
            let (st, stp, me) = (state.clone(), stop.clone(), ident.clone());
            std::thread::Builder::new()
                .name("hostile-pump".into())
                .spawn(move || pump(&me, &erx, &st, &stp))
                .expect("pump thread")
        };
        Hostile {
            ident,
            id,
            ctx,
            netns: netns.to_string(),
            state,
            stop,
            pump: Some(pump),
            seq: AtomicU64::new(0),
        }
    }

    /// Its public key in hex, for the routers' `neighbours:`.
    pub fn pk(&self) -> String {
        self.id.hex()
    }

    /// Keeps a link to `peer` at `addr` up, dialled from the attacker's namespace (the library's
    /// dial loop, in a thread that entered the namespace first).
    pub fn dial(&self, peer: NodeId, addr: SocketAddr) {
        let path = format!("/run/netns/{}", self.netns);
        let ctx = self.ctx.clone();
        std::thread::Builder::new()
            .name("hostile-dial".into())
            .spawn(move || {
                let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                rustix::thread::move_into_link_name_space(
                    f.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                links::dial(ctx, peer, addr);
            })
            .expect("dial thread");
    }

    /// Waits until a link to `peer` is up.
    pub fn wait_linked(&self, peer: &NodeId, within: Duration) {
        let t = Instant::now();
        while !self.lock().links.contains_key(peer) {
            assert!(
                t.elapsed() < within,
                "no link to {peer:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a link to `peer` is up.
    pub fn linked(&self, peer: &NodeId) -> bool {
        self.lock().links.contains_key(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What it received so far.
    pub fn seen(&self) -> Seen {
        self.lock().seen.clone()
    }

    fn handle(&self, to: &NodeId) -> Option<LinkHandle> {
        self.lock().links.get(to).cloned()
    }

    /// Sends `bytes` as a node-manager message to `to`, waiting (up to [`SEND_WAIT`]) while its
    /// link queue is full; false when there is no link or it stayed full.
    pub fn send_bytes(&self, to: &NodeId, bytes: &[u8]) -> bool {
        let t = Instant::now();
        loop {
            let Some(h) = self.handle(to) else {
                return false;
            };
            if h.send(bytes) {
                return true;
            }
            if t.elapsed() > SEND_WAIT {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sends `m` to `to` (see [`Hostile::send_bytes`]).
    pub fn send(&self, to: &NodeId, m: &Msg) -> bool {
        self.send_bytes(to, &m.encode())
    }

    /// Sends a rekey request for `generation` on the link to `to`, waiting while its queue is
    /// full like [`Hostile::send_bytes`].
    pub fn send_rekey(&self, to: &NodeId, generation: u32) -> bool {
        let t = Instant::now();
        loop {
            let Some(h) = self.handle(to) else {
                return false;
            };
            if h.send_rekey(generation, false) {
                return true;
            }
            if t.elapsed() > SEND_WAIT {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The latest data-key generation `to` confirmed on its link (0 before any).
    pub fn rekey_generation(&self, to: &NodeId) -> u32 {
        self.lock().seen.rekey_acks.get(to).map_or(0, |(g, _)| *g)
    }

    /// Its own advert, signed with its key, listing `links` (neighbour, claimed cost in µs),
    /// sent to each of `to`.
    pub fn advertise(&self, to: &[NodeId], links: &[(NodeId, u32)]) {
        let (kp, id) = keypair_from_seed(&self.ident.seed());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let adv = Advert::new_signed(
            &kp,
            id,
            seq,
            ADVERT_LIFETIME_MS,
            links.to_vec(),
            AdvertFlags::default(),
            &[],
        );
        let m = Msg::Advert(adv);
        for t in to {
            assert!(self.send(t, &m), "advert to {t:?}");
        }
    }

    /// A Setup of route `rid` along `path` to `path`'s last node with a genuine handshake under
    /// the attacker's key (a real route of its own when `rid.origin` is the attacker), not kept
    /// alive if answered.
    pub fn setup(&self, rid: RouteId, path: Vec<NodeId>, rev_label: u32) -> Msg {
        let dst = *path.last().expect("a path");
        let (_, hs) = session::initiate(&self.ident.x25519_private(), &dst, &rid, &path, false)
            .expect("a handshake");
        Msg::Setup {
            rid,
            path,
            rev_label,
            hs,
        }
    }

    /// A Setup of route `rid` along `path` (its origin `rid.origin`, `path[0]`) to `path`'s last
    /// node, with a handshake made under the attacker's own key (the only one it has). Should the
    /// egress answer it, the attacker finishes the handshake and keeps the route alive.
    pub fn forge_setup(&self, rid: RouteId, path: Vec<NodeId>, rev_label: u32) -> Msg {
        let dst = *path.last().expect("a path");
        let next = path
            .iter()
            .position(|n| *n == self.id)
            .and_then(|i| path.get(i + 1))
            .copied();
        let (init, hs) = session::initiate(&self.ident.x25519_private(), &dst, &rid, &path, false)
            .expect("a handshake");
        self.lock().forged.insert(
            rid,
            Forged {
                init: Some(init),
                path: path.clone(),
                next,
                keys: None,
            },
        );
        Msg::Setup {
            rid,
            path,
            rev_label,
            hs,
        }
    }
}

/// Lifetime of the attacker's own advert (an hour, like the routers').
const ADVERT_LIFETIME_MS: u32 = 60 * 60_000;

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.lock().links.values() {
            h.close();
        }
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
}

/// Reads the link events until stopped: bookkeeping, acks, answers, route keepalives.
fn pump(me: &Identity, erx: &Receiver<LinkEvent>, st: &Mutex<State>, stop: &AtomicBool) {
    let mut next_keepalive = Instant::now() + ROUTE_KEEPALIVE;
    while !stop.load(Ordering::SeqCst) {
        let ev = match erx.recv_timeout(PUMP_TICK) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ev) = ev {
            event(me, &mut s, ev);
        }
        if Instant::now() >= next_keepalive {
            next_keepalive = Instant::now() + ROUTE_KEEPALIVE;
            keep_forged_routes(&mut s);
        }
    }
}

fn event(me: &Identity, s: &mut State, ev: LinkEvent) {
    match ev {
        LinkEvent::Up(up) => {
            s.seen.ups += 1;
            s.links.insert(up.peer, up.handle.clone());
        }
        LinkEvent::Down { peer, .. } => {
            s.seen.downs += 1;
            s.links.remove(&peer);
        }
        LinkEvent::Rtt { .. } => {}
        LinkEvent::Rekey {
            peer,
            generation,
            ack,
            ..
        } => {
            if ack {
                let e = s.seen.rekey_acks.entry(peer).or_default();
                e.0 = e.0.max(generation);
                e.1 += 1;
            }
        }
        LinkEvent::Msg { peer, bytes, .. } => {
            let Ok(m) = Msg::decode(&bytes) else {
                return;
            };
            message(me, s, peer, m);
        }
    }
}

fn reply(s: &State, to: &NodeId, m: &Msg) {
    if let Some(h) = s.links.get(to) {
        // A full queue drops the answer: the router repeats what it needs answered.
        let _ = h.send(&m.encode());
    }
}

fn message(me: &Identity, s: &mut State, from: NodeId, m: Msg) {
    match m {
        Msg::Advert(a) => {
            s.seen.adverts += 1;
            reply(
                s,
                &from,
                &Msg::LsaAck {
                    origin: a.origin,
                    seq: a.seq,
                },
            );
        }
        Msg::Setup { rid, path, hs, .. } => {
            if s.seen.setups.len() < RECORD_AT_MOST {
                s.seen.setups.push((rid, path.clone()));
            }
            // A route to the attacker itself: answered as any egress would.
            if path.last() == Some(&me.id())
                && let Ok((_, ack_hs)) =
                    session::respond(&me.x25519_private(), &rid, &path, &hs, false)
            {
                let label = s.next_label;
                s.next_label += 1;
                reply(
                    s,
                    &from,
                    &Msg::SetupAck {
                        rid,
                        label,
                        hs: ack_hs,
                    },
                );
            }
        }
        Msg::SetupAck { rid, hs, .. } => {
            if s.seen.setup_acks.len() < RECORD_AT_MOST {
                s.seen.setup_acks.push(rid);
            }
            if let Some(f) = s.forged.get_mut(&rid)
                && let Some(init) = f.init.take()
                && let Ok(keys) = session::finish(init, &rid, &f.path, &hs)
            {
                f.keys = Some((keys, 0));
                s.seen.forged_routes_won.push(rid);
            }
        }
        Msg::Teardown { rid, upstream } => {
            s.seen.teardowns_total += 1;
            if s.seen.teardowns.len() < RECORD_AT_MOST {
                s.seen.teardowns.push((rid, upstream));
            }
        }
        Msg::Keepalive { .. } => s.seen.keepalives += 1,
        Msg::LsaAck { .. } => {}
    }
}

/// The keepalives of the forged routes the attacker won (with their MACs: it holds the keys).
fn keep_forged_routes(s: &mut State) {
    let mut out = Vec::new();
    for (rid, f) in s.forged.iter_mut() {
        if let (Some((keys, seq)), Some(next)) = (f.keys.as_mut(), f.next) {
            *seq += 1;
            let mac = session::control_mac(&keys.ctrl, KEEPALIVE_TYPE, rid, *seq);
            out.push((
                next,
                Msg::Keepalive {
                    rid: *rid,
                    seq: *seq,
                    mac,
                },
            ));
        }
    }
    for (to, m) in out {
        reply(s, &to, &m);
    }
}

/// The keepalive's message type (`nm::wire`: type 5), which its MAC covers.
const KEEPALIVE_TYPE: u8 = 5;
