//! The link manager's I/O: TCP connections to neighbours carrying the Noise handshake
//! ([`crate::link`]) and then an encrypted control channel with keepalives (RTT) and the node
//! manager's messages. One thread per connection reads; writes go through a bounded queue
//! drained by a writer thread. Everything that happens is reported to the main loop as a
//! [`LinkEvent`]; the main loop never blocks on a link.
//!
//! The listener admits connections through an [`accept::Gate`] ([`LISTEN_LIMITS`]: caps on
//! handshaking, per-source and total connections, a whole-handshake deadline); what it refuses
//! is counted in the [`ListenerStats`] given to [`listen_with`].
//!
//! Frames on the wire: `u16 length | Noise message`. Inside the encrypted channel:
//! `1 | t_us u64` ping, `2 | t_us u64` pong (echo), `3 | bytes` node-manager message.

use crate::accept::{self, Gate, Limits, ListenerStats, Permit};
use crate::frame::{FrameReader, read_frame_by, write_frame, write_frame_by};
use crate::identity::{Identity, NodeId};
use crate::link::{Established, Handshake, LinkError, LinkParams, MAX_MSG, Step};
use crate::linkcore::{self, Backoff, Control, DeadTimer, Keepalive};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Control messages queued per link before new ones are dropped (and counted).
const LINK_QUEUE: usize = 1024;
/// Longest a whole handshake may take, from connect or accept to the last message: three
/// small messages and two DH-heavy steps take milliseconds, so 5 s leaves room for a slow or
/// lossy path and is the longest a stranger holds a handshaking slot.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the larger key waits before dialling a peer that may dial it.
const HOLD_BACK: Duration = Duration::from_millis(500);

/// Link events queued for the main loop at most: a link thread that finds the queue full
/// waits (its TCP reads stop, so a flooding neighbour is slowed by its own connection), and
/// the queue's memory is bounded whatever the neighbours send.
pub const LINK_EVENTS: usize = 4096;

/// What a link reports.
pub enum LinkEvent {
    /// Handshake done: the link is up.
    Up(Box<UpInfo>),
    /// The link ended.
    Down {
        /// Peer.
        peer: NodeId,
        /// Which link (links are numbered).
        link: u64,
        /// Why.
        why: String,
    },
    /// A round-trip time measured on the keepalive.
    Rtt {
        /// Peer.
        peer: NodeId,
        /// Link.
        link: u64,
        /// Microseconds.
        rtt_us: u32,
    },
    /// The peer asks for (`ack` false) or confirms (`ack` true) data-key generation `generation`.
    Rekey {
        /// Peer.
        peer: NodeId,
        /// Link.
        link: u64,
        /// Key generation.
        generation: u32,
        /// Whether this is the confirmation.
        ack: bool,
    },
    /// A node-manager message from the peer.
    Msg {
        /// Peer.
        peer: NodeId,
        /// Link.
        link: u64,
        /// Payload.
        bytes: Vec<u8>,
    },
}

/// A link that came up.
pub struct UpInfo {
    /// Link number.
    pub link: u64,
    /// Who.
    pub peer: NodeId,
    /// Whether we dialled.
    pub initiator: bool,
    /// Our dataplane parameters as sent.
    pub local: LinkParams,
    /// The peer's, with its data endpoint's address taken from the TCP connection.
    pub remote: LinkParams,
    /// Data keys.
    pub data_tx: [u8; 32],
    /// Data keys.
    pub data_rx: [u8; 32],
    /// The peer claimed another IP for its data than the one it links from (replaced).
    pub endpoint_replaced: bool,
    /// For sending and closing.
    pub handle: LinkHandle,
}

