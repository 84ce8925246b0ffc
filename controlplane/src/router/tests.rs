//! The router core driven with a virtual clock: routers joined by virtual links, each with a
//! model of its dataplane's tables (what was committed), in one loop.

use super::*;
use crate::appsock::Request;
use crate::identity::Identity;
use crate::nm;

const CFG: &str = "key: k\nlisten: 127.0.0.1:7100\ndata_port: 7000\n";

/// A model of one dataplane: what is committed, and what is queued for the next commit.
#[derive(Default)]
struct Fib {
    sessions: HashMap<u32, ([u8; 32], [u8; 32])>,
    rules: HashMap<(u32, u32), RuleAction>,
    routes: HashMap<Prefix, (u32, u32)>,
    /// Route keys by id, and the route key of each route.
    route_keys: HashMap<u64, dataplane::fibproto::Key>,
    route_key_of: HashMap<Prefix, u64>,
    pending: Vec<FibMsg>,
    commits: usize,
    /// Sessions whose previous receive key was forgotten, in order.
    forgotten: Vec<u32>,
}

impl Fib {
    fn commit(&mut self) {
        self.commits += 1;
        for m in self.pending.drain(..) {
            match m {
                FibMsg::AddSession {
                    id, tx_key, rx_key, ..
                } => {
                    self.sessions.insert(id, (tx_key.0, rx_key.0));
                }
                FibMsg::RemoveSession { id } => {
                    self.sessions.remove(&id);
                    self.rules.retain(|(s, _), _| *s != id);
                }
                FibMsg::AddRule {
                    session,
                    label,
                    action,
                } => {
                    self.rules.insert((session, label), action);
                }
                FibMsg::RemoveRule { session, label } => {
                    self.rules.remove(&(session, label));
                }
                FibMsg::AddRoute {
                    prefix,
                    session,
                    label,
                    key,
                    ..
                } => {
                    self.routes.insert(prefix, (session, label));
                    self.route_key_of.insert(prefix, key);
                }
                FibMsg::AddRouteKey { id, key, .. } => {
                    self.route_keys.insert(id, key);
                }
                FibMsg::RemoveRouteKey { id } => {
                    self.route_keys.remove(&id);
                    self.rules
                        .retain(|_, a| !matches!(a, RuleAction::Deliver { key, .. } if *key == id));
                    let gone: Vec<Prefix> = self
                        .route_key_of
                        .iter()
                        .filter(|(_, k)| **k == id)
                        .map(|(p, _)| *p)
                        .collect();
                    for p in gone {
                        self.routes.remove(&p);
                        self.route_key_of.remove(&p);
                    }
                }
                FibMsg::RemoveRoute { prefix } => {
                    self.routes.remove(&prefix);
                }
                FibMsg::ForgetPreviousKey { id } => self.forgotten.push(id),
                FibMsg::Clear => {
                    self.sessions.clear();
                    self.rules.clear();
                    self.routes.clear();
                    self.route_keys.clear();
                    self.route_key_of.clear();
                }
                other => panic!("unexpected fib message {other:?}"),
            }
        }
    }
}

struct Node {
    id: NodeId,
    r: Router,
    fib: Fib,
    injected: Vec<Vec<u8>>,
    closed: Vec<u64>,
    published: Vec<Vec<Service>>,
}

/// Routers, the links between them and a virtual clock.
struct Mesh {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    /// link number -> (node, peer node, the peer's number for the same link)
    links: HashMap<u64, (usize, usize, u64)>,
    next_link: u64,
    next_session: u32,
    /// Messages in flight: (to node, on its link, what).
    wire: VecDeque<(usize, u64, Wire)>,
    /// Drop rekey confirmations (`ack`) while set.
    lose_acks: bool,
    /// Deliver nothing between routers while set.
    cut: bool,
}

enum Wire {
    Nm(Vec<u8>),
    Rekey(u32, bool),
}

impl Mesh {
    fn new(n: u8) -> Mesh {
        let t0 = Instant::now();
        let nodes = (1..=n)
            .map(|i| {
                let seed = [i; 32];
                let id = Identity::from_seed(seed).unwrap().id();
                let cfg = Config::parse(CFG, std::path::Path::new("/tmp/control.yaml")).unwrap();
                let nm = NodeManager::new(seed, nm::Config::default(), 0);
                Node {
                    id,
                    r: Router::new(cfg, id, nm, t0, true),
                    fib: Fib::default(),
                    injected: Vec::new(),
                    closed: Vec::new(),
                    published: Vec::new(),
                }
            })
            .collect();
        Mesh {
            t0,
            now: t0,
            nodes,
            links: HashMap::new(),
            next_link: 1,
            next_session: 1,
            wire: VecDeque::new(),
            lose_acks: false,
            cut: false,
        }
    }

