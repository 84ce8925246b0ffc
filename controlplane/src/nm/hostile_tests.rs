//! A hostile neighbour against an egress, message by message: forged origins, replays and
//! forged keepalives are refused and counted; the genuine origin's route works beside them.

use super::advert::keypair_from_seed;
use super::node::{Config, NodeManager};
use super::session::{self, RouteKeys, x25519_private};
use super::types::{Action, NodeId, RouteId, RuleThen};
use super::wire::{Msg, T_KEEPALIVE};

struct Peer {
    seed: [u8; 32],
    id: NodeId,
}

fn peer(n: u8) -> Peer {
    let seed = [n; 32];
    Peer {
        seed,
        id: keypair_from_seed(&seed).1,
    }
}

/// The egress `e`, linked to `m` (the neighbour every message comes through).
fn egress(e: &Peer, m: &Peer) -> NodeManager {
    let mut nm = NodeManager::new(e.seed, Config::default(), 0);
    nm.link_up(0, m.id, 100);
    while nm.poll_action().is_some() {}
    nm
}

fn actions(nm: &mut NodeManager) -> Vec<Action> {
    std::iter::from_fn(|| nm.poll_action()).collect()
}

fn delivers_for(acts: &[Action], origin: NodeId) -> bool {
    acts.iter().any(|a| {
        matches!(a, Action::InstallRule { then: RuleThen::Deliver { origin: o, .. }, .. } if *o == origin)
    })
}

fn refused(acts: &[Action], to: NodeId, rid: RouteId) -> bool {
    acts.iter().any(|a| match a {
        Action::Send { to: t, bytes } => {
            *t == to
                && Msg::decode(bytes)
                    == Ok(Msg::Teardown {
                        rid,
                        upstream: true,
                    })
        }
        _ => false,
    })
}

/// The origin `a`'s genuine Setup of route `counter` along a -> m -> e, as m passes it on, and
/// the origin's half of the handshake.
fn genuine(a: &Peer, m: &Peer, e: &Peer, counter: u64) -> (Vec<u8>, session::Initiator, RouteId) {
    let rid = RouteId {
        origin: a.id,
        counter,
    };
    let path = vec![a.id, m.id, e.id];
    let (init, hs) = session::initiate(&x25519_private(&a.seed), &e.id, &rid, &path, true).unwrap();
    let m = Msg::Setup {
        rid,
        path,
        rev_label: 9,
        hs,
    };
    (m.encode(), init, rid)
}

/// The keys the origin ends up with, from the SetupAck the egress sent.
fn origin_keys(
    acts: &[Action],
    init: session::Initiator,
    rid: RouteId,
    path: &[NodeId],
) -> RouteKeys {
    let hs = acts
        .iter()
        .find_map(|a| match a {
            Action::Send { bytes, .. } => match Msg::decode(bytes) {
                Ok(Msg::SetupAck { hs, .. }) => Some(hs),
                _ => None,
            },
            _ => None,
        })
        .expect("a SetupAck");
    session::finish(init, &rid, path, &hs).unwrap()
}

