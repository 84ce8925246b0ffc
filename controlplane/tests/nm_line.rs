//! Small scenarios: 3-node line setup/ack/teardown, failover on a square,
//! LSDB behaviour through the public API, lossy flooding, ageing.

#![forbid(unsafe_code)]

#[path = "nmsim/mod.rs"]
mod common;
use common::{Rng, Sim};
use controlplane::nm::advert::{Advert, AdvertFlags, keypair_from_seed};
use controlplane::nm::{Config, Msg, NodeManager, RouteRole, RouteState};

fn line3() -> Sim {
    let mut s = Sim::new(3, &Config::default(), 1);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 7);
    let t = s.run_until_pred(10, 2_000, |s| s.lsdb_converged());
    assert!(t.is_some(), "LSDB did not converge");
    s
}

#[test]
fn line_setup_ack_teardown() {
    let mut s = line3();
    s.request_route(0, 2);
    // one RTT along the path: 2*(5+7) ms
    s.run_until(s.now + 24);
    assert_eq!(s.nodes[0].counters().no_path, 0);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2]);
    // reverse direction set up in the same exchange
    assert_eq!(s.walk(2, 0).unwrap(), vec![2, 1, 0]);
    let r = s.nodes[0].routes(s.now);
    assert_eq!(r.len(), 1, "no disjoint backup on a line");
    assert_eq!(r[0].state, RouteState::Up);
    assert_eq!(r[0].role, RouteRole::Primary);
    assert!(r[0].active);
    assert_eq!(s.nodes[1].transit().len(), 1);
    assert_eq!(s.nodes[2].transit().len(), 1);
    // keep-alives keep the state well past the timeout
    s.run_until(s.now + 10_000);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2]);
    assert!(s.nodes[0].counters().keepalives_sent >= 9);
    // teardown
    let d = s.ids[2];
    let now = s.now;
    s.nodes[0].release_route(now, d);
    s.after(0);
    s.run_until(s.now + 50);
    for i in 0..3 {
        assert!(s.dp[i].rules.is_empty(), "node {i} rules left");
        assert!(s.dp[i].routes.is_empty(), "node {i} mapping left");
        assert_eq!(s.nodes[i].counters().labels_in_use, 0);
        assert_eq!(s.nodes[i].counters().transit_states, 0);
    }
    assert_eq!(s.rule_conflicts, 0);
    assert_eq!(s.missing_removes, 0);
}

#[test]
fn transit_state_expires_without_keepalive() {
    let mut s = line3();
    s.request_route(0, 2);
    s.run_until(s.now + 50);
    assert!(s.walk(0, 2).is_ok());
    // Silence the ingress: its messages are dropped and nobody is told,
    // so only the hop timers can clean up.
    let l = s.links.get_mut(&(0, 1)).unwrap();
    l.up = false; // messages dropped, nobody told
    s.run_until(s.now + Config::default().route_timeout_ms + 1_100);
    assert_eq!(s.nodes[1].transit().len(), 0);
    assert_eq!(s.nodes[2].transit().len(), 0);
    assert!(s.dp[1].rules.is_empty());
    assert!(s.dp[2].routes.is_empty());
}

#[test]
fn square_backup_preestablished_and_failover() {
    //  0 -5- 1 -5- 2
    //  |           |
    //  3 -----9----+  (0-3: 9)
    let mut s = Sim::new(4, &Config::default(), 2);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 5);
    s.link_up(0, 3, 9);
    s.link_up(3, 2, 9);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    s.request_route(0, 2);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2]);
    let r = s.nodes[0].routes(s.now);
    let b = r.iter().find(|r| r.role == RouteRole::Backup).unwrap();
    assert_eq!(b.state, RouteState::Up);
    assert_eq!(b.path, vec![s.ids[0], s.ids[3], s.ids[2]]);
    // fail 1-2: node 1 learns at once; node 0 fails over when the error
    // arrives (5 ms) or via the LSA, with no new setup on the critical path
    s.link_down(1, 2);
    s.run_until(s.now + 6);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 3, 2]);
    assert_eq!(s.nodes[0].counters().failovers, 1);
    assert!(s.walk(2, 0).is_ok());
    // link 0-1 direct primary + backup around
    s.request_route(0, 1);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 1).unwrap(), vec![0, 1]);
}