/// Sends on, or closes, one link.
#[derive(Clone)]
pub struct LinkHandle {
    tx: SyncSender<Vec<u8>>,
    closed: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl LinkHandle {
    /// Queues a node-manager message; false (and counted) when the queue is full or closed.
    pub fn send(&self, bytes: &[u8]) -> bool {
        match self.tx.try_send(Control::Nm(bytes).encode()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Sends a rekey request (`ack` false) or confirmation for generation `generation`.
    pub fn send_rekey(&self, generation: u32, ack: bool) -> bool {
        self.tx
            .try_send(Control::Rekey { generation, ack }.encode())
            .is_ok()
    }

    /// Closes the link (it reports Down).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Shared settings for link threads.
#[derive(Clone)]
pub struct LinkCtx {
    /// Our identity.
    pub id: Arc<Identity>,
    /// Our dataplane's base port.
    pub data_port: u16,
    /// Its shard count.
    pub data_shards: u16,
    /// Keepalive period.
    pub keepalive: Duration,
    /// Missed keepalives before down.
    pub dead_after: u32,
    /// Who may call us.
    pub allowed: Arc<dyn Fn(&NodeId) -> bool + Send + Sync>,
    /// Where events go.
    pub events: SyncSender<LinkEvent>,
    /// Rung after every event, so the main loop can sleep on it with other descriptors.
    pub wake: Arc<OwnedFd>,
    /// Session index allocator (shared by all links).
    pub next_session: Arc<AtomicU32>,
    /// Link number allocator.
    pub next_link: Arc<AtomicU64>,
    /// Peers with a link up right now (a dialer does not dial a peer already linked).
    pub linked: Arc<Mutex<std::collections::HashMap<NodeId, usize>>>,
    /// Set to end everything.
    pub stop: Arc<AtomicBool>,
}

impl LinkCtx {
    /// Wakes the main loop (something else than a link event is waiting for it).
    pub fn ring(&self) {
        // EAGAIN: the counter is saturated, a wake-up is pending anyway.
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
    }

    /// Reports an event and wakes the main loop. False when the main loop is gone.
    fn emit(&self, ev: LinkEvent) -> bool {
        let ok = self.events.send(ev).is_ok();
        // EAGAIN: the counter is saturated, a wake-up is pending anyway.
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        ok
    }
}

/// An eventfd for [`LinkCtx::wake`].
pub fn wake_fd() -> io::Result<Arc<OwnedFd>> {
    Ok(Arc::new(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?))
}

/// Why a link handshake failed.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    /// Not done by the whole-handshake deadline.
    #[error("handshake not done within {HANDSHAKE_DEADLINE:?}")]
    TimedOut,
    /// The socket failed or closed.
    #[error("handshake: {0}")]
    Io(io::Error),
    /// The peer's messages or key were refused.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The handshake state machine asked to send without a next state.
    #[error("handshake state lost")]
    StateLost,
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HandshakeError::TimedOut,
            _ => HandshakeError::Io(e),
        }
    }
}

/// Runs the Noise handshake, all of it by `deadline` (a peer trickling bytes is cut off there).
fn handshake(
    ctx: &LinkCtx,
    s: &mut TcpStream,
    dial: Option<NodeId>,
    deadline: Instant,
) -> Result<Established, HandshakeError> {
    let local = LinkParams {
        session_id: ctx.next_session.fetch_add(1, Ordering::Relaxed),
        data_endpoint: SocketAddr::from(([0, 0, 0, 0], ctx.data_port)),
        data_shards: ctx.data_shards,
        aes: dataplane::wire::preferred() == dataplane::wire::Cipher::Aes256Gcm,
    };
    let allow = |p: &NodeId| (ctx.allowed)(p);
    let mut buf = Vec::new();
    let mut hs = match dial {
        Some(peer) => {
            let (h, m1) = Handshake::initiate(&ctx.id, local, peer)?;
            write_frame_by(s, &m1, deadline)?;
            h
        }
        None => Handshake::respond(&ctx.id, local)?,
    };
    loop {
        read_frame_by(s, &mut buf, deadline)?;
        match hs.read(&buf, &allow)? {
            (Some(next), Step::Send(m)) => {
                write_frame_by(s, &m, deadline)?;
                hs = next;
            }
            (_, Step::Done(last, est)) => {
                if let Some(m) = last {
                    write_frame_by(s, &m, deadline)?;
                }
                // The link's own timeouts from here on.
                s.set_write_timeout(None)?;
                return Ok(*est);
            }
            (None, Step::Send(_)) => return Err(HandshakeError::StateLost),
        }
    }
}

/// Runs an established link until it fails or is closed; reports Down at the end. A writer
/// thread that cannot be made is counted in `stats` (when the link was accepted).
fn run_link(ctx: &LinkCtx, mut s: TcpStream, est: Established, stats: Option<&ListenerStats>) {
    let link = ctx.next_link.fetch_add(1, Ordering::Relaxed);
    let peer = est.peer;
    let mut remote = est.peer_params;
    let (endpoint, endpoint_replaced) =
        linkcore::data_endpoint(remote.data_endpoint, s.peer_addr().ok().map(|a| a.ip()));
    if endpoint_replaced {
        tracing::warn!(
            "{peer:?} claimed data endpoint {}; using {endpoint} (the address it links from)",
            remote.data_endpoint
        );
    }
    remote.data_endpoint = endpoint;
    let (tx, rx) = sync_channel::<Vec<u8>>(LINK_QUEUE);
    let closed = Arc::new(AtomicBool::new(false));
    let handle = LinkHandle {
        tx: tx.clone(),
        closed: closed.clone(),
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let transport = Arc::new(Mutex::new(est.transport));
    let up = UpInfo {
        link,
        peer,
        initiator: est.initiator,
        local: est.local_params,
        remote,
        data_tx: est.data_tx,
        data_rx: est.data_rx,
        endpoint_replaced,
        handle,
    };
    *ctx.linked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(peer)
        .or_insert(0) += 1;
    if !ctx.emit(LinkEvent::Up(Box::new(up))) {
        return;
    }
    let keepalive = Keepalive::new(Instant::now(), ctx.keepalive);
    // A link whose writer cannot start goes down through the same bookkeeping as any other.
    let writer = s
        .try_clone()
        .map_err(|e| format!("cannot clone socket: {e}"))
        .and_then(|mut ws| {
            let (wt, wclosed, wstop) = (transport.clone(), closed.clone(), ctx.stop.clone());
            std::thread::Builder::new()
                .name("link-tx".into())
                .spawn(move || writer(&mut ws, &wt, &rx, keepalive, &wclosed, &wstop))
                .map_err(|e| {
                    if let Some(st) = stats {
                        ListenerStats::count(&st.spawn_failed);
                    }
                    format!("cannot start the writer thread: {e}")
                })
        });
    let _ = s.set_read_timeout(Some(ctx.keepalive));
    let mut frames = FrameReader::default();
    let mut plain = vec![0u8; MAX_MSG];
    let mut dead = DeadTimer::new(Instant::now(), ctx.keepalive, ctx.dead_after);
    let why = match &writer {
        Err(why) => why.clone(),
        Ok(_) => loop {
            if closed.load(Ordering::SeqCst) || ctx.stop.load(Ordering::SeqCst) {
                break "closed".to_string();
            }
            if let Some(why) = dead.expired(Instant::now()) {
                break why;
            }
            // A timeout (even mid-frame: the reader keeps what it has) only re-checks the timers.
            let buf = match frames.read(&mut s) {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => break format!("read: {e}"),
            };
            let n = match transport
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read_message(buf, &mut plain)
            {
                Ok(n) => n,
                Err(e) => break format!("decrypt: {e}"),
            };
            let now = Instant::now();
            dead.heard(now);
            let ev = match Control::parse(&plain[..n]) {
                Some(Control::Ping(t)) => {
                    let _ = tx.try_send(Control::Pong(t).encode());
                    None
                }
                Some(Control::Pong(sent)) => Some(LinkEvent::Rtt {
                    peer,
                    link,
                    rtt_us: keepalive.rtt_us(now, sent),
                }),
                Some(Control::Rekey { generation, ack }) => Some(LinkEvent::Rekey {
                    peer,
                    link,
                    generation,
                    ack,
                }),
                Some(Control::Nm(bytes)) => Some(LinkEvent::Msg {
                    peer,
                    link,
                    bytes: bytes.to_vec(),
                }),
                None => None, // unknown control message: ignored
            };
            if let Some(ev) = ev {
                // The queue is shared by every link: while the main loop is behind (another
                // neighbour flooding it, a loaded machine) this waits, and the time it waited
                // is not the peer's silence.
                let waited = Instant::now();
                let _ = ctx.emit(ev);
                dead.not_listening(waited.elapsed());
            }
        },
    };
    closed.store(true, Ordering::SeqCst);
    let _ = s.shutdown(std::net::Shutdown::Both);
    if let Ok(w) = writer {
        let _ = w.join();
    }
    {
        let mut l = ctx.linked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = l.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.remove(&peer);
            }
        }
    }
    let _ = ctx.emit(LinkEvent::Down { peer, link, why });
}

