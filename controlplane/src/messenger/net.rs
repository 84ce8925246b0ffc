//! Blocking TCP glue: a messenger server ([`serve`]) and a client connection ([`connect`]).
//!
//! A connection is the link handshake ([`crate::link::Handshake`], Noise XX with both sides'
//! keys bound to their identities) over `u16 length | bytes` frames, then one messenger
//! [`super::wire::Msg`] per Noise transport message in the same framing. The dataplane
//! parameters of the handshake are unused (zeroes).
//!
//! The server admits connections through an [`crate::accept::Gate`] ([`BOUNDS`]: caps on
//! handshaking, per-source and total connections, a whole-handshake deadline) and drops a client
//! that sends no whole message for [`IDLE_TIMEOUT`]; what it refuses is counted in
//! [`ServerHandle::listener_stats`].

use super::server::{MessengerServer, ServerConfig};
use crate::accept::{self, Gate, Limits, ListenerStats, Permit};
use crate::identity::{Identity, NodeId};
use crate::link::{Established, Handshake, LinkParams, MAX_MSG, Step};
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest a whole handshake may take, from connect or accept to the last message (not per
/// read): milliseconds of work, so 5 s leaves room for a slow path and is the longest a stranger
/// holds a handshaking slot.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Messages queued per connection before more are dropped.
const QUEUE: usize = 256;
/// How long a write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server expires records.
const TICK: Duration = Duration::from_secs(1);

use crate::frame::{read_frame, read_frame_by, write_frame, write_frame_by};

fn unused_params() -> LinkParams {
    LinkParams {
        session_id: 0,
        data_endpoint: SocketAddr::from(([0, 0, 0, 0], 0)),
        data_shards: 0,
        aes: false,
    }
}

/// Runs the Noise handshake, all of it by `deadline` (a peer trickling bytes is cut off there:
/// `TimedOut`). Leaves the socket with no read timeout and a [`WRITE_TIMEOUT`].
fn handshake(
    id: &Identity,
    s: &mut TcpStream,
    dial: Option<NodeId>,
    deadline: Instant,
) -> io::Result<Established> {
    let e = |e: crate::link::LinkError| io::Error::new(io::ErrorKind::PermissionDenied, e);
    let allow = |_: &NodeId| true;
    let mut hs = match dial {
        Some(peer) => {
            let (h, m1) = Handshake::initiate(id, unused_params(), peer).map_err(e)?;
            write_frame_by(s, &m1, deadline)?;
            h
        }
        None => Handshake::respond(id, unused_params()).map_err(e)?,
    };
    let mut buf = Vec::new();
    loop {
        read_frame_by(s, &mut buf, deadline)?;
        match hs.read(&buf, &allow).map_err(e)? {
            (Some(next), Step::Send(m)) => {
                write_frame_by(s, &m, deadline)?;
                hs = next;
            }
            (_, Step::Done(last, est)) => {
                if let Some(m) = last {
                    write_frame_by(s, &m, deadline)?;
                }
                s.set_read_timeout(None)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(*est);
            }
            (None, Step::Send(_)) => return Err(io::Error::other("handshake state lost")),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these in a state worse than a closed connection.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An authenticated, encrypted messenger connection (either side). `send` and `recv` may be
/// called from different threads.
pub struct Connection {
    peer: NodeId,
    reader: Mutex<TcpStream>,
    /// The Noise state and the write half, locked together so frames go out in nonce order.
    tx: Mutex<(snow::TransportState, TcpStream)>,
}

impl Connection {
    fn new(s: TcpStream, est: Established) -> io::Result<Connection> {
        let w = s.try_clone()?;
        Ok(Connection {
            peer: est.peer,
            reader: Mutex::new(s),
            tx: Mutex::new((est.transport, w)),
        })
    }

    /// The authenticated peer.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// Encrypts and sends one message.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut g = lock(&self.tx);
        let (t, s) = &mut *g;
        let n = t
            .write_message(msg, &mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_frame(s, buf.get(..n).unwrap_or_default())
    }

    /// Receives and decrypts one message (blocking, subject to the read timeout).
    pub fn recv(&self) -> io::Result<Vec<u8>> {
        let mut frame = Vec::new();
        read_frame(&mut lock(&self.reader), &mut frame)?;
        self.decrypt(&frame)
    }

    /// Receives and decrypts one message, all of it by `deadline` (`TimedOut` after). Leaves
    /// the read timeout set (to the time that was left).
    pub fn recv_by(&self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut frame = Vec::new();
        read_frame_by(&mut lock(&self.reader), &mut frame, deadline)?;
        self.decrypt(&frame)
    }

    fn decrypt(&self, frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; MAX_MSG];
        let n = lock(&self.tx)
            .0
            .read_message(frame, &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        out.truncate(n);
        Ok(out)
    }

    /// Sets the read timeout of [`Connection::recv`].
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        lock(&self.reader).set_read_timeout(t)
    }

    /// Closes both directions.
    pub fn shutdown(&self) {
        let _ = lock(&self.reader).shutdown(Shutdown::Both);
    }
}

/// Connects to the messenger at `addr`, which must authenticate as `server`.
pub fn connect(addr: SocketAddr, server: NodeId, id: &Identity) -> io::Result<Connection> {
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    let mut s = TcpStream::connect_timeout(&addr, HANDSHAKE_DEADLINE)?;
    s.set_nodelay(true)?;
    let est = handshake(id, &mut s, Some(server), deadline)?;
    Connection::new(s, est)
}

struct Shared {
    server: MessengerServer,
    /// Where to send to each client: connection number and its queue.
    conns: HashMap<NodeId, (u64, SyncSender<Vec<u8>>)>,
    next_conn: u64,
    /// Messages dropped because a client's queue was full.
    dropped: u64,
}

/// Most clients handshaking at once. A handshake costs a thread, a descriptor and a DH or two;
/// honest clients connect once and stay, so even every router of a large mesh reconnecting
/// after a messenger restart queues up behind 64 for a few milliseconds each.
pub const MAX_HANDSHAKING: usize = 64;
/// Most clients handshaking at once from one source ([`accept::source_key`]): routers behind
/// one NAT address share it.
pub const MAX_HANDSHAKING_PER_IP: usize = 8;
/// Most connections, handshaking or not. Anyone may make a key, so authenticated clients are
/// capped too. Each holds two descriptors (the writer clones the socket) and two threads: 384
/// are 768 descriptors, inside the usual soft `RLIMIT_NOFILE` of 1024.
pub const MAX_CONNS: usize = 384;
/// Most connections from one source, authenticated or not: anyone may make keys, and without
/// this one address could hold all of [`MAX_CONNS`] (talking just often enough to stay). 32
/// leaves room for many routers behind one NAT address.
pub const MAX_CONNS_PER_IP: usize = 32;
/// How long an authenticated client may say nothing (no whole message) before it is dropped.
/// Clients re-register every half TTL (30 s with the default 60 s TTL) and look up wanted
/// nodes more often, so an honest client speaks at least twice within the bound.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A messenger server's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Admission and the handshake deadline.
    pub listener: Limits,
    /// [`IDLE_TIMEOUT`].
    pub idle: Duration,
}

/// The messenger's production bounds.
pub const BOUNDS: Bounds = Bounds {
    listener: Limits {
        max_handshaking: MAX_HANDSHAKING,
        max_handshaking_per_ip: MAX_HANDSHAKING_PER_IP,
        max_conns: MAX_CONNS,
        max_conns_per_ip: MAX_CONNS_PER_IP,
        handshake_deadline: HANDSHAKE_DEADLINE,
        accept_backoff: accept::ACCEPT_BACKOFF,
    },
    idle: IDLE_TIMEOUT,
};

/// A running messenger's shared state, for inspection.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Mutex<Shared>>,
    stats: Arc<ListenerStats>,
}

impl ServerHandle {
    /// Runs `f` on the server state (counters, records).
    pub fn with<R>(&self, f: impl FnOnce(&MessengerServer) -> R) -> R {
        f(&lock(&self.shared).server)
    }

    /// Messages dropped because a client did not read fast enough.
    pub fn dropped(&self) -> u64 {
        lock(&self.shared).dropped
    }

    /// The listener's refusals and failures (caps, deadlines, idle clients, accept errors).
    pub fn listener_stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }
}