#[test]
fn drain_moves_routes_and_no_transit_refuses() {
    let mut s = Sim::new(4, &Config::default(), 3);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 5);
    s.link_up(0, 3, 9);
    s.link_up(3, 2, 9);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    s.request_route(0, 2);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2]);
    s.set_policy(1, true, false);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 3, 2]);
    assert!(s.walk(2, 0).is_ok());
    // node 1 carries no transit state any more
    s.run_until(s.now + 100);
    assert_eq!(s.nodes[1].transit().len(), 0);
    // no_transit: new routes avoid node 3 too -> 0 to 2 has no path except
    // via a no-transit/drained node: the existing route stays (no_transit
    // does not move existing routes)
    s.set_policy(3, false, true);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 3, 2]);
    // a new destination request for 2 from 1's side still works (direct)
    s.request_route(1, 2);
    s.run_until(s.now + 100);
    assert_eq!(s.walk(1, 2).unwrap(), vec![1, 2]);
}

#[test]
fn cost_override_changes_path() {
    let mut cfg = Config::default();
    let s0 = Sim::new(4, &cfg, 4);
    let id1 = s0.ids[1];
    let id2 = s0.ids[2];
    drop(s0);
    // nodes 0 and 1 (and 2) penalise the 0-1-2 side
    cfg.cost_override = vec![(id1, 100_000), (id2, 100_000)];
    let mut s = Sim::new(4, &cfg, 4);
    assert_eq!(s.ids[1], id1);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 5);
    s.link_up(0, 3, 9);
    s.link_up(3, 2, 9);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    s.request_route(0, 2);
    s.run_until(s.now + 200);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 3, 2]);
}

#[test]
fn handle_counts_rejections_and_garbage() {
    let (kb, b) = keypair_from_seed(&[42; 32]);
    let mut n = NodeManager::new([1; 32], Config::default(), 0);
    n.link_up(0, b, 1000);
    while n.poll_action().is_some() {}
    let a = Advert::new_signed(
        &kb,
        b,
        5,
        60_000,
        vec![(n.id(), 1000)],
        AdvertFlags::default(),
        &[],
    );
    let ok = Msg::Advert(a.clone()).encode();
    n.handle(1, b, &ok);
    n.handle(2, b, &ok); // replay
    let old = Advert::new_signed(&kb, b, 4, 60_000, vec![], AdvertFlags::default(), &[]);
    n.handle(3, b, &Msg::Advert(old).encode()); // stale
    let mut forged = Advert::new_signed(&kb, b, 6, 60_000, vec![], AdvertFlags::default(), &[]);
    forged.seq = 7; // signature no longer matches
    n.handle(4, b, &Msg::Advert(forged).encode());
    let mut unsigned = a.clone();
    unsigned.seq = 8;
    unsigned.sig = [0; 64];
    n.handle(5, b, &Msg::Advert(unsigned).encode());
    n.handle(6, b, &[1, 99, 1, 2, 3]);
    n.handle(7, b, &[]);
    let c = n.counters();
    assert_eq!(c.adverts_accepted, 1);
    assert_eq!(c.adverts_rejected.replay, 1);
    assert_eq!(c.adverts_rejected.stale, 1);
    assert_eq!(c.adverts_rejected.bad_signature, 1);
    assert_eq!(c.adverts_rejected.unsigned, 1);
    assert_eq!(c.msgs_malformed, 2);
    assert_eq!(c.lsdb_size, 1); // own advert not yet originated (hold-down)
    assert_eq!(n.advert(&b).unwrap().seq, 5);
    // accepted advert is acked, and not flooded back to its sender
    let acts: Vec<_> = std::iter::from_fn(|| n.poll_action()).collect();
    let acks = acts
        .iter()
        .filter(|a| matches!(a, controlplane::nm::Action::Send { bytes, .. } if bytes.get(1) == Some(&2)))
        .count();
    assert!(acks >= 3, "acks for accepted, replay and stale: {acks}");
}