#[test]
fn a_setup_claiming_another_nodes_origin_is_refused_and_the_real_one_accepted() {
    let (a, m, e) = (peer(1), peer(2), peer(3));
    let mut nm = egress(&e, &m);
    // m makes a Setup in a's name, with a handshake under its own key.
    let rid = RouteId {
        origin: a.id,
        counter: 100,
    };
    let path = vec![a.id, m.id, e.id];
    let (_, hs) = session::initiate(&x25519_private(&m.seed), &e.id, &rid, &path, true).unwrap();
    let forged = Msg::Setup {
        rid,
        path: path.clone(),
        rev_label: 9,
        hs,
    };
    nm.handle(10, m.id, &forged.encode());
    let acts = actions(&mut nm);
    assert!(
        !delivers_for(&acts, a.id),
        "no deliver rule for a forged origin"
    );
    assert!(refused(&acts, m.id, rid));
    assert_eq!(nm.counters().setups_unauthenticated, 1);
    assert_eq!(nm.counters().transit_states, 0, "no state for it");
    // Without any handshake, or with a's genuine one moved to another route id: refused.
    let bare = Msg::Setup {
        rid,
        path: path.clone(),
        rev_label: 9,
        hs: Vec::new(),
    };
    nm.handle(11, m.id, &bare.encode());
    let (bytes, _, _) = genuine(&a, &m, &e, 101);
    let Ok(Msg::Setup { hs, .. }) = Msg::decode(&bytes) else {
        panic!()
    };
    let moved = Msg::Setup {
        rid: RouteId {
            origin: a.id,
            counter: 102,
        },
        path: path.clone(),
        rev_label: 9,
        hs,
    };
    nm.handle(12, m.id, &moved.encode());
    assert!(!delivers_for(&actions(&mut nm), a.id));
    assert_eq!(nm.counters().setups_unauthenticated, 3);
    // a's own Setup, relayed by the same neighbour: accepted, and a can finish the handshake.
    let (bytes, init, rid) = genuine(&a, &m, &e, 103);
    nm.handle(13, m.id, &bytes);
    let acts = actions(&mut nm);
    assert!(delivers_for(&acts, a.id));
    let ka = origin_keys(&acts, init, rid, &path);
    assert_ne!(ka.ctrl, [0; 32]);
}

#[test]
fn a_replayed_setup_is_refused_after_its_route_ended() {
    let (a, m, e) = (peer(1), peer(2), peer(3));
    let mut nm = egress(&e, &m);
    let (bytes, _, rid) = genuine(&a, &m, &e, 500);
    nm.handle(10, m.id, &bytes);
    assert!(delivers_for(&actions(&mut nm), a.id));
    // The route ends (a teardown from upstream), then m replays the captured Setup.
    let td = Msg::Teardown {
        rid,
        upstream: false,
    };
    nm.handle(20, m.id, &td.encode());
    let _ = actions(&mut nm);
    assert_eq!(nm.counters().transit_states, 0);
    nm.handle(30, m.id, &bytes);
    let acts = actions(&mut nm);
    assert!(!delivers_for(&acts, a.id), "a replay gets no deliver rule");
    assert!(refused(&acts, m.id, rid));
    assert_eq!(nm.counters().setups_replayed, 1);
    // Setups of a arriving out of order (a backup over another path) are still taken once.
    let (b1, _, _) = genuine(&a, &m, &e, 502);
    let (b0, _, _) = genuine(&a, &m, &e, 501);
    nm.handle(40, m.id, &b1);
    nm.handle(41, m.id, &b0);
    assert_eq!(nm.counters().transit_states, 2);
}

#[test]
fn only_the_origins_keepalives_keep_its_route_at_the_egress() {
    let (a, m, e) = (peer(1), peer(2), peer(3));
    let mut nm = egress(&e, &m);
    let path = vec![a.id, m.id, e.id];
    let (bytes, init, rid) = genuine(&a, &m, &e, 900);
    nm.handle(0, m.id, &bytes);
    let keys = origin_keys(&actions(&mut nm), init, rid, &path);
    let ka = |seq: u64, mac: [u8; session::MAC_LEN]| Msg::Keepalive { rid, seq, mac }.encode();
    let good = |seq: u64| {
        ka(
            seq,
            session::control_mac(&keys.ctrl, T_KEEPALIVE, &rid, seq),
        )
    };
    // The genuine keepalives every second keep it well past the route timeout...
    let timeout = Config::default().route_timeout_ms;
    let mut t = 0;
    for seq in 1..=6 {
        t += 1000;
        nm.handle(t, m.id, &good(seq));
        nm.tick(t);
    }
    assert!(t > timeout);
    assert_eq!(nm.counters().transit_states, 1);
    assert_eq!(nm.counters().keepalives_unauthenticated, 0);
    // ...forged ones (wrong MAC, or a genuine one replayed) do not.
    let replayed = good(6);
    for i in 0..5u8 {
        t += 1000;
        nm.handle(t, m.id, &ka(100 + u64::from(i), [i; session::MAC_LEN]));
        nm.handle(t, m.id, &replayed);
        nm.tick(t);
    }
    // Counted while the route was there (after it expired they meet no state at all).
    assert!(nm.counters().keepalives_unauthenticated >= 6);
    assert_eq!(
        nm.counters().transit_states,
        0,
        "the route expired at the egress despite the forged keepalives"
    );
}