    fn params(&mut self, node: usize) -> LinkParams {
        self.next_session += 1;
        LinkParams {
            session_id: self.next_session,
            data_endpoint: SocketAddr::from(([10, 0, 0, node as u8 + 1], 7000)),
            data_shards: 2,
            aes: false,
        }
    }

    /// A link between `a` (the dialler) and `b`; returns (a's link number, b's).
    fn link(&mut self, a: usize, b: usize) -> (u64, u64) {
        let (la, lb) = (self.next_link, self.next_link + 1);
        self.next_link += 2;
        let (pa, pb) = (self.params(a), self.params(b));
        let (k1, k2) = ([a as u8 + 10; 32], [b as u8 + 10; 32]);
        self.links.insert(la, (a, b, lb));
        self.links.insert(lb, (b, a, la));
        let now = self.now;
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        self.nodes[a].r.handle_link_up(
            now,
            LinkUp {
                link: la,
                peer: idb,
                initiator: true,
                local: pa,
                remote: pb,
                data_tx: k1,
                data_rx: k2,
                endpoint_replaced: false,
            },
        );
        self.nodes[b].r.handle_link_up(
            now,
            LinkUp {
                link: lb,
                peer: ida,
                initiator: false,
                local: pb,
                remote: pa,
                data_tx: k2,
                data_rx: k1,
                endpoint_replaced: false,
            },
        );
        (la, lb)
    }

    /// Ends link `la` (both ends report down).
    fn unlink(&mut self, la: u64) {
        let (a, b, lb) = self.links[&la];
        let now = self.now;
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        self.nodes[a].r.handle_link_down(now, idb, la, "test");
        self.nodes[b].r.handle_link_down(now, ida, lb, "test");
        self.links.remove(&la);
        self.links.remove(&lb);
    }

    /// Carries out every router's outputs and delivers messages until nothing moves.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(o) = self.nodes[i].r.poll_output() {
                    moved = true;
                    self.output(i, o);
                }
            }
            if let Some((to, link, w)) = self.wire.pop_front() {
                moved = true;
                let now = self.now;
                let Some(&(_, from, _)) = self.links.get(&link) else {
                    continue;
                };
                let peer = self.nodes[from].id;
                let r = &mut self.nodes[to].r;
                match w {
                    Wire::Nm(b) => r.handle_msg(now, peer, link, &b),
                    Wire::Rekey(g, ack) => r.handle_rekey(now, peer, link, g, ack),
                }
            }
            if !moved {
                for n in &mut self.nodes {
                    n.r.flush();
                }
                if self.nodes.iter().all(|n| n.r.out.is_empty()) {
                    return;
                }
            }
        }
        panic!("the mesh did not settle");
    }

    fn output(&mut self, i: usize, o: Output) {
        let n = &mut self.nodes[i];
        match o {
            Output::Fib(m) => n.fib.pending.push(m),
            Output::Commit => n.fib.commit(),
            Output::Inject(p) => {
                n.r.injected();
                n.injected.push(p);
            }
            Output::Send { link, bytes } => {
                // The ordering contract: no rule is announced before it is live.
                assert!(
                    !n.fib
                        .pending
                        .iter()
                        .any(|m| matches!(m, FibMsg::AddRule { .. })),
                    "a message left before the rules queued ahead of it were committed"
                );
                if let Some(&(_, to, peer_link)) = self.links.get(&link)
                    && !self.cut
                {
                    self.wire.push_back((to, peer_link, Wire::Nm(bytes)));
                }
            }
            Output::SendRekey {
                link,
                generation,
                ack,
            } => {
                if let Some(&(_, to, peer_link)) = self.links.get(&link)
                    && !self.cut
                    && !(ack && self.lose_acks)
                {
                    self.wire
                        .push_back((to, peer_link, Wire::Rekey(generation, ack)));
                }
            }
            Output::Close { link } => n.closed.push(link),
            Output::Publish(s) => n.published.push(s),
        }
    }

    /// Moves the clock on by `ms`, firing timers on the way (every 100 ms, as the driver's
    /// longest turn, with the once-a-second work).
    fn advance(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            let now = self.now;
            let second = now.duration_since(self.t0).as_millis().is_multiple_of(1000);
            for n in &mut self.nodes {
                n.r.handle_timeout(now);
                if second {
                    n.r.handle_second(now);
                }
            }
            self.run();
        }
    }

    fn addr(&self, i: usize) -> IpAddr {
        IpAddr::V6(self.nodes[i].id.overlay_addr())
    }

    fn host(&self, i: usize) -> Prefix {
        prefix(&self.nodes[i].id)
    }
}