#[test]
fn restart_jumps_past_old_seq() {
    let mut s = line3();
    // push node 0's seq up
    for k in 0..5 {
        s.set_policy(0, k % 2 == 0, false);
        s.run_until(s.now + 100);
    }
    s.set_policy(0, false, false);
    s.run_until(s.now + 100);
    let old = s.nodes[0].advert_seq();
    assert!(old >= 6);
    // "restart" node 0 with the same identity: fresh state, seq 1
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&1u64.to_le_bytes());
    seed[8..16].copy_from_slice(&1u64.to_le_bytes());
    s.nodes[0] = NodeManager::new(seed, Config::default(), s.now);
    // the link manager sees the link flap on the neighbour's side too
    s.link_down(0, 1);
    s.link_up(0, 1, 5);
    assert!(
        s.run_until_pred(10, 3_000, |s| s.lsdb_converged())
            .is_some()
    );
    assert!(s.nodes[0].advert_seq() > old);
    assert_eq!(s.nodes[0].counters().own_advert_newer_seen, 1);
}

#[test]
fn lossy_flooding_retransmits_and_converges() {
    let mut rng = Rng(77);
    let mut s = Sim::new(30, &Config::default(), 5);
    s.loss_pct = 10;
    for (a, b, l) in s.random_graph(&mut rng) {
        s.link_up(a, b, l);
    }
    let t = s.run_until_pred(50, 20_000, |s| s.lsdb_converged());
    assert!(t.is_some(), "no convergence with 10% loss");
    s.run_until(s.now + 2_000);
    let retx: u64 = s.nodes.iter().map(|n| n.counters().flood_retransmits).sum();
    assert!(retx > 0);
    // routes still come up (setup timeouts retry)
    for k in 0..10 {
        s.request_route(k, 29 - k);
    }
    let ok = s.run_until_pred(100, 20_000, |s| (0..10).all(|k| s.walk(k, 29 - k).is_ok()));
    assert!(ok.is_some());
}

#[test]
fn rate_limit_defers_and_counts() {
    let cfg = Config {
        flood_rate_per_s: 20,
        flood_burst: 2,
        ..Default::default()
    };
    let mut s = Sim::new(12, &cfg, 6);
    // line 0..10; node 11 joins later at node 0
    for i in 0..10 {
        s.link_up(i, i + 1, 1);
    }
    assert!(
        s.run_until_pred(50, 30_000, |s| {
            (0..11).all(|i| s.nodes[i].counters().lsdb_size == 11)
        })
        .is_some()
    );
    let t0 = s.now;
    s.link_up(0, 11, 1);
    let t = s
        .run_until_pred(10, 30_000, |s| s.nodes[11].counters().lsdb_size == 12)
        .unwrap();
    // 11 adverts at 20/s with burst 2: at least ~400 ms
    assert!(t >= 400, "took {t} ms from {t0}");
    assert!(s.nodes[0].counters().flood_rate_limited > 0);
}

#[test]
fn adverts_age_out() {
    let cfg = Config {
        advert_refresh_ms: 1_000,
        advert_lifetime_ms: 3_000,
        ..Default::default()
    };
    let mut s = Sim::new(3, &cfg, 7);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 5);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    // refreshes keep everything alive
    s.run_until(s.now + 10_000);
    assert!(s.lsdb_converged());
    // node 2 silently vanishes (no link_down anywhere)
    s.links.get_mut(&(1, 2)).unwrap().up = false;
    s.run_until(s.now + 3_100);
    assert!(s.nodes[0].advert(&s.ids[2]).is_none());
    assert!(s.nodes[0].counters().adverts_expired >= 1);
}

