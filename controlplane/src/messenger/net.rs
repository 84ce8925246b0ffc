//! Blocking TCP glue: a messenger server ([`serve`]) and a client connection ([`connect`]).
//!
//! A connection is the link handshake ([`crate::link::Handshake`], Noise XX with both sides'
//! keys bound to their identities) over `u16 length | bytes` frames, then one messenger
//! [`super::wire::Msg`] per Noise transport message in the same framing. The dataplane
//! parameters of the handshake are unused (zeroes).

use super::server::{MessengerServer, ServerConfig};
use crate::identity::{Identity, NodeId};
use crate::link::{Established, Handshake, LinkParams, MAX_MSG, Step};
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
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
        let mut out = vec![0u8; MAX_MSG];
        let n = lock(&self.tx)
            .0
            .read_message(&frame, &mut out)
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

/// A running messenger's shared state, for inspection.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Mutex<Shared>>,
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
}

/// Starts a messenger on `listener` in background threads (one per connection, one ticker)
/// and returns a handle to its state.
pub fn spawn(listener: TcpListener, id: Identity, cfg: ServerConfig) -> ServerHandle {
    let shared = Arc::new(Mutex::new(Shared {
        server: MessengerServer::new(cfg),
        conns: HashMap::new(),
        next_conn: 0,
        dropped: 0,
    }));
    let handle = ServerHandle {
        shared: shared.clone(),
    };
    std::thread::spawn(move || serve_on(listener, Arc::new(id), shared));
    handle
}

/// Runs a messenger on `listener` (blocking; returns only if accepting fails).
pub fn serve(listener: TcpListener, id: Identity, cfg: ServerConfig) -> io::Result<()> {
    let shared = Arc::new(Mutex::new(Shared {
        server: MessengerServer::new(cfg),
        conns: HashMap::new(),
        next_conn: 0,
        dropped: 0,
    }));
    serve_on(listener, Arc::new(id), shared)
}

fn serve_on(
    listener: TcpListener,
    id: Arc<Identity>,
    shared: Arc<Mutex<Shared>>,
) -> io::Result<()> {
    let epoch = Instant::now();
    let ticker = Arc::downgrade(&shared);
    std::thread::spawn(move || {
        while let Some(sh) = ticker.upgrade() {
            let now = epoch.elapsed().as_millis() as u64;
            lock(&sh).server.tick(now);
            drop(sh);
            std::thread::sleep(TICK);
        }
    });
    loop {
        let (s, _) = listener.accept()?;
        let (id, shared) = (id.clone(), shared.clone());
        std::thread::spawn(move || {
            let _ = run_conn(&id, s, &shared, epoch);
        });
    }
}

fn run_conn(
    id: &Identity,
    mut s: TcpStream,
    shared: &Mutex<Shared>,
    epoch: Instant,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    let est = handshake(id, &mut s, None, Instant::now() + HANDSHAKE_DEADLINE)?;
    let conn = Arc::new(Connection::new(s, est)?);
    let peer = conn.peer();
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let me = {
        let mut sh = lock(shared);
        let n = sh.next_conn;
        sh.next_conn += 1;
        sh.conns.insert(peer, (n, tx));
        sh.server.connect(peer);
        n
    };
    let writer = conn.clone();
    std::thread::spawn(move || {
        for m in rx {
            if writer.send(&m).is_err() {
                writer.shutdown();
                break;
            }
        }
    });
    let res = loop {
        let req = match conn.recv() {
            Ok(r) => r,
            Err(e) => break Err(e),
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
    };
    conn.shutdown();
    let mut sh = lock(shared);
    if sh.conns.get(&peer).is_some_and(|(n, _)| *n == me) {
        sh.conns.remove(&peer);
    }
    sh.server.disconnect(peer);
    res
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
}