fn writer(
    s: &mut TcpStream,
    t: &Mutex<snow::TransportState>,
    rx: &Receiver<Vec<u8>>,
    mut keepalive: Keepalive,
    closed: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut out = vec![0u8; MAX_MSG];
    loop {
        if closed.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let msg = match keepalive.poll_ping(now) {
            Some(ping) => ping.encode(),
            None => {
                match rx.recv_timeout(keepalive.poll_timeout().saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let n = match t
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_message(&msg, &mut out)
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if write_frame(s, &out[..n]).is_err() {
            closed.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// Most incoming connections handshaking at once. Each costs a thread, a descriptor and a DH
/// or two; honest callers are configured neighbours that handshake once per (re)connect, and
/// even a router restarting next to us redials its neighbours one at a time each.
pub const MAX_HANDSHAKING: usize = 32;
/// Most incoming connections handshaking at once from one source ([`accept::source_key`]): a
/// neighbour dials one link at a time, a few may share a NAT address.
pub const MAX_HANDSHAKING_PER_IP: usize = 4;
/// Most incoming connections, handshaking or up. An up link holds two descriptors (its writer
/// clones the socket) and two threads: 128 links are 256 descriptors, well inside the usual
/// soft `RLIMIT_NOFILE` of 1024 with room for dials, the messengers, apps and the dataplane.
pub const MAX_INCOMING: usize = 128;
/// Most incoming connections from one source, handshaking or up: a neighbour needs one link
/// (two while a duplicate is being replaced), a few neighbours may share a NAT address; with
/// `allow_any` anyone may make a key and link, and this keeps one address from taking all of
/// [`MAX_INCOMING`].
pub const MAX_INCOMING_PER_IP: usize = 16;

/// The link listener's bounds.
pub const LISTEN_LIMITS: Limits = Limits {
    max_handshaking: MAX_HANDSHAKING,
    max_handshaking_per_ip: MAX_HANDSHAKING_PER_IP,
    max_conns: MAX_INCOMING,
    max_conns_per_ip: MAX_INCOMING_PER_IP,
    handshake_deadline: HANDSHAKE_DEADLINE,
    accept_backoff: accept::ACCEPT_BACKOFF,
};

/// Accepts links on `listener` until stopped, within [`LISTEN_LIMITS`] (its counters are not
/// kept: see [`listen_with`]).
pub fn listen(ctx: LinkCtx, listener: TcpListener) {
    listen_with(ctx, listener, LISTEN_LIMITS, Arc::default());
}

/// Accepts links on `listener` until stopped, within `limits`, counting refusals and failures
/// in `stats`: over a cap a new connection is closed at once, a handshake not done by
/// `limits.handshake_deadline` is dropped, accept errors and failed thread creation back off.
pub fn listen_with(ctx: LinkCtx, listener: TcpListener, limits: Limits, stats: Arc<ListenerStats>) {
    if let Err(e) = listener.set_nonblocking(true) {
        // Still accepts; only the stop flag is seen late (at the next connection).
        tracing::warn!("link listener: cannot make it non-blocking: {e}");
    }
    let gate = Gate::new(limits, stats);
    let stop = ctx.stop.clone();
    let conn = move |mut s: TcpStream, mut permit: Permit| {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        match handshake(&ctx, &mut s, None, permit.deadline()) {
            Ok(est) => {
                permit.authenticated();
                run_link(&ctx, s, est, Some(permit.stats()));
            }
            Err(e) => {
                let st = permit.stats();
                ListenerStats::count(match e {
                    HandshakeError::TimedOut => &st.handshake_timeout,
                    _ => &st.handshake_failed,
                });
                tracing::warn!("incoming link refused: {e}");
            }
        }
    };
    accept::run(&listener, &gate, &stop, conn, |job| {
        accept::spawn_thread("link-in", job)
    });
}

/// Keeps a link to `peer` at `addr` up: dials, and re-dials with backoff after every failure.
/// When both ends know each other's address, the one with the larger key holds back (first for
/// `HOLD_BACK`, 500 ms, then whenever a link is already up) so they do not keep replacing each
/// other's link.
pub fn dial(ctx: LinkCtx, peer: NodeId, addr: SocketAddr) {
    dial_until(ctx, peer, addr, Arc::new(AtomicBool::new(false)));
}

/// [`dial`] until `gone` is set too (the neighbour left the config, or moved): no new attempt
/// after that; a link up meanwhile is closed by its handle.
pub fn dial_until(ctx: LinkCtx, peer: NodeId, addr: SocketAddr, gone: Arc<AtomicBool>) {
    let mut backoff = Backoff::default();
    if !linkcore::smaller_dials(&ctx.id.id(), &peer) {
        sleep_unless_stopped(&ctx, HOLD_BACK);
    }
    while !ctx.stop.load(Ordering::SeqCst) && !gone.load(Ordering::SeqCst) {
        if ctx
            .linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&peer)
        {
            sleep_unless_stopped(&ctx, Duration::from_millis(100));
            backoff.reset();
            continue;
        }
        let started = Instant::now();
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_nodelay(true);
            match handshake(&ctx, &mut s, Some(peer), started + HANDSHAKE_DEADLINE) {
                Ok(est) => run_link(&ctx, s, est, None),
                Err(e) => tracing::warn!("link to {peer:?} at {addr}: {e}"),
            }
        }
        // A link that stayed up a while starts over with a short backoff.
        sleep_unless_stopped(&ctx, backoff.after_attempt(started.elapsed()));
    }
}

fn sleep_unless_stopped(ctx: &LinkCtx, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !ctx.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::test_util::{closed_within, connect_from, trickle_until_dropped};

    fn ctx(seed: u8, events: SyncSender<LinkEvent>, stop: Arc<AtomicBool>) -> LinkCtx {
        LinkCtx {
            id: Arc::new(Identity::from_seed([seed; 32]).unwrap()),
            data_port: 7000,
            data_shards: 2,
            keepalive: Duration::from_millis(50),
            dead_after: 3,
            allowed: Arc::new(|_| true),
            events,
            wake: wake_fd().unwrap(),
            next_session: Arc::new(AtomicU32::new(1)),
            next_link: Arc::new(AtomicU64::new(1)),
            linked: Default::default(),
            stop,
        }
    }

    #[test]
    fn link_comes_up_measures_rtt_carries_messages_and_goes_down() {
        let stop = Arc::new(AtomicBool::new(false));
        let (ta, ra) = sync_channel(LINK_EVENTS);
        let (tb, rb) = sync_channel(LINK_EVENTS);
        let a = ctx(1, ta, stop.clone());
        let b = ctx(2, tb, stop.clone());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bid = b.id.id();
        std::thread::spawn(move || listen(b, l));
        std::thread::spawn(move || dial(a, bid, addr));
        let up_a = match ra.recv_timeout(Duration::from_secs(5)).unwrap() {
            LinkEvent::Up(u) => u,
            _ => panic!("expected up"),
        };
        let up_b = match rb.recv_timeout(Duration::from_secs(5)).unwrap() {
            LinkEvent::Up(u) => u,
            _ => panic!("expected up"),
        };
        assert_eq!(up_a.peer, bid);
        assert_eq!(up_a.data_tx, up_b.data_rx);
        assert_eq!(up_a.remote.data_endpoint, "127.0.0.1:7000".parse().unwrap());
        assert!(up_a.handle.send(b"hello"));
        let mut got_rtt = false;
        let mut got_msg = false;
        let t = Instant::now();
        while !(got_rtt && got_msg) && t.elapsed() < Duration::from_secs(5) {
            if let Ok(LinkEvent::Rtt { .. }) = ra.recv_timeout(Duration::from_millis(100)) {
                got_rtt = true;
            }
            while let Ok(ev) = rb.try_recv() {
                if let LinkEvent::Msg { bytes, .. } = ev {
                    assert_eq!(bytes, b"hello");
                    got_msg = true;
                }
            }
        }
        assert!(got_rtt && got_msg);
        up_b.handle.close();
        let t = Instant::now();
        loop {
            assert!(t.elapsed() < Duration::from_secs(5), "no down event");
            if let Ok(LinkEvent::Down { .. }) = ra.recv_timeout(Duration::from_millis(100)) {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
    }

    /// A reader that waits for room in a full event queue (the main loop behind, e.g. while
    /// another neighbour floods it: the queue is shared by every link) does not call its peer
    /// dead for the time it waited: the peer's keepalives were in the socket all along.
    #[test]
    fn a_reader_waiting_for_the_main_loop_does_not_call_its_peer_dead() {
        let stop = Arc::new(AtomicBool::new(false));
        let (ta, ra) = sync_channel(LINK_EVENTS);
        // b's main loop: one slot, and not read for a while.
        let (tb, rb) = sync_channel(1);
        let a = ctx(1, ta, stop.clone());
        let b = ctx(2, tb, stop.clone());
        let dead = b.keepalive * b.dead_after;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bid = b.id.id();
        std::thread::spawn(move || listen(b, l));
        std::thread::spawn(move || dial(a, bid, addr));
        assert!(matches!(
            rb.recv_timeout(Duration::from_secs(5)),
            Ok(LinkEvent::Up(_))
        ));
        // The queue fills with b's first RTT sample; its reader then waits, far past `dead`.
        std::thread::sleep(dead * 6);
        let t = Instant::now();
        while t.elapsed() < dead * 4 {
            if let Ok(LinkEvent::Down { why, .. }) = rb.recv_timeout(Duration::from_millis(10)) {
                panic!("b called a dead after waiting for its main loop: {why}");
            }
        }
        // a heard b all along.
        assert!(!ra.try_iter().any(|e| matches!(e, LinkEvent::Down { .. })));
        stop.store(true, Ordering::SeqCst);
    }

    /// Small bounds for the tests below.
    fn test_limits(deadline: Duration) -> Limits {
        Limits {
            max_handshaking: 8,
            max_handshaking_per_ip: 3,
            max_conns: 16,
            max_conns_per_ip: 8,
            handshake_deadline: deadline,
            accept_backoff: Duration::from_millis(10),
        }
    }

    /// A listener of node 2 running with `limits`; its address and counters.
    fn start_listener(limits: Limits, stop: &Arc<AtomicBool>) -> (SocketAddr, Arc<ListenerStats>) {
        let (tb, rb) = sync_channel(LINK_EVENTS);
        // Keep the receiver alive for the whole test: events have somewhere to go.
        std::mem::forget(rb);
        let b = ctx(2, tb, stop.clone());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stats = Arc::new(ListenerStats::default());
        let st = stats.clone();
        std::thread::spawn(move || listen_with(b, l, limits, st));
        (addr, stats)
    }

    #[test]
    fn a_slowloris_is_dropped_at_the_handshake_deadline() {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Duration::from_millis(600);
        let (addr, stats) = start_listener(test_limits(deadline), &stop);
        let mut s = connect_from([127, 0, 0, 2], addr);
        let took = trickle_until_dropped(&mut s).expect("still connected after 4 s");
        assert!(took < deadline + Duration::from_millis(700), "{took:?}");
        let t0 = Instant::now();
        while stats.snapshot().handshake_timeout == 0 && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stats.snapshot().handshake_timeout, 1);
        stop.store(true, Ordering::SeqCst);
    }

    #[test]
    fn over_the_per_ip_cap_is_closed_at_once_and_a_real_link_still_comes_up() {
        let stop = Arc::new(AtomicBool::new(false));
        let limits = test_limits(Duration::from_secs(20));
        let (addr, stats) = start_listener(limits, &stop);
        // As many silent connections from 127.0.0.2 as it may hold handshaking ...
        let mut held: Vec<TcpStream> = (0..limits.max_handshaking_per_ip)
            .map(|_| connect_from([127, 0, 0, 2], addr))
            .collect();
        // ... and one more, which is closed at once and counted.
        let mut over = connect_from([127, 0, 0, 2], addr);
        assert!(closed_within(&mut over, Duration::from_secs(2)));
        assert_eq!(stats.snapshot().refused_per_ip, 1);
        for h in &mut held {
            assert!(!closed_within(h, Duration::from_millis(20)));
        }
        // A neighbour dialling from 127.0.0.1 gets its link while they are held.
        let (ta, ra) = sync_channel(LINK_EVENTS);
        let a = ctx(1, ta, stop.clone());
        let bid = Identity::from_seed([2; 32]).unwrap().id();
        std::thread::spawn(move || dial(a, bid, addr));
        match ra.recv_timeout(Duration::from_secs(5)) {
            Ok(LinkEvent::Up(u)) => assert_eq!(u.peer, bid),
            _ => panic!("no link while the silent connections were held"),
        }
        for h in &mut held {
            assert!(!closed_within(h, Duration::from_millis(20)));
        }
        assert_eq!(stats.snapshot().accepted, 4);
        stop.store(true, Ordering::SeqCst);
    }
}
