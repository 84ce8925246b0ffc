//! In-process flows: servers and clients exchanging bytes through a test harness.

use super::client::{ClientConfig, ClientEvent, MessengerClient};
use super::record::{Record, Service};
use super::server::{MessengerServer, ServerConfig};
use super::wire::{MAX_RELAY, Msg, Reject};
use crate::identity::{Identity, NodeId};
use proptest::prelude::*;

fn ident(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

fn svc(kind: &str, port: u16) -> Service {
    Service {
        kind: kind.into(),
        port,
        meta: format!("{kind} on {port}"),
    }
}

struct Srv {
    id: NodeId,
    s: MessengerServer,
    /// Answers requests (false: a hung messenger that drops everything).
    answering: bool,
}

struct Net {
    now: u64,
    servers: Vec<Srv>,
    clients: Vec<MessengerClient>,
    events: Vec<Vec<ClientEvent>>,
}

impl Net {
    /// `n_servers` messengers (seeds 100..) and `n_clients` clients (seeds 1..), each client
    /// configured with all messengers and connected to all of them.
    fn new(n_servers: u8, n_clients: u8) -> Net {
        let servers: Vec<Srv> = (0..n_servers)
            .map(|i| Srv {
                id: ident(100 + i).id(),
                s: MessengerServer::new(ServerConfig::default()),
                answering: true,
            })
            .collect();
        let ids: Vec<NodeId> = servers.iter().map(|s| s.id).collect();
        let clients = (1..=n_clients)
            .map(|i| MessengerClient::new(ident(i), ClientConfig::new(ids.clone(), 1000)))
            .collect();
        let mut net = Net {
            now: 0,
            servers,
            clients,
            events: vec![Vec::new(); usize::from(n_clients)],
        };
        for c in 0..net.clients.len() {
            for s in 0..net.servers.len() {
                net.link(c, s);
            }
        }
        net.pump();
        net
    }

    fn pk(&self, c: usize) -> NodeId {
        self.clients[c].pk()
    }

    fn link(&mut self, c: usize, s: usize) {
        let pk = self.clients[c].pk();
        self.servers[s].s.connect(pk);
        let sid = self.servers[s].id;
        self.clients[c].connected(self.now, sid);
    }

    fn unlink(&mut self, c: usize, s: usize) {
        let pk = self.clients[c].pk();
        self.servers[s].s.disconnect(pk);
        let sid = self.servers[s].id;
        self.clients[c].disconnected(self.now, sid);
    }

    /// A messenger goes down: every client sees its connection close.
    fn server_down(&mut self, s: usize) {
        for c in 0..self.clients.len() {
            self.unlink(c, s);
        }
    }

    /// Delivers everything until nothing moves; collects events.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for c in 0..self.clients.len() {
                while let Some((sid, bytes)) = self.clients[c].poll_transmit() {
                    moved = true;
                    let from = self.clients[c].pk();
                    let Some(srv) = self.servers.iter_mut().find(|s| s.id == sid) else {
                        continue;
                    };
                    if !srv.answering || !srv.s.is_connected(&from) {
                        continue;
                    }
                    for (to, reply) in srv.s.handle(self.now, from, &bytes) {
                        if let Some(dst) = self.clients.iter_mut().find(|c| c.pk() == to) {
                            dst.handle(self.now, sid, &reply);
                        }
                    }
                }
                while let Some(e) = self.clients[c].poll_event() {
                    self.events[c].push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn take_events(&mut self, c: usize) -> Vec<ClientEvent> {
        self.pump();
        std::mem::take(&mut self.events[c])
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for s in &mut self.servers {
            s.s.tick(self.now);
        }
        for c in &mut self.clients {
            c.tick(self.now);
        }
        self.pump();
    }
}

fn found(ev: &[ClientEvent]) -> Vec<(NodeId, bool, bool)> {
    ev.iter()
        .filter_map(|e| match e {
            ClientEvent::Found {
                record,
                from_cache,
                stale,
            } => Some((record.pk, *from_cache, *stale)),
            _ => None,
        })
        .collect()
}

fn services(ev: &[ClientEvent]) -> Vec<(Vec<NodeId>, bool)> {
    ev.iter()
        .filter_map(|e| match e {
            ClientEvent::Services {
                records,
                from_cache,
                ..
            } => Some((records.iter().map(|r| r.pk).collect(), *from_cache)),
            _ => None,
        })
        .collect()
}

/// Three clients: 0 publishes vpn, 1 publishes vpn + chat, 2 publishes nothing.
fn three() -> Net {
    let mut net = Net::new(1, 3);
    let now = net.now;
    net.clients[0]
        .set_record(
            now,
            vec!["10.0.0.1:7000".parse().unwrap()],
            vec![svc("vpn", 1)],
        )
        .unwrap();
    net.clients[1]
        .set_record(
            now,
            vec!["[fd00::2]:7000".parse().unwrap()],
            vec![svc("vpn", 2), svc("chat", 3)],
        )
        .unwrap();
    net.pump();
    net
}

#[test]
fn register_lookup_query_relay_between_three_clients() {
    let mut net = three();
    let s0 = net.servers[0].id;
    for c in 0..2 {
        let ev = net.take_events(c);
        assert!(
            matches!(ev[..], [ClientEvent::Registered { server, seq: 1000 }] if server == s0),
            "{ev:?}"
        );
        assert!(net.clients[c].is_registered_with(&s0));
    }
    assert_eq!(net.servers[0].s.counters().registered, 2);

    let (a, b, c) = (net.pk(0), net.pk(1), net.pk(2));
    let now = net.now;
    net.clients[2].lookup(now, a);
    let ev = net.take_events(2);
    assert_eq!(found(&ev), vec![(a, false, false)]);
    let ClientEvent::Found { record, .. } = &ev[0] else {
        unreachable!()
    };
    assert_eq!(record.endpoints, vec!["10.0.0.1:7000".parse().unwrap()]);
    assert_eq!(record.services, vec![svc("vpn", 1)]);

    // A second lookup within the TTL comes from the cache without a round trip.
    net.clients[2].lookup(now, a);
    assert!(net.clients[2].poll_transmit().is_none());
    assert_eq!(found(&net.take_events(2)), vec![(a, true, false)]);

    // Nobody registered c.
    net.clients[0].lookup(now, c);
    assert_eq!(
        net.take_events(0),
        vec![ClientEvent::NotFound {
            pk: c,
            offline: false
        }]
    );

    net.clients[2].query(now, "vpn");
    let mut want = vec![a, b];
    want.sort();
    // Both, in the order of the server's fair sample (it starts at another record each time).
    let mut got = services(&net.take_events(2));
    for (list, _) in got.iter_mut() {
        list.sort();
    }
    assert_eq!(got, vec![(want, false)]);
    net.clients[2].query(now, "chat");
    assert_eq!(services(&net.take_events(2)), vec![(vec![b], false)]);
    net.clients[2].query(now, "nothing");
    assert_eq!(services(&net.take_events(2)), vec![(vec![], false)]);

    // Relay: a -> b, and c (unregistered but connected) -> a.
    net.clients[0].relay(now, b, b"hi b".to_vec()).unwrap();
    net.clients[2].relay(now, a, b"hi a".to_vec()).unwrap();
    assert_eq!(
        net.take_events(1),
        vec![ClientEvent::Relayed {
            from: a,
            bytes: b"hi b".to_vec()
        }]
    );
    assert_eq!(
        net.take_events(0),
        vec![ClientEvent::Relayed {
            from: c,
            bytes: b"hi a".to_vec()
        }]
    );
    assert_eq!(net.servers[0].s.counters().relayed, 2);

    // Relay to a client that is gone.
    net.unlink(1, 0);
    net.clients[0].relay(now, b, b"x".to_vec()).unwrap();
    assert_eq!(
        net.take_events(0),
        vec![ClientEvent::Rejected {
            server: s0,
            code: Reject::Unreachable,
            subject: Some(b)
        }]
    );
    assert_eq!(
        net.clients[0].relay(now, b, vec![0; MAX_RELAY + 1]),
        Err(super::client::ClientError::TooLarge)
    );
}

fn register(s: &mut MessengerServer, now: u64, from: NodeId, r: &Record) -> Msg {
    let out = s.handle(now, from, &Msg::Register(r.clone()).encode());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, from);
    Msg::decode(&out[0].1).unwrap()
}

fn err(code: Reject, pk: NodeId) -> Msg {
    Msg::Error {
        code,
        subject: Some(pk),
    }
}

#[test]
fn forged_unsigned_stale_replayed_and_malformed_are_rejected_and_counted() {
    let mut s = MessengerServer::new(ServerConfig::default());
    let (a, b) = (ident(1), ident(2));
    let (pa, pb) = (a.id(), b.id());
    let eps = vec!["1.1.1.1:1".parse().unwrap()];
    let good = Record::sign(&a, 5, 10_000, eps.clone(), vec![svc("vpn", 1)]).unwrap();

    // Signed by another key but claiming a's pk, sent by a.
    let mut forged = Record::sign(&b, 6, 10_000, eps.clone(), vec![]).unwrap();
    forged.pk = pa;
    assert_eq!(
        register(&mut s, 0, pa, &forged),
        err(Reject::BadSignature, pa)
    );
    // Tampered after signing.
    let mut tampered = good.clone();
    tampered.endpoints = vec!["6.6.6.6:6".parse().unwrap()];
    assert_eq!(
        register(&mut s, 0, pa, &tampered),
        err(Reject::BadSignature, pa)
    );
    // A valid record of a, sent by b: b may not register a's record.
    assert_eq!(register(&mut s, 0, pb, &good), err(Reject::WrongSigner, pa));
    // Unsigned.
    let mut unsigned = good.clone();
    unsigned.sig = [0; 64];
    assert_eq!(
        register(&mut s, 0, pa, &unsigned),
        err(Reject::Unsigned, pa)
    );
    // Bad TTLs.
    let forever = Record::sign(&a, 5, u32::MAX, eps.clone(), vec![]).unwrap();
    assert_eq!(register(&mut s, 0, pa, &forever), err(Reject::BadTtl, pa));
    let zero = Record::sign(&a, 5, 0, eps.clone(), vec![]).unwrap();
    assert_eq!(register(&mut s, 0, pa, &zero), err(Reject::BadTtl, pa));
    assert!(s.record(&pa, 0).is_none());

    // The good one, then a replay of it and an older one.
    assert_eq!(
        register(&mut s, 0, pa, &good),
        Msg::Registered { pk: pa, seq: 5 }
    );
    assert_eq!(register(&mut s, 1, pa, &good), err(Reject::Replay, pa));
    let older = Record::sign(&a, 4, 10_000, eps.clone(), vec![]).unwrap();
    assert_eq!(register(&mut s, 2, pa, &older), err(Reject::Stale, pa));
    // Same seq, different content: also refused.
    let reuse = Record::sign(&a, 5, 10_000, vec![], vec![]).unwrap();
    assert_eq!(register(&mut s, 3, pa, &reuse), err(Reject::Replay, pa));
    assert_eq!(s.record(&pa, 3), Some(&good));

    // Malformed and unexpected messages.
    for junk in [&b""[..], &[1], &[9, 1, 2], &[1, 2, 0]] {
        let out = s.handle(4, pb, junk);
        assert_eq!(
            Msg::decode(&out[0].1).unwrap(),
            Msg::Error {
                code: Reject::Malformed,
                subject: None
            }
        );
    }
    let out = s.handle(4, pb, &Msg::NotFound { pk: pa }.encode());
    assert_eq!(
        Msg::decode(&out[0].1).unwrap(),
        Msg::Error {
            code: Reject::Unexpected,
            subject: None
        }
    );
    s.connect(pa);
    let out = s.handle(
        4,
        pb,
        &Msg::Relay {
            to: pa,
            bytes: vec![0; MAX_RELAY + 1],
        }
        .encode(),
    );
    assert_eq!(Msg::decode(&out[0].1).unwrap(), err(Reject::TooLarge, pa));

    let c = s.counters();
    assert_eq!(c.rejected(Reject::BadSignature), 2);
    assert_eq!(c.rejected(Reject::WrongSigner), 1);
    assert_eq!(c.rejected(Reject::Unsigned), 1);
    assert_eq!(c.rejected(Reject::BadTtl), 2);
    assert_eq!(c.rejected(Reject::Replay), 2);
    assert_eq!(c.rejected(Reject::Stale), 1);
    assert_eq!(c.rejected(Reject::Malformed), 4);
    assert_eq!(c.rejected(Reject::Unexpected), 1);
    assert_eq!(c.rejected(Reject::TooLarge), 1);
    assert_eq!(c.rejected_total(), 15);
    assert_eq!(c.registered, 1);
    assert_eq!(c.relayed, 0);
}

#[test]
fn registrations_are_rate_limited_per_client() {
    let mut s = MessengerServer::new(ServerConfig::default());
    let (a, b) = (ident(1), ident(2));
    let rec = |id: &Identity, seq| Record::sign(id, seq, 10_000, vec![], vec![]).unwrap();
    // Burst of 10.
    for seq in 1..=10 {
        assert!(matches!(
            register(&mut s, 0, a.id(), &rec(&a, seq)),
            Msg::Registered { .. }
        ));
    }
    assert_eq!(
        register(&mut s, 0, a.id(), &rec(&a, 11)),
        err(Reject::RateLimited, a.id())
    );
    // Another client is not affected.
    assert!(matches!(
        register(&mut s, 0, b.id(), &rec(&b, 1)),
        Msg::Registered { .. }
    ));
    // Lookups are not registrations.
    let out = s.handle(0, a.id(), &Msg::Lookup { pk: b.id() }.encode());
    assert!(matches!(Msg::decode(&out[0].1), Ok(Msg::Found(_))));
    // 5 per second refill: 199 ms later still empty, 200 ms gives one.
    assert_eq!(
        register(&mut s, 199, a.id(), &rec(&a, 12)),
        err(Reject::RateLimited, a.id())
    );
    assert!(matches!(
        register(&mut s, 200, a.id(), &rec(&a, 13)),
        Msg::Registered { seq: 13, .. }
    ));
    // After a second, 5 more (not 10).
    let mut ok = 0;
    for seq in 14..30 {
        if matches!(
            register(&mut s, 1200, a.id(), &rec(&a, seq)),
            Msg::Registered { .. }
        ) {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(s.counters().rejected(Reject::RateLimited), 2 + 11);
    // The rate limit state survives a tick while not yet refilled.
    s.tick(1200);
    assert_eq!(
        register(&mut s, 1200, a.id(), &rec(&a, 40)),
        err(Reject::RateLimited, a.id())
    );
}

#[test]
fn all_requests_are_rate_limited_too() {
    let mut s = MessengerServer::new(ServerConfig {
        request_per_s: 1,
        request_burst: 3,
        ..ServerConfig::default()
    });
    let a = ident(1).id();
    let q = Msg::Query { kind: "x".into() }.encode();
    for _ in 0..3 {
        assert!(matches!(
            Msg::decode(&s.handle(0, a, &q)[0].1),
            Ok(Msg::Services { .. })
        ));
    }
    assert_eq!(
        Msg::decode(&s.handle(0, a, &q)[0].1),
        Ok(Msg::Error {
            code: Reject::RateLimited,
            subject: None
        })
    );
}

#[test]
fn records_expire_by_ttl_and_old_seqs_are_remembered() {
    let mut s = MessengerServer::new(ServerConfig::default());
    let a = ident(1);
    let r = Record::sign(&a, 1, 1000, vec![], vec![svc("vpn", 1)]).unwrap();
    register(&mut s, 0, a.id(), &r);
    assert!(s.record(&a.id(), 999).is_some());
    // Expired records are not served even before the tick drops them.
    assert!(s.record(&a.id(), 1000).is_none());
    let out = s.handle(1000, a.id(), &Msg::Query { kind: "vpn".into() }.encode());
    assert!(
        matches!(Msg::decode(&out[0].1), Ok(Msg::Services { records, .. }) if records.is_empty())
    );
    s.tick(999);
    assert_eq!(s.len(), 1);
    s.tick(1000);
    assert_eq!(s.len(), 0);
    assert_eq!(s.counters().expired, 1);
    let out = s.handle(1001, a.id(), &Msg::Lookup { pk: a.id() }.encode());
    assert_eq!(Msg::decode(&out[0].1), Ok(Msg::NotFound { pk: a.id() }));
    // The expired record cannot be replayed.
    assert_eq!(
        register(&mut s, 2000, a.id(), &r),
        err(Reject::Replay, a.id())
    );
    // A newer one is fine.
    let r2 = Record::sign(&a, 2, 1000, vec![], vec![]).unwrap();
    assert!(matches!(
        register(&mut s, 2000, a.id(), &r2),
        Msg::Registered { seq: 2, .. }
    ));
    // The kind index no longer lists a for vpn.
    let out = s.handle(2000, a.id(), &Msg::Query { kind: "vpn".into() }.encode());
    assert!(
        matches!(Msg::decode(&out[0].1), Ok(Msg::Services { records, .. }) if records.is_empty())
    );
}

#[test]
fn client_reregisters_before_the_ttl_runs_out() {
    let mut net = three();
    let a = net.pk(0);
    net.take_events(0);
    let ttl = 60_000;
    // Far into the future the record is still there because it was refreshed.
    for _ in 0..10 {
        net.advance(ttl / 4);
    }
    assert!(net.servers[0].s.record(&a, net.now).is_some());
    let regs: Vec<u64> = net
        .take_events(0)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Registered { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert!(regs.len() >= 4, "{regs:?}");
    assert!(regs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(net.servers[0].s.counters().rejected_total(), 0);
    // An unacknowledged registration (lost) is retried after the request timeout.
    net.servers[0].answering = false;
    net.advance(ttl / 2);
    net.servers[0].answering = true;
    net.advance(3_000);
    assert!(matches!(
        net.take_events(0)[..],
        [ClientEvent::Registered { .. }]
    ));
}

#[test]
fn client_cache_answers_while_the_messenger_is_down() {
    let mut net = three();
    let (a, b) = (net.pk(0), net.pk(1));
    let now = net.now;
    net.clients[2].lookup(now, a);
    net.clients[2].query(now, "chat");
    net.take_events(2);

    net.server_down(0);
    assert_eq!(net.clients[2].active(net.now), None);
    net.clients[2].lookup(net.now, a);
    assert_eq!(found(&net.take_events(2)), vec![(a, true, false)]);
    // Past the TTL: still answered, marked stale.
    net.advance(61_000);
    net.clients[2].lookup(net.now, a);
    net.clients[2].lookup(net.now, b);
    assert_eq!(
        found(&net.take_events(2)),
        vec![(a, true, true), (b, true, true)]
    );
    let unknown = ident(77).id();
    net.clients[2].lookup(net.now, unknown);
    assert_eq!(
        net.take_events(2),
        vec![ClientEvent::NotFound {
            pk: unknown,
            offline: true
        }]
    );
    net.clients[2].query(net.now, "vpn");
    let mut want = vec![a, b];
    want.sort();
    // b came in through the chat query; a through the lookup.
    assert_eq!(services(&net.take_events(2)), vec![(want, true)]);
    assert_eq!(
        net.clients[2].relay(net.now, a, vec![1]),
        Err(super::client::ClientError::NoServer)
    );
}

#[test]
fn a_hung_messenger_times_out_to_the_cache() {
    let mut net = three();
    let a = net.pk(0);
    net.clients[2].lookup(net.now, a);
    net.take_events(2);
    net.advance(61_000);
    net.servers[0].answering = false;
    net.clients[2].lookup(net.now, a);
    assert!(found(&net.take_events(2)).is_empty());
    net.advance(3_000);
    assert_eq!(found(&net.take_events(2)), vec![(a, true, true)]);
    assert_eq!(net.clients[2].counters().timeouts, 1);
}

#[test]
fn failover_to_the_second_messenger() {
    let mut net = Net::new(2, 3);
    let (s0, s1) = (net.servers[0].id, net.servers[1].id);
    let a = net.pk(0);
    net.clients[0]
        .set_record(net.now, vec![], vec![svc("vpn", 1)])
        .unwrap();
    net.pump();
    // Registered with both messengers.
    assert!(net.clients[0].is_registered_with(&s0));
    assert!(net.clients[0].is_registered_with(&s1));
    assert_eq!(net.clients[2].active(net.now), Some(s0));

    // s0 goes down: lookups go to s1.
    net.server_down(0);
    assert_eq!(net.clients[2].active(net.now), Some(s1));
    net.clients[2].lookup(net.now, a);
    assert_eq!(found(&net.take_events(2)), vec![(a, false, false)]);
    assert_eq!(net.servers[1].s.counters().found, 1);
    // Relays too.
    net.take_events(0);
    net.clients[2]
        .relay(net.now, a, b"via s1".to_vec())
        .unwrap();
    assert!(
        matches!(&net.take_events(0)[..], [ClientEvent::Relayed { bytes, .. }] if bytes == b"via s1")
    );

    // s0 comes back (empty, as after a restart): the client re-registers there, and it is
    // preferred again.
    net.servers[0].s = MessengerServer::new(ServerConfig::default());
    for c in 0..3 {
        net.link(c, 0);
    }
    net.pump();
    assert!(net.clients[0].is_registered_with(&s0));
    assert_eq!(net.clients[2].active(net.now), Some(s0));
    assert!(net.servers[0].s.record(&a, net.now).is_some());

    // s0 hangs: a query times out and moves to s1.
    net.servers[0].answering = false;
    net.clients[2].query(net.now, "vpn");
    assert!(services(&net.take_events(2)).is_empty());
    net.advance(3_000);
    assert_eq!(services(&net.take_events(2)), vec![(vec![a], false)]);
    assert_eq!(net.clients[2].counters().failovers, 1);
    assert_eq!(net.clients[2].active(net.now), Some(s1));
    // After the retry period s0 is tried again.
    net.advance(10_000);
    assert_eq!(net.clients[2].active(net.now), Some(s0));
}

#[test]
fn client_refuses_forged_records_from_a_lying_messenger() {
    let mut net = three();
    let s0 = net.servers[0].id;
    let a = net.pk(0);
    net.clients[2].lookup(net.now, a);
    let good = match &net.take_events(2)[..] {
        [ClientEvent::Found { record, .. }] => record.clone(),
        e => panic!("{e:?}"),
    };
    let now = net.now + 61_000;
    // The messenger answers with a tampered record: the cached good one is reported.
    let c = &mut net.clients[2];
    c.lookup(now, a);
    let _ = c.poll_transmit();
    let mut bad = good.clone();
    bad.endpoints = vec!["6.6.6.6:6".parse().unwrap()];
    c.handle(now, s0, &Msg::Found(bad).encode());
    assert!(matches!(c.poll_event(), Some(ClientEvent::Found { record, .. }) if record == good));
    assert_eq!(c.counters().bad_records, 1);
    // Answers nobody asked for, garbage, and messages from unknown keys are counted.
    c.handle(now, s0, &Msg::Found(good.clone()).encode());
    c.handle(now, s0, b"\x01\xff");
    c.handle(now, ident(55).id(), &Msg::NotFound { pk: a }.encode());
    assert_eq!(c.counters().unexpected, 2);
    assert_eq!(c.counters().malformed, 1);
    assert!(c.poll_event().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn server_survives_any_bytes(reqs in proptest::collection::vec(
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..40)) {
        let mut s = MessengerServer::new(ServerConfig::default());
        let ids: Vec<NodeId> = (1..=4).map(|i| ident(i).id()).collect();
        for id in &ids {
            s.connect(*id);
        }
        for (i, (who, mut b)) in reqs.into_iter().enumerate() {
            // Half of them get a valid header so they reach the parsers behind it.
            if i % 2 == 0 && b.len() >= 2 {
                b[0] = 1;
                b[1] = [1, 2, 3, 4][usize::from(b[1] % 4)];
            }
            let out = s.handle(i as u64, ids[usize::from(who)], &b);
            for (_, m) in out {
                prop_assert!(Msg::decode(&m).is_ok());
            }
            s.tick(i as u64 * 10);
        }
        prop_assert_eq!(s.counters().registered, 0);
    }

    #[test]
    fn client_survives_any_bytes(msgs in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..300), 0..40)) {
        let sid = ident(100).id();
        let mut c = MessengerClient::new(ident(1), ClientConfig::new(vec![sid], 1));
        c.connected(0, sid);
        c.lookup(0, ident(2).id());
        c.query(0, "vpn");
        for (i, mut b) in msgs.into_iter().enumerate() {
            if i % 2 == 0 && b.len() >= 2 {
                b[0] = 1;
                b[1] = 0x81 + b[1] % 6;
            }
            c.handle(i as u64, sid, &b);
            c.tick(i as u64 * 100);
            while c.poll_event().is_some() {}
            while c.poll_transmit().is_some() {}
        }
    }
}

#[test]
fn one_address_holds_a_bounded_number_of_records_and_queries_answer_a_fair_sample() {
    let cfg = ServerConfig {
        max_records_per_source: 4,
        ..ServerConfig::default()
    };
    let mut s = MessengerServer::new(cfg);
    let eps = vec!["1.1.1.1:1".parse().unwrap()];
    let sybil: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    // Keys made for the purpose, all from one host.
    for n in 10..16u8 {
        let id = ident(n);
        s.connect_from(id.id(), sybil);
        let r = Record::sign(&id, 1, 10_000, eps.clone(), vec![svc("vpn", 1)]).unwrap();
        let got = register(&mut s, 0, id.id(), &r);
        if n < 14 {
            assert_eq!(
                got,
                Msg::Registered {
                    pk: id.id(),
                    seq: 1
                },
                "key {n}"
            );
        } else {
            assert_eq!(got, err(Reject::SourceFull, id.id()), "key {n}");
        }
    }
    // Re-registering one of its records is fine; another host is not affected.
    let first = ident(10);
    let again = Record::sign(&first, 2, 10_000, eps.clone(), vec![svc("vpn", 1)]).unwrap();
    assert_eq!(
        register(&mut s, 1, first.id(), &again),
        Msg::Registered {
            pk: first.id(),
            seq: 2
        }
    );
    let honest = ident(40);
    s.connect_from(honest.id(), "198.51.100.1".parse().unwrap());
    let r = Record::sign(&honest, 1, 10_000, eps.clone(), vec![svc("vpn", 1)]).unwrap();
    assert!(matches!(
        register(&mut s, 1, honest.id(), &r),
        Msg::Registered { .. }
    ));
    assert_eq!(s.counters().rejected(Reject::SourceFull), 2);
    // Answers start at different records: no key is always first.
    let mut firsts = std::collections::BTreeSet::new();
    for t in 0..5 {
        let out = s.handle(
            2 + t,
            honest.id(),
            &Msg::Query { kind: "vpn".into() }.encode(),
        );
        let Ok(Msg::Services { records, .. }) = Msg::decode(&out[0].1) else {
            panic!("no answer")
        };
        assert_eq!(records.len(), 5);
        firsts.insert(records[0].pk);
    }
    assert_eq!(
        firsts.len(),
        5,
        "every record comes first once in five queries"
    );
}
