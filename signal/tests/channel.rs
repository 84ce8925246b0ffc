//! The two halves over a real sealed memfd: messages flow both ways, and a peer that scribbles
//! over the shared region is detected without crashes, hangs or out-of-bounds reads.

use memmap2::MmapRaw;
use proptest::prelude::*;
use signal::{Channel, Client, ClientFds, Msg};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn dup(fds: &ClientFds) -> ClientFds {
    ClientFds {
        memfd: fds.memfd.try_clone().unwrap(),
        to_client: fds.to_client.try_clone().unwrap(),
        to_server: fds.to_server.try_clone().unwrap(),
    }
}

fn recv(server: &mut Channel, timeout: Duration) -> Option<Msg> {
    server.rx.recv_timeout(timeout).unwrap()
}

#[test]
fn register_ping_usage_shutdown() {
    let (mut server, fds) = Channel::create(1 << 16).unwrap();
    let session = Client::from_fds(fds, 7)
        .unwrap()
        .register("test-kind", "1.2.3")
        .unwrap();
    match recv(&mut server, Duration::from_secs(5)) {
        Some(Msg::Register {
            id,
            kind,
            pid,
            version,
        }) => {
            assert_eq!(
                (id, kind.as_str(), pid, version.as_str()),
                (7, "test-kind", std::process::id(), "1.2.3")
            );
        }
        other => panic!("expected register, got {other:?}"),
    }
    server.tx.send(&Msg::Ping { nonce: 99 }).unwrap();
    assert_eq!(
        recv(&mut server, Duration::from_secs(5)),
        Some(Msg::Pong { nonce: 99 })
    );

    session
        .counter("frames")
        .fetch_add(41, std::sync::atomic::Ordering::Relaxed);
    session
        .counter("frames")
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    server.tx.send(&Msg::UsageRequest { nonce: 5 }).unwrap();
    match recv(&mut server, Duration::from_secs(5)) {
        Some(Msg::Usage { nonce: 5, usage }) => {
            assert_eq!(usage.counters, vec![("frames".to_string(), 42)]);
            assert!(
                usage.threads >= 2,
                "this test process has the responder thread too"
            );
            assert!(usage.rss_bytes > 0);
        }
        other => panic!("expected usage, got {other:?}"),
    }
    assert_eq!(session.shutdown_requested(), None);
    server
        .tx
        .send(&Msg::Shutdown { deadline_ms: 1000 })
        .unwrap();
    assert!(
        session
            .wait_shutdown(Some(Duration::from_secs(5)))
            .is_some()
    );
    session.ack_shutdown();
    assert_eq!(
        recv(&mut server, Duration::from_secs(5)),
        Some(Msg::ShutdownAck)
    );
}

#[test]
fn unknown_message_type_is_reported_not_fatal() {
    let (mut server, fds) = Channel::create(1 << 16).unwrap();
    let mut client = Channel::open(fds).unwrap();
    client
        .tx
        .send_raw(&[signal::proto::PROTO_VERSION, 0x7f, 1, 2, 3])
        .unwrap();
    client.tx.send(&Msg::Ping { nonce: 1 }).unwrap();
    let err = server.rx.try_recv().unwrap_err();
    assert!(!err.is_fatal());
    assert!(
        err.to_string().contains("unknown message type 0x7f"),
        "{err}"
    );
    assert_eq!(server.rx.try_recv().unwrap(), Some(Msg::Ping { nonce: 1 }));
}

#[test]
fn heartbeat_words_are_per_side() {
    let (server, fds) = Channel::create(1 << 16).unwrap();
    let client = Channel::open(fds).unwrap();
    client.beat();
    client.beat();
    server.beat();
    assert_eq!(server.peer_heartbeat(), 2);
    assert_eq!(client.peer_heartbeat(), 1);
}

#[test]
fn unsealed_or_wrong_sized_memfd_is_refused() {
    let plain = memfd::MemfdOptions::default().create("x").unwrap();
    plain.as_file().set_len(1 << 20).unwrap();
    let (_server, fds) = Channel::create(1 << 16).unwrap();
    let fake = ClientFds {
        memfd: plain.into_file().into(),
        to_client: fds.to_client,
        to_server: fds.to_server,
    };
    let err = Channel::open(fake)
        .err()
        .expect("unsealed region must be refused");
    assert!(err.to_string().contains("sealed"), "{err}");
}

#[test]
fn full_ring_is_backpressure_not_loss() {
    let (mut server, fds) = Channel::create(4096).unwrap();
    let mut client = Channel::open(fds).unwrap();
    let mut sent = 0u64;
    while client.tx.send(&Msg::Ping { nonce: sent }).is_ok() {
        sent += 1;
    }
    assert!(sent > 100);
    for n in 0..sent {
        assert_eq!(server.rx.try_recv().unwrap(), Some(Msg::Ping { nonce: n }));
    }
    assert_eq!(server.rx.try_recv().unwrap(), None);
}

fn scribble(map: &MmapRaw, writes: &[(usize, u64)]) {
    for &(off, v) in writes {
        let off = (off % (map.len() / 8)) * 8;
        // SAFETY: off + 8 <= len, 8-aligned within a page-aligned mapping; the test plays a
        // hostile peer writing shared memory concurrently, which is the point.
        unsafe { std::ptr::write_volatile(map.as_mut_ptr().add(off).cast::<u64>(), v) };
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// A hostile client scribbles over the whole region (indices, lengths, data, header) while
    /// the server reads and writes: every call returns (message or error) quickly.
    #[test]
    fn hostile_client_never_crashes_the_server(
        writes in proptest::collection::vec((any::<usize>(), any::<u64>()), 1..64),
        small in proptest::collection::vec((0usize..100, 0u64..1 << 20), 0..16),
    ) {
        let (mut server, fds) = Channel::create(4096).unwrap();
        let peer = dup(&fds);
        let mut client = Channel::open(fds).unwrap();
        client.tx.send(&Msg::Ping { nonce: 1 }).unwrap();
        let map = MmapRaw::map_raw(peer.memfd.as_raw_fd()).unwrap();
        scribble(&map, &writes);
        scribble(&map, &small);
        let t = Instant::now();
        for _ in 0..50 {
            let _ = server.rx.try_recv();
            let _ = server.tx.send(&Msg::Ping { nonce: 2 });
        }
        let r = server.rx.recv_timeout(Duration::from_millis(5));
        prop_assert!(r.is_ok() || r.is_err());
        prop_assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// The same from the client's side: a hostile server cannot crash the responder.
    #[test]
    fn hostile_server_never_crashes_the_client(
        writes in proptest::collection::vec((any::<usize>(), any::<u64>()), 1..64),
    ) {
        let (mut server, fds) = Channel::create(4096).unwrap();
        let peer = dup(&fds);
        let mut client = Channel::open(fds).unwrap();
        server.tx.send(&Msg::Ping { nonce: 1 }).unwrap();
        let map = MmapRaw::map_raw(peer.memfd.as_raw_fd()).unwrap();
        scribble(&map, &writes);
        for _ in 0..50 {
            let _ = client.rx.try_recv();
            let _ = client.tx.send(&Msg::Pong { nonce: 2 });
        }
    }
}