#[test]
fn a_setup_flood_from_one_neighbour_is_rate_limited_before_any_cryptography() {
    let (a, m, e) = (peer(1), peer(2), peer(3));
    let mut nm = egress(&e, &m);
    let cfg = Config::default();
    let path = vec![a.id, m.id, e.id];
    for i in 0..1000u64 {
        let s = Msg::Setup {
            rid: RouteId {
                origin: a.id,
                counter: i + 1,
            },
            path: path.clone(),
            rev_label: 9,
            hs: vec![0; 96],
        };
        nm.handle(5, m.id, &s.encode());
    }
    let c = nm.counters();
    assert_eq!(c.setups_rate_limited, 1000 - u64::from(cfg.setup_burst));
    assert_eq!(c.setups_unauthenticated, u64::from(cfg.setup_burst));
    // A second later the neighbour has its rate again: a genuine setup is taken.
    let (bytes, _, _) = genuine(&a, &m, &e, 5000);
    nm.handle(1005, m.id, &bytes);
    assert!(delivers_for(&actions(&mut nm), a.id));
}

#[test]
fn one_neighbour_cannot_make_the_egress_hold_more_than_its_quota() {
    let (a, m, e) = (peer(1), peer(2), peer(3));
    let cfg = Config {
        max_routes_per_neighbour: 10,
        ..Config::default()
    };
    let mut nm = NodeManager::new(e.seed, cfg, 0);
    nm.link_up(0, m.id, 100);
    let _ = actions(&mut nm);
    for i in 0..20 {
        let (bytes, _, _) = genuine(&a, &m, &e, 100 + i);
        nm.handle(1, m.id, &bytes);
    }
    assert_eq!(nm.counters().transit_states, 10);
    assert_eq!(nm.counters().setups_over_quota, 10);
}

#[test]
fn a_sybil_advert_flood_is_slowed_per_neighbour_and_bounded_in_memory() {
    use super::advert::{Advert, AdvertFlags};
    let (m, e) = (peer(2), peer(3));
    let cfg = Config {
        new_origins_burst: 100,
        max_lsdb_bytes: 64 * 1024,
        ..Config::default()
    };
    let mut nm = NodeManager::new(e.seed, cfg, 0);
    nm.link_up(0, m.id, 100);
    let _ = actions(&mut nm);
    let sybil = |n: u32, links: usize| {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let (kp, id) = keypair_from_seed(&seed);
        let l: Vec<(NodeId, u32)> = (0..links)
            .map(|i| {
                let mut k = [1u8; 32];
                k[..4].copy_from_slice(&((n << 8) + i as u32).to_be_bytes());
                (NodeId(k), 1)
            })
            .collect();
        let mut l = l;
        l.sort();
        Msg::Advert(Advert::new_signed(
            &kp,
            id,
            1,
            60_000,
            l,
            AdvertFlags::default(),
            &[],
        ))
        .encode()
    };
    // 300 new origins at once: the neighbour's burst is taken, the rest waits.
    for n in 0..300 {
        nm.handle(1, m.id, &sybil(n, 0));
    }
    let c = nm.counters();
    assert_eq!(c.adverts_new_origin_limited, 200);
    assert!(c.lsdb_size <= 101, "{}", c.lsdb_size);
    // Large adverts of new origins hit the memory bound (later, as tokens refill).
    for n in 1000..1100 {
        nm.handle(10_000 + u64::from(n), m.id, &sybil(n, 200));
    }
    let c = nm.counters();
    assert!(c.lsdb_bytes <= 64 * 1024, "{}", c.lsdb_bytes);
    assert!(c.adverts_rejected.table_full > 0);
}