fn deliver_sources(f: &Fib) -> Vec<Vec<Prefix>> {
    f.rules
        .values()
        .filter_map(|a| match a {
            RuleAction::Deliver { sources, .. } => Some(sources.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_punt_sets_a_route_up_across_a_relay_and_the_queued_packet_is_injected() {
    let mut m = Mesh::new(3);
    m.link(0, 1);
    m.link(1, 2);
    m.advance(300);
    let now = m.now;
    let dst = m.addr(2);
    m.nodes[0].r.handle_punt(now, dst, b"first".to_vec());
    m.run();
    m.advance(200);
    assert_eq!(m.nodes[0].injected, [b"first".to_vec()]);
    assert_eq!(m.nodes[0].r.stats.injected, 1);
    assert!(m.nodes[0].fib.routes.contains_key(&m.host(2)));
    // The relay forwards by label; the egress delivers, accepting the origin's address.
    assert!(
        m.nodes[1]
            .fib
            .rules
            .values()
            .any(|a| matches!(a, RuleAction::Forward { .. }))
    );
    let host0 = m.host(0);
    assert!(
        deliver_sources(&m.nodes[2].fib)
            .iter()
            .any(|s| s == &[host0])
    );
    assert_eq!(m.nodes[0].r.stats.punt_drops, 0);
}

#[test]
fn the_punt_queue_is_bounded_per_destination_and_expires() {
    let mut m = Mesh::new(2);
    m.link(0, 1);
    m.cut = true; // the route setup never completes
    let now = m.now;
    let dst = m.addr(1);
    for i in 0..(QUEUE_PER_DST + 8) {
        m.nodes[0].r.handle_punt(now, dst, vec![i as u8]);
    }
    // An address no node is known by is dropped at once.
    m.nodes[0]
        .r
        .handle_punt(now, "fd73:6b79::1".parse().unwrap(), vec![0]);
    m.run();
    let s = m.nodes[0].r.stats.clone();
    assert_eq!(s.punts, QUEUE_PER_DST as u64 + 9);
    assert_eq!(s.punt_drops, 9);
    m.advance(QUEUE_TTL.as_millis() as u64 + 200);
    assert!(m.nodes[0].injected.is_empty());
    assert_eq!(m.nodes[0].r.stats.punt_drops, QUEUE_PER_DST as u64 + 9);
    assert!(m.nodes[0].r.queued.is_empty(), "expired packets are gone");
}

#[test]
fn a_duplicate_dial_keeps_the_link_the_smaller_key_dialled() {
    let mut m = Mesh::new(2);
    let (small, large) = if m.nodes[0].id < m.nodes[1].id {
        (0, 1)
    } else {
        (1, 0)
    };
    // Both dial at once: small's dial and large's dial each come up on both ends.
    let (s_dial_s, s_dial_l) = m.link(small, large);
    let (l_dial_l, l_dial_s) = m.link(large, small);
    m.run();
    // small kept its own dial and closed large's; large replaced its dial with small's.
    assert_eq!(m.nodes[small].closed, [l_dial_s]);
    assert_eq!(m.nodes[large].closed, [l_dial_l]);
    assert!(m.nodes[small].r.live(&m.nodes[large].id, s_dial_s));
    assert!(m.nodes[large].r.live(&m.nodes[small].id, s_dial_l));
    // The closed links' down reports change nothing.
    let now = m.now;
    let (ids, idl) = (m.nodes[small].id, m.nodes[large].id);
    m.nodes[small]
        .r
        .handle_link_down(now, idl, l_dial_s, "closed");
    m.nodes[large]
        .r
        .handle_link_down(now, ids, l_dial_l, "closed");
    m.run();
    assert_eq!(m.nodes[small].r.stats.links_down, 0);
    assert_eq!(m.nodes[large].r.stats.links_down, 0);
    assert_eq!(m.nodes[small].fib.sessions.len(), 1);
    assert_eq!(m.nodes[large].fib.sessions.len(), 1);
    // Messages on a replaced link are ignored.
    let before = m.nodes[small].r.nm.counters().msgs_malformed;
    m.nodes[small].r.handle_msg(now, idl, l_dial_s, b"garbage");
    assert_eq!(m.nodes[small].r.nm.counters().msgs_malformed, before);
}

#[test]
fn a_link_flap_withdraws_the_session_and_its_routes_then_comes_back() {
    let mut m = Mesh::new(3);
    let (ab, _) = m.link(0, 1);
    m.link(1, 2);
    m.advance(300);
    let now = m.now;
    let dst = m.addr(2);
    m.nodes[0].r.handle_punt(now, dst, b"p".to_vec());
    m.advance(300);
    assert!(m.nodes[0].fib.routes.contains_key(&m.host(2)));
    let relay_rules = m.nodes[1].fib.rules.len();
    assert!(relay_rules > 0);
    m.unlink(ab);
    m.run();
    assert!(
        !m.nodes[0].fib.routes.contains_key(&m.host(2)),
        "no route over a dead link"
    );
    assert!(m.nodes[0].fib.sessions.is_empty());
    assert_eq!(m.nodes[0].r.stats.links_down, 1);
    assert!(
        m.nodes[1].fib.rules.len() < relay_rules,
        "the relay drops the rules of routes from the dead link"
    );
    // The link comes back: the route still wanted is set up again without a new punt.
    m.link(0, 1);
    m.advance(1500);
    assert_eq!(m.nodes[0].fib.sessions.len(), 1);
    let (session, _) = m.nodes[0].fib.routes[&m.host(2)];
    assert!(m.nodes[0].fib.sessions.contains_key(&session));
    assert_eq!(m.nodes[0].injected, [b"p".to_vec()]);
}

#[test]
fn rekey_across_two_routers_survives_a_lost_confirmation() {
    let mut m = Mesh::new(2);
    let (la, lb) = m.link(0, 1);
    m.run();
    let sa = m.nodes[0].r.links[&m.nodes[1].id].session;
    let sb = m.nodes[1].r.links[&m.nodes[0].id].session;
    let keys = |m: &Mesh| (m.nodes[0].fib.sessions[&sa], m.nodes[1].fib.sessions[&sb]);
    let (a0, b0) = keys(&m);
    assert_eq!((a0.0, a0.1), (b0.1, b0.0));
    m.lose_acks = true;
    m.advance(120_000);
    // a asked, b switched (its confirmation lost); a accepts b's new key, still sends the old.
    let (a1, b1) = keys(&m);
    assert_eq!(m.nodes[1].r.stats.rekeys, 1);
    assert_eq!(m.nodes[0].r.stats.rekeys, 0);
    assert_eq!(a1.1, b1.0, "a receives what b sends");
    assert_eq!(a1.0, a0.0, "a still sends with generation 0");
    m.lose_acks = false;
    m.advance(3000);
    let (a2, b2) = keys(&m);
    assert_eq!(m.nodes[0].r.stats.rekeys, 1);
    assert_eq!(
        m.nodes[1].r.stats.rekeys, 1,
        "the repeat does not rotate b again"
    );
    assert_eq!((a2.0, a2.1), (b2.1, b2.0));
    assert_ne!(a2.0, a0.0);
    // The previous receive keys are forgotten on both ends once their lifetime ran out.
    assert!(m.nodes[0].fib.forgotten.is_empty());
    m.advance(PREVIOUS_KEY_LIFETIME.as_millis() as u64 + 1000);
    assert_eq!(m.nodes[0].fib.forgotten, [sa]);
    assert_eq!(m.nodes[1].fib.forgotten, [sb]);
    // Rekey messages on a link that is not the live one change nothing.
    let now = m.now;
    let ida = m.nodes[0].id;
    m.nodes[1].r.handle_rekey(now, ida, la, 2, false);
    m.run();
    assert_eq!(m.nodes[1].r.stats.rekeys, 1);
    let _ = lb;
}

#[test]
fn an_attachment_lives_exactly_as_long_as_its_app_connection() {
    let mut m = Mesh::new(2);
    m.link(0, 1);
    m.advance(300);
    let now = m.now;
    let b = m.nodes[1].id;
    let net: Prefix = "10.8.0.0/16".parse().unwrap();
    let reply = m.nodes[0].r.handle_app_request(
        now,
        7,
        Request::Attach {
            node: b,
            prefixes: vec![net],
        },
    );
    assert_eq!(reply, "ok");
    m.advance(1500);
    assert!(
        m.nodes[0].fib.routes.contains_key(&net),
        "route follows b's"
    );
    assert_eq!(
        m.nodes[0].fib.routes[&net],
        m.nodes[0].fib.routes[&m.host(1)]
    );
    // The same prefix for another node from another app is refused and counted.
    let me = m.nodes[0].id;
    let other = Identity::from_seed([9; 32]).unwrap().id();
    let r = m.nodes[0].r.handle_app_request(
        now,
        8,
        Request::Attach {
            node: other,
            prefixes: vec![net],
        },
    );
    assert!(r.starts_with("err 10.8.0.0/16 is already attached"), "{r}");
    let r = m.nodes[0].r.handle_app_request(
        now,
        8,
        Request::Attach {
            node: me,
            prefixes: vec![net],
        },
    );
    assert!(r.starts_with("err"), "{r}");
    assert_eq!(m.nodes[0].r.stats.app_errors, 2);
    // The route is kept up while attached, used or not.
    m.advance(10_000);
    assert!(m.nodes[0].fib.routes.contains_key(&net));
    m.nodes[0].r.handle_app_closed(7);
    m.run();
    assert!(!m.nodes[0].fib.routes.contains_key(&net));
    assert!(m.nodes[0].r.programmed.is_empty());
}

#[test]
fn published_services_are_the_configured_ones_plus_the_apps_until_they_go() {
    let mut m = Mesh::new(1);
    let now = m.now;
    let r = m.nodes[0].r.handle_app_request(
        now,
        3,
        Request::Service {
            kind: "socks".into(),
            port: 1080,
        },
    );
    assert_eq!(r, "ok");
    m.run();
    assert_eq!(m.nodes[0].published.len(), 1);
    assert_eq!(m.nodes[0].published[0][0].kind, "socks");
    m.nodes[0].r.handle_app_closed(3);
    m.run();
    assert_eq!(m.nodes[0].published.last().unwrap(), &Vec::<Service>::new());
    m.nodes[0].r.messenger_gone();
    let r = m.nodes[0].r.handle_app_request(
        now,
        4,
        Request::Service {
            kind: "vpn".into(),
            port: 1,
        },
    );
    assert_eq!(r, "ok unpublished (no messenger configured)");
}

#[test]
fn a_restarted_dataplane_is_given_everything_the_router_holds() {
    let mut m = Mesh::new(3);
    m.link(0, 1);
    m.link(1, 2);
    m.advance(300);
    let now = m.now;
    let dst = m.addr(2);
    m.nodes[0].r.handle_punt(now, dst, b"p".to_vec());
    m.advance(500);
    let net: Prefix = "10.9.0.0/16".parse().unwrap();
    let c = m.nodes[2].id;
    let now = m.now;
    let r = m.nodes[0].r.handle_app_request(
        now,
        1,
        Request::Attach {
            node: c,
            prefixes: vec![net],
        },
    );
    assert_eq!(r, "ok");
    m.advance(300);
    let forwards = |f: &Fib| {
        f.rules
            .iter()
            .filter(|(_, a)| matches!(a, RuleAction::Forward { .. }))
            .count()
    };
    for i in 0..3 {
        let before = m.nodes[i].fib.sessions.clone();
        let dsts: std::collections::HashSet<Prefix> =
            m.nodes[i].fib.routes.keys().copied().collect();
        let old_keys: Vec<dataplane::fibproto::Key> =
            m.nodes[i].fib.route_keys.values().copied().collect();
        assert!(!before.is_empty());
        // A new dataplane starts empty; the router programs its sessions and relay rules in
        // one commit, and sets the routes it is an end of up again, with new keys.
        m.nodes[i].fib = Fib::default();
        let now = m.now;
        m.nodes[i].r.handle_dataplane_back(now);
        m.run();
        let f = &m.nodes[i].fib;
        assert_eq!(f.sessions, before, "node {i}");
        if i == 1 {
            assert_eq!(
                forwards(f),
                2,
                "the relay's rules (one route, both directions)"
            );
        }
        m.advance(300);
        let f = &m.nodes[i].fib;
        let now_dsts: std::collections::HashSet<Prefix> = f.routes.keys().copied().collect();
        assert_eq!(now_dsts, dsts, "node {i}: its destinations are back");
        for k in f.route_keys.values() {
            assert!(
                !old_keys.contains(k),
                "node {i}: an old route key came back"
            );
        }
    }
}

#[test]
fn a_lost_dataplane_closes_every_link_and_the_mesh_heals_around_and_back() {
    let mut m = Mesh::new(3);
    let (ab, _) = m.link(0, 1);
    let (bc, _) = m.link(1, 2);
    m.advance(300);
    let now = m.now;
    let dst = m.addr(2);
    m.nodes[0].r.handle_punt(now, dst, b"p".to_vec());
    m.advance(500);
    assert!(m.nodes[0].fib.routes.contains_key(&m.host(2)));
    // b's dataplane dies: b closes both its links (their sessions' counters died with it).
    let now = m.now;
    m.nodes[1].r.handle_dataplane_lost(now);
    m.run();
    // b's ends: the far end of a's dial, and its own dial to c.
    let lb_a = m.links[&ab].2;
    let mut closed = m.nodes[1].closed.clone();
    closed.sort();
    let mut want = vec![lb_a, bc];
    want.sort();
    assert_eq!(closed, want);
    assert_eq!(m.nodes[1].r.stats.dataplane_restarts, 1);
    assert!(m.nodes[1].r.links.is_empty());
    assert!(
        m.nodes[1].r.mirror.replay().is_empty(),
        "nothing left to program"
    );
    // The neighbours see the links end and drop the route through b.
    m.unlink(ab);
    m.unlink(bc);
    m.run();
    assert!(!m.nodes[0].fib.routes.contains_key(&m.host(2)));
    // The links come back (fresh sessions) before or after the new dataplane: either way the
    // route is set up again.
    m.link(0, 1);
    m.link(1, 2);
    m.nodes[1].fib = Fib::default();
    let now = m.now;
    m.nodes[1].r.handle_dataplane_back(now);
    m.advance(1500);
    let (session, _) = m.nodes[0].fib.routes[&m.host(2)];
    assert!(m.nodes[0].fib.sessions.contains_key(&session));
    assert!(
        m.nodes[1]
            .fib
            .rules
            .values()
            .any(|a| matches!(a, RuleAction::Forward { .. })),
        "the relay forwards again"
    );
}

#[test]
fn a_punt_flood_to_random_addresses_is_bounded_and_grows_no_table() {
    let mut m = Mesh::new(3);
    m.link(0, 1);
    m.link(1, 2);
    m.advance(300);
    let now = m.now;
    for i in 0..3000u32 {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&crate::identity::OVERLAY_PREFIX);
        a[12..].copy_from_slice(&i.to_be_bytes());
        m.nodes[0]
            .r
            .handle_punt(now, IpAddr::V6(a.into()), vec![0; 64]);
    }
    m.run();
    let s = m.nodes[0].r.stats.clone();
    assert_eq!(s.punts, 3000);
    assert_eq!(s.punts_over_budget, 3000 - u64::from(PUNT_BURST));
    assert_eq!(s.punt_drops, 3000, "no random address is a node");
    // The address index holds the known nodes only.
    assert_eq!(m.nodes[0].r.by_addr.len(), 3);
    assert!(m.nodes[0].r.queued.is_empty());
    // The budget refills: a punt for a real node a second later still sets its route up.
    m.advance(1000);
    let now = m.now;
    let dst = m.addr(2);
    m.nodes[0].r.handle_punt(now, dst, b"real".to_vec());
    m.advance(500);
    assert_eq!(
        m.nodes[0].injected.last().map(|p| &p[..]),
        Some(&b"real"[..])
    );
}

#[test]
fn an_attachment_may_not_overlap_another_one_but_the_one_it_replaces() {
    let mut m = Mesh::new(2);
    m.link(0, 1);
    m.advance(300);
    let now = m.now;
    let b = m.nodes[1].id;
    let other = Identity::from_seed([9; 32]).unwrap().id();
    let p = |s: &str| -> Prefix { s.parse().unwrap() };
    let attach = |m: &mut Mesh, conn: u64, node: NodeId, ps: &[&str]| {
        m.nodes[0].r.handle_app_request(
            now,
            conn,
            Request::Attach {
                node,
                prefixes: ps.iter().map(|s| p(s)).collect(),
            },
        )
    };
    // The VPN client: everything to its server b.
    assert_eq!(attach(&mut m, 7, b, &["0.0.0.0/0"]), "ok");
    // Another app may not take half of it, nor a piece, nor the same for b.
    let r = attach(&mut m, 8, other, &["0.0.0.0/1"]);
    assert!(r.starts_with("err 0.0.0.0/1 overlaps 0.0.0.0/0"), "{r}");
    let r = attach(&mut m, 8, other, &["2001:db8::/32", "10.0.0.0/8"]);
    assert!(r.starts_with("err 10.0.0.0/8 overlaps 0.0.0.0/0"), "{r}");
    let r = attach(&mut m, 8, b, &["10.0.0.0/8"]);
    assert!(r.starts_with("err 10.0.0.0/8 overlaps"), "{r}");
    // The same connection may not shadow its own attachment to another node either.
    let r = attach(&mut m, 7, other, &["100.64.0.2/32"]);
    assert!(r.starts_with("err 100.64.0.2/32 overlaps"), "{r}");
    assert_eq!(m.nodes[0].r.stats.app_errors, 4);
    // What does not overlap is fine, and a connection replaces its own attachment (the VPN
    // client's split default route).
    assert_eq!(attach(&mut m, 8, other, &["2001:db8::/32"]), "ok");
    assert_eq!(attach(&mut m, 7, b, &["0.0.0.0/1", "128.0.0.0/1"]), "ok");
    m.advance(1500);
    let routes = &m.nodes[0].fib.routes;
    assert!(routes.contains_key(&p("0.0.0.0/1")) && routes.contains_key(&p("128.0.0.0/1")));
    assert!(
        !routes.contains_key(&p("0.0.0.0/0")),
        "the replaced prefix is gone"
    );
    assert!(!routes.contains_key(&p("10.0.0.0/8")));
    // Once the VPN client's connection is gone, its prefixes are free.
    m.nodes[0].r.handle_app_closed(7);
    assert_eq!(attach(&mut m, 8, other, &["10.0.0.0/8"]), "ok");
}

#[test]
fn an_app_connection_publishes_a_bounded_number_of_services_with_real_ports() {
    use crate::appsock::MAX_SERVICES_PER_CONN;
    let mut m = Mesh::new(1);
    let now = m.now;
    let service = |m: &mut Mesh, conn: u64, kind: &str, port: u16| {
        m.nodes[0].r.handle_app_request(
            now,
            conn,
            Request::Service {
                kind: kind.into(),
                port,
            },
        )
    };
    for i in 0..MAX_SERVICES_PER_CONN {
        assert_eq!(service(&mut m, 3, &format!("s{i}"), 1000), "ok");
    }
    let r = service(&mut m, 3, "one-more", 1000);
    assert!(r.starts_with("err at most"), "{r}");
    // Moving a published kind to another port is not a new service.
    assert_eq!(service(&mut m, 3, "s0", 2000), "ok");
    let r = service(&mut m, 4, "zero", 0);
    assert!(r.starts_with("err service port"), "{r}");
    assert_eq!(m.nodes[0].r.stats.app_errors, 2);
    m.run();
    let last = m.nodes[0].published.last().unwrap();
    assert_eq!(last.len(), MAX_SERVICES_PER_CONN);
    assert!(last.iter().any(|s| s.kind == "s0" && s.port == 2000));
    // The node's record has room for MAX_SERVICES in all, whatever the connections.
    let mut conn = 10;
    let mut refused = None;
    for i in 0..crate::messenger::record::MAX_SERVICES {
        if i % MAX_SERVICES_PER_CONN == 0 {
            conn += 1;
        }
        let r = service(&mut m, conn, &format!("t{i}"), 1);
        if r != "ok" {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the record's bound was not enforced");
    assert!(r.contains("at most"), "{r}");
}

#[test]
fn a_service_is_chosen_by_route_not_by_key_order() {
    let mut m = Mesh::new(3);
    m.link(0, 1);
    m.link(1, 2);
    m.advance(500);
    let (b, c) = (m.nodes[1].id, m.nodes[2].id);
    // A node no route reaches, with a key that sorts before every other.
    let ground = NodeId([0; 32]);
    let r = &m.nodes[0].r;
    for cands in [
        vec![(ground, 1), (c, 2), (b, 3)],
        vec![(b, 3), (c, 2), (ground, 1)],
    ] {
        assert_eq!(r.choose_service(&cands), Some((b, 3)), "the nearest");
    }
    assert_eq!(r.choose_service(&[(ground, 1), (c, 2)]), Some((c, 2)));
    assert_eq!(
        r.choose_service(&[(ground, 1)]),
        Some((ground, 1)),
        "no better one"
    );
    let me = m.nodes[0].id;
    assert_eq!(r.choose_service(&[(me, 9)]), None, "never itself");
}

#[test]
fn the_report_counts_lsdb_evictions_beside_its_other_counters() {
    let mut m = Mesh::new(2);
    m.link(0, 1);
    m.advance(300);
    let rep = m.nodes[0].r.report();
    let get = |k: &str| rep.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(get("lsdb"), Some(2));
    assert_eq!(get("adverts_evicted"), Some(0));
}

#[test]
fn the_address_index_drops_nodes_no_longer_known_without_a_punt_miss() {
    let mut m = Mesh::new(3);
    m.link(0, 1);
    m.link(1, 2);
    m.advance(300);
    let r = &mut m.nodes[0].r;
    // Nodes remembered once (origins of routes that ended, nodes gone from the LSDB) and
    // known no more: the index does not keep them all.
    for i in 0..5000u32 {
        let mut k = [7u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        r.remember(NodeId(k));
    }
    assert!(
        r.by_addr.len() <= 2 * INDEX_REBUILD_MIN,
        "{}",
        r.by_addr.len()
    );
    assert!(r.by_addr.len() < 5000);
    // The known nodes are still there.
    let known = r.nm.lsdb_summary();
    assert_eq!(known.len(), 3);
    for (n, _) in known {
        assert_eq!(r.by_addr.get(&IpAddr::V6(n.overlay_addr())), Some(&n));
    }
}

#[test]
fn a_reload_closes_removed_neighbours_and_applies_costs_and_policy_leaving_the_rest() {
    let mut m = Mesh::new(3);
    let (_, _) = m.link(0, 1);
    let (l12, _) = m.link(1, 2);
    m.run();
    m.advance(1000);
    let (a, c) = (m.nodes[0].id, m.nodes[2].id);
    let with = |extra: &str| {
        Config::parse(
            &format!("{CFG}neighbours:\n  - {{pk: {}}}\n{extra}", a.hex()),
            std::path::Path::new("/tmp/control.yaml"),
        )
        .unwrap()
    };
    // c and a listed (c at a cost of its own), b drains.
    let both = with(&format!(
        "  - {{pk: {}, endpoint: \"10.0.0.3:7100\", cost_us: 777}}\npolicy: {{drain: true}}\n",
        c.hex()
    ));
    let now = m.now;
    let r = m.nodes[1].r.reconfigure(now, &both);
    assert_eq!(
        r.added,
        vec![(a, None), (c, Some("10.0.0.3:7100".parse().unwrap()))]
    );
    assert!(r.removed.is_empty() && r.at_restart.is_empty(), "{r:?}");
    assert_eq!(r.applied, ["neighbours", "costs", "policy"]);
    m.run();
    let b = m.nodes[1].id;
    let advert = m.nodes[1].r.node_manager().advert(&b).cloned().unwrap();
    assert!(advert.flags.drain, "{advert:?}");
    assert!(advert.links.contains(&(c, 777)), "{:?}", advert.links);
    assert!(
        m.nodes[1].closed.is_empty(),
        "a reload that removes nothing closed a link"
    );
    // c removed, and the listen address changed (only at the next start).
    let mut only_a = with("policy: {drain: true}\n");
    only_a.listen = "127.0.0.1:7999".parse().unwrap();
    let now = m.now;
    let r = m.nodes[1].r.reconfigure(now, &only_a);
    assert_eq!(r.removed, [c]);
    assert_eq!(r.at_restart, ["listen"]);
    assert!(
        r.summary()
            .contains("at the next start (not while running): listen"),
        "{}",
        r.summary()
    );
    m.run();
    assert_eq!(
        m.nodes[1].closed,
        [l12],
        "the removed neighbour's link is closed, only it"
    );
    // The same file again: nothing to do.
    let now = m.now;
    let r = m.nodes[1].r.reconfigure(now, &only_a);
    assert_eq!(r.summary(), "at the next start (not while running): listen");
}