fn new_shared(cfg: ServerConfig) -> Arc<Mutex<Shared>> {
    Arc::new(Mutex::new(Shared {
        server: MessengerServer::new(cfg),
        conns: HashMap::new(),
        next_conn: 0,
        dropped: 0,
    }))
}

/// Starts a messenger on `listener` in background threads (one per connection, one ticker)
/// within [`BOUNDS`] and returns a handle to its state.
pub fn spawn(listener: TcpListener, id: Identity, cfg: ServerConfig) -> ServerHandle {
    spawn_with(listener, id, cfg, BOUNDS)
}

/// [`spawn`] within `bounds`.
pub fn spawn_with(
    listener: TcpListener,
    id: Identity,
    cfg: ServerConfig,
    bounds: Bounds,
) -> ServerHandle {
    let shared = new_shared(cfg);
    let stats = Arc::new(ListenerStats::default());
    let handle = ServerHandle {
        shared: shared.clone(),
        stats: stats.clone(),
    };
    std::thread::spawn(move || {
        if let Err(e) = serve_on(listener, Arc::new(id), shared, bounds, stats) {
            tracing::error!("messenger: {e}");
        }
    });
    handle
}

/// Runs a messenger on `listener` within [`BOUNDS`] (blocking; returns only if its expiry
/// thread cannot be started: accept errors are waited out).
pub fn serve(listener: TcpListener, id: Identity, cfg: ServerConfig) -> io::Result<()> {
    serve_on(
        listener,
        Arc::new(id),
        new_shared(cfg),
        BOUNDS,
        Arc::default(),
    )
}