#[test]
fn a_table_filled_with_sybils_by_one_neighbour_still_takes_a_real_node_via_another() {
    use super::advert::{Advert, AdvertFlags};
    let (m, n, e, r) = (peer(2), peer(3), peer(4), peer(5));
    let cfg = Config {
        max_lsdb_entries: 40,
        ..Config::default()
    };
    let limit = cfg.max_lsdb_entries;
    let mut nm = NodeManager::new(e.seed, cfg, 0);
    nm.link_up(0, m.id, 100);
    nm.link_up(0, n.id, 100);
    nm.tick(100);
    let _ = actions(&mut nm);
    let advert = |p: &Peer, links: &[NodeId]| {
        let (kp, _) = keypair_from_seed(&p.seed);
        let mut l: Vec<(NodeId, u32)> = links.iter().map(|x| (*x, 100)).collect();
        l.sort();
        Msg::Advert(Advert::new_signed(
            &kp,
            p.id,
            1,
            600_000,
            l,
            AdvertFlags::default(),
            &[],
        ))
        .encode()
    };
    // The neighbours list e; n also lists r, its new neighbour.
    nm.handle(100, m.id, &advert(&m, &[e.id]));
    nm.handle(100, n.id, &advert(&n, &[e.id, r.id]));
    // m fills the table with Sybils claiming links to m, n and each other (none listed back).
    for i in 0..100u32 {
        let mut seed = [9u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let s = Peer {
            seed,
            id: keypair_from_seed(&seed).1,
        };
        nm.handle(200, m.id, &advert(&s, &[m.id, n.id]));
    }
    let c = nm.counters();
    assert_eq!(c.lsdb_size, limit);
    assert!(c.adverts_rejected.table_full > 0);
    assert_eq!(c.adverts_evicted, 0, "Sybils do not displace each other");
    // r joins through n: taken in the place of a Sybil, and routable.
    nm.handle(300, n.id, &advert(&r, &[n.id]));
    let c = nm.counters();
    assert_eq!(c.lsdb_size, limit);
    assert_eq!(c.adverts_evicted, 1);
    assert!(nm.advert(&r.id).is_some());
    assert_eq!(nm.path_cost(&r.id), Some(200));
    let _ = actions(&mut nm);
    nm.request_route(301, r.id);
    let setup_via_n = actions(&mut nm).iter().any(|a| match a {
        Action::Send { to, bytes } => {
            *to == n.id
                && matches!(Msg::decode(bytes), Ok(Msg::Setup { path, .. }) if path == vec![e.id, n.id, r.id])
        }
        _ => false,
    });
    assert!(setup_via_n, "a route to r is set up through n");
}

#[test]
fn forged_teardowns_and_keepalives_from_off_the_path_are_ignored_and_counted() {
    // m - e - n: e is the egress of a's route through m; n is another neighbour of e's.
    let (a, m, e, n) = (peer(1), peer(2), peer(3), peer(4));
    let mut nm = egress(&e, &m);
    nm.link_up(0, n.id, 100);
    let _ = actions(&mut nm);
    let path = vec![a.id, m.id, e.id];
    let (bytes, init, rid) = genuine(&a, &m, &e, 700);
    nm.handle(1, m.id, &bytes);
    let keys = origin_keys(&actions(&mut nm), init, rid, &path);
    // n knows the route id and sends what only m may: both Teardowns, a Keepalive (even one
    // with the right MAC: it is not on the path).
    for upstream in [false, true] {
        nm.handle(2, n.id, &Msg::Teardown { rid, upstream }.encode());
    }
    let mac = session::control_mac(&keys.ctrl, T_KEEPALIVE, &rid, 1);
    nm.handle(2, n.id, &Msg::Keepalive { rid, seq: 1, mac }.encode());
    assert_eq!(nm.counters().route_msgs_off_path, 3);
    assert_eq!(nm.counters().transit_states, 1, "the route is still held");
    // The same from m are taken; a Teardown for a route not held is not counted.
    nm.handle(3, m.id, &Msg::Keepalive { rid, seq: 1, mac }.encode());
    nm.handle(
        3,
        m.id,
        &Msg::Teardown {
            rid,
            upstream: false,
        }
        .encode(),
    );
    assert_eq!(nm.counters().transit_states, 0);
    nm.handle(
        4,
        n.id,
        &Msg::Teardown {
            rid,
            upstream: false,
        }
        .encode(),
    );
    assert_eq!(nm.counters().route_msgs_off_path, 3);
    assert_eq!(nm.counters().keepalives_unauthenticated, 0);
}