#[test]
fn neighbour_restart_with_link_replaced_resyncs_and_drops_old_routes() {
    // Line 0-1-2-3 with a route 0 -> 3 (and its reverse) up.
    let mut s = Sim::new(4, &Config::default(), 1);
    s.link_up(0, 1, 1);
    s.link_up(1, 2, 1);
    s.link_up(2, 3, 1);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    s.request_route(0, 3);
    s.run_until(s.now + 50);
    assert_eq!(s.walk(0, 3).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(s.walk(3, 0).unwrap(), vec![3, 2, 1, 0]);
    s.run_until(s.now + 500);
    // Node 0 restarts (fresh state, dataplane cleared) and its new link to
    // node 1 replaces the old one before node 1 saw the old one go down:
    // node 1 only gets a second `link_up`.
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&1u64.to_le_bytes());
    seed[8..16].copy_from_slice(&1u64.to_le_bytes());
    s.nodes[0] = NodeManager::new(seed, Config::default(), s.now);
    s.dp[0] = Default::default();
    s.link_up(0, 1, 1);
    s.run_until(s.now + 200);
    // The restarted node learnt the topology and the first packet's route
    // comes up at once, both directions, well inside a keep-alive period.
    s.request_route(0, 3);
    let t = s.run_until_pred(1, 300, |s| {
        s.walk(0, 3).is_ok_and(|p| p == [0, 1, 2, 3])
            && s.walk(3, 0).is_ok_and(|p| p == [3, 2, 1, 0])
    });
    assert!(
        t.is_some(),
        "0 -> 3: {:?}, 3 -> 0: {:?}",
        s.walk(0, 3),
        s.walk(3, 0)
    );
    assert_eq!(s.nodes[0].counters().no_path, 0);
}

/// A route's keys are replaced every `route_rekey_ms` (plus a spread of up to a quarter),
/// make-before-break: traffic has a mapping at every moment, each new key is shared by the two
/// ends only, and the old keys are erased from both ends' dataplanes.
#[test]
fn route_keys_are_renewed_in_time_without_a_gap() {
    let cfg = Config {
        route_rekey_ms: 5_000,
        ..Config::default()
    };
    let mut s = Sim::new(3, &cfg, 1);
    s.link_up(0, 1, 5);
    s.link_up(1, 2, 7);
    assert!(
        s.run_until_pred(10, 2_000, |s| s.lsdb_converged())
            .is_some()
    );
    s.request_route(0, 2);
    s.run_until(s.now + 24);
    assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2]);
    let first: Vec<[u8; 32]> = s.dp[0].keys.values().copied().collect();
    assert_eq!(first.len(), 2, "one route: a tx and an rx key");
    let start = s.now;
    while s.now < start + 16_000 {
        let t = s.now + 10;
        s.run_until(t);
        // Walks check that the egress opens with the ingress's key and no relay holds it.
        assert_eq!(s.walk(0, 2).unwrap(), vec![0, 1, 2], "gap at {}", s.now);
        assert_eq!(s.walk(2, 0).unwrap(), vec![2, 1, 0], "gap at {}", s.now);
    }
    assert!(
        s.nodes[0].counters().route_rekeys >= 2,
        "{:?}",
        s.nodes[0].counters().route_rekeys
    );
    let now_keys: Vec<[u8; 32]> = s.dp[0].keys.values().copied().collect();
    assert_eq!(
        now_keys.len(),
        2,
        "old keys left in the ingress's dataplane"
    );
    assert_eq!(
        s.dp[2].keys.len(),
        2,
        "old keys left in the egress's dataplane"
    );
    assert!(s.dp[1].keys.is_empty());
    assert!(
        now_keys.iter().all(|k| !first.contains(k)),
        "a key was kept"
    );
    assert_eq!(s.rule_conflicts, 0);
    assert_eq!(s.missing_removes, 0);
}