fn serve_on(
    listener: TcpListener,
    id: Arc<Identity>,
    shared: Arc<Mutex<Shared>>,
    bounds: Bounds,
    stats: Arc<ListenerStats>,
) -> io::Result<()> {
    let epoch = Instant::now();
    let ticker = Arc::downgrade(&shared);
    std::thread::Builder::new()
        .name("messenger-tick".into())
        .spawn(move || {
            while let Some(sh) = ticker.upgrade() {
                let now = epoch.elapsed().as_millis() as u64;
                lock(&sh).server.tick(now);
                drop(sh);
                std::thread::sleep(TICK);
            }
        })?;
    let gate = Gate::new(bounds.listener, stats);
    // The messenger runs until its process ends.
    let never = AtomicBool::new(false);
    let conn = move |s: TcpStream, permit: Permit| {
        run_conn(&id, s, permit, &shared, epoch, bounds.idle);
    };
    accept::run(&listener, &gate, &never, conn, |job| {
        accept::spawn_thread("messenger-conn", job)
    });
    Ok(())
}

fn run_conn(
    id: &Identity,
    mut s: TcpStream,
    mut permit: Permit,
    shared: &Mutex<Shared>,
    epoch: Instant,
    idle: Duration,
) {
    let _ = s.set_nodelay(true);
    let est = match handshake(id, &mut s, None, permit.deadline()) {
        Ok(est) => est,
        Err(e) => {
            let st = permit.stats();
            ListenerStats::count(match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => &st.handshake_timeout,
                _ => &st.handshake_failed,
            });
            return;
        }
    };
    permit.authenticated();
    let s_peer_ip = s.peer_addr().ok().map(|a| a.ip());
    let Ok(conn) = Connection::new(s, est) else {
        return;
    };
    let conn = Arc::new(conn);
    let peer = conn.peer();
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let writer = conn.clone();
    let started = std::thread::Builder::new()
        .name("messenger-tx".into())
        .spawn(move || {
            for m in rx {
                if writer.send(&m).is_err() {
                    writer.shutdown();
                    break;
                }
            }
        });
    if started.is_err() {
        ListenerStats::count(&permit.stats().spawn_failed);
        conn.shutdown();
        return;
    }
    let me = {
        let mut sh = lock(shared);
        let n = sh.next_conn;
        sh.next_conn += 1;
        sh.conns.insert(peer, (n, tx));
        match s_peer_ip {
            Some(ip) => sh.server.connect_from(peer, ip),
            None => sh.server.connect(peer),
        }
        n
    };
    loop {
        let req = match conn.recv_by(Instant::now() + idle) {
            Ok(r) => r,
            Err(e) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    ListenerStats::count(&permit.stats().idle_closed);
                }
                break;
            }
        };
        let now = epoch.elapsed().as_millis() as u64;
        let mut sh = lock(shared);
        let out = sh.server.handle(now, peer, &req);
        for (to, m) in out {
            let sent = sh.conns.get(&to).map(|(_, q)| q.try_send(m).is_ok());
            if sent == Some(false) {
                sh.dropped += 1;
            }
        }
    }
    conn.shutdown();
    let mut sh = lock(shared);
    if sh.conns.get(&peer).is_some_and(|(n, _)| *n == me) {
        sh.conns.remove(&peer);
    }
    sh.server.disconnect(peer);
}

#[cfg(test)]
mod tests {
    use super::super::client::{ClientConfig, ClientEvent, MessengerClient};
    use super::super::record::Service;
    use super::super::wire::Reject;
    use super::*;

    fn ident(n: u8) -> Identity {
        Identity::from_seed([n; 32]).unwrap()
    }

    /// Sends what the client has queued, then reads until an event arrives.
    fn drive(c: &mut MessengerClient, conn: &Connection) -> ClientEvent {
        loop {
            while let Some((_, m)) = c.poll_transmit() {
                conn.send(&m).unwrap();
            }
            if let Some(e) = c.poll_event() {
                return e;
            }
            let m = conn.recv().unwrap();
            c.handle(0, conn.peer(), &m);
        }
    }

    #[test]
    fn register_lookup_and_relay_over_tcp() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sid = ident(100).id();
        let h = spawn(l, ident(100), ServerConfig::default());

        let (ia, ib) = (ident(1), ident(2));
        let ca = connect(addr, sid, &ia).unwrap();
        let cb = connect(addr, sid, &ib).unwrap();
        ca.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        cb.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ca.peer(), sid);
        let mut a = MessengerClient::new(ia, ClientConfig::new(vec![sid], 1));
        let mut b = MessengerClient::new(ib, ClientConfig::new(vec![sid], 1));
        a.connected(0, sid);
        b.connected(0, sid);
        let svc = Service {
            kind: "vpn".into(),
            port: 1,
            meta: String::new(),
        };
        a.set_record(0, vec!["10.0.0.1:1".parse().unwrap()], vec![svc])
            .unwrap();
        assert!(matches!(
            drive(&mut a, &ca),
            ClientEvent::Registered { seq: 1, .. }
        ));

        b.lookup(0, a.pk());
        assert!(
            matches!(drive(&mut b, &cb), ClientEvent::Found { record, .. } if record.pk == a.pk())
        );
        b.query(0, "vpn");
        assert!(
            matches!(drive(&mut b, &cb), ClientEvent::Services { records, .. } if records.len() == 1)
        );
        b.relay(0, a.pk(), b"hello".to_vec()).unwrap();
        while let Some((_, m)) = b.poll_transmit() {
            cb.send(&m).unwrap();
        }
        assert_eq!(
            drive(&mut a, &ca),
            ClientEvent::Relayed {
                from: b.pk(),
                bytes: b"hello".to_vec()
            }
        );
        // After b leaves, relaying to it fails.
        cb.shutdown();
        drop(cb);
        let bpk = b.pk();
        for _ in 0..500 {
            if !h.with(|s| s.is_connected(&bpk)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        a.relay(0, bpk, b"x".to_vec()).unwrap();
        assert!(matches!(
            drive(&mut a, &ca),
            ClientEvent::Rejected {
                code: Reject::Unreachable,
                ..
            }
        ));
        assert_eq!(h.with(|s| s.counters().registered), 1);
        assert!(h.with(|s| s.counters().relayed) >= 1);
    }

    #[test]
    fn connecting_to_the_wrong_key_fails() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _h = spawn(l, ident(100), ServerConfig::default());
        assert!(connect(addr, ident(101).id(), &ident(1)).is_err());
        // The server is still fine afterwards.
        assert!(connect(addr, ident(100).id(), &ident(1)).is_ok());
    }

    #[test]
    fn garbage_after_the_handshake_is_counted_not_fatal() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sid = ident(100).id();
        let h = spawn(l, ident(100), ServerConfig::default());
        let c = connect(addr, sid, &ident(1)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send(b"\x01\xee junk").unwrap();
        let reply = super::super::wire::Msg::decode(&c.recv().unwrap()).unwrap();
        assert_eq!(
            reply,
            super::super::wire::Msg::Error {
                code: Reject::Malformed,
                subject: None
            }
        );
        assert_eq!(h.with(|s| s.counters().rejected(Reject::Malformed)), 1);
    }

    fn small(deadline: Duration, idle: Duration) -> Bounds {
        Bounds {
            listener: Limits {
                max_handshaking: 8,
                max_handshaking_per_ip: 3,
                max_conns: 16,
                max_conns_per_ip: 8,
                handshake_deadline: deadline,
                accept_backoff: Duration::from_millis(20),
            },
            idle,
        }
    }

    /// Polls `what` for up to 3 s.
    fn eventually(what: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        what()
    }

    #[test]
    fn an_idle_client_is_dropped_after_the_idle_bound_and_a_talking_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sid = ident(100).id();
        let idle = Duration::from_millis(400);
        let h = spawn_with(
            l,
            ident(100),
            ServerConfig::default(),
            small(Duration::from_secs(5), idle),
        );
        let quiet = connect(addr, sid, &ident(2)).unwrap();
        let started = Instant::now();
        let waiter = std::thread::spawn(move || {
            quiet
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let e = quiet.recv().unwrap_err();
            (e.kind(), started.elapsed())
        });
        // A client that says something every 100 ms stays connected past the bound.
        let busy = connect(addr, sid, &ident(1)).unwrap();
        busy.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        while started.elapsed() < idle * 2 {
            busy.send(b"\x01\xee junk").unwrap();
            busy.recv().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        let (kind, took) = waiter.join().unwrap();
        assert!(
            !matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            "the quiet client was not dropped: {kind:?} after {took:?}"
        );
        assert!(
            took >= idle && took < idle + Duration::from_millis(700),
            "{took:?}"
        );
        assert_eq!(h.listener_stats().snapshot().idle_closed, 1);
    }

    #[test]
    fn a_slowloris_is_dropped_at_the_handshake_deadline() {
        use crate::accept::test_util::{connect_from, trickle_until_dropped};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = Duration::from_millis(600);
        let h = spawn_with(
            l,
            ident(100),
            ServerConfig::default(),
            small(deadline, Duration::from_secs(60)),
        );
        let mut s = connect_from([127, 0, 0, 2], addr);
        let took = trickle_until_dropped(&mut s).expect("still connected after 4 s");
        assert!(took < deadline + Duration::from_millis(700), "{took:?}");
        assert!(eventually(|| h
            .listener_stats()
            .snapshot()
            .handshake_timeout
            == 1));
    }

    #[test]
    fn over_the_per_ip_cap_is_closed_at_once_and_a_real_client_still_gets_in() {
        use crate::accept::test_util::{closed_within, connect_from};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bounds = small(Duration::from_secs(20), Duration::from_secs(60));
        let h = spawn_with(l, ident(100), ServerConfig::default(), bounds);
        let mut held: Vec<TcpStream> = (0..bounds.listener.max_handshaking_per_ip)
            .map(|_| connect_from([127, 0, 0, 2], addr))
            .collect();
        let mut over = connect_from([127, 0, 0, 2], addr);
        assert!(closed_within(&mut over, Duration::from_secs(2)));
        assert_eq!(h.listener_stats().snapshot().refused_per_ip, 1);
        // A client from 127.0.0.1 gets in while they are held.
        let c = connect(addr, ident(100).id(), &ident(1)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send(b"\x01\xee junk").unwrap();
        assert!(c.recv().is_ok());
        for s in &mut held {
            assert!(!closed_within(s, Duration::from_millis(20)));
        }
    }

    /// Set in the child process of [`accepting_survives_running_out_of_descriptors`].
    const EMFILE_CHILD: &str = "SKYWIRE_TEST_EMFILE_CHILD";

    /// The descriptor limit is per process: the test runs itself in a child process, which
    /// lowers its limit, fills its descriptor table and connects while the server cannot
    /// accept; once descriptors are free again the server accepts new clients.
    #[test]
    fn accepting_survives_running_out_of_descriptors() {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "messenger::net::tests::accepting_survives_running_out_of_descriptors",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(EMFILE_CHILD, "1")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "child failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
            return;
        }
        use rustix::net::{AddressFamily, SocketType, socket};
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sid = ident(100).id();
        let h = spawn_with(
            l,
            ident(100),
            ServerConfig::default(),
            small(Duration::from_secs(2), Duration::from_secs(60)),
        );
        // Made before the table is full: connecting takes no new descriptor.
        let early = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        let old = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: old.maximum,
            },
        )
        .unwrap();
        let mut fill = Vec::new();
        while fill.len() < 4096 {
            match std::fs::File::open("/dev/null") {
                Ok(f) => fill.push(f),
                Err(_) => break,
            }
        }
        rustix::net::connect(&early, &addr).unwrap();
        assert!(
            eventually(|| h.listener_stats().snapshot().accept_exhausted >= 2),
            "accept never failed: {:?}",
            h.listener_stats().snapshot()
        );
        drop(fill);
        setrlimit(Resource::Nofile, old).unwrap();
        // Still accepting.
        let c = connect(addr, sid, &ident(1)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send(b"\x01\xee junk").unwrap();
        assert!(c.recv().is_ok());
        drop(early);
    }
}
