//! The fib ring: how the controlplane programs this dataplane.
//!
//! skywire-node listens on a unix socket (owner-only, peer credentials checked); a controlplane
//! connects with the same request as a signal attach and gets a ring pair in a sealed memfd.
//! Over it flow [`FibMsg`]s: staged table changes published by `Commit` (answered by `Ack`),
//! counter reads, packets punted for destinations with no route, and packets injected back once
//! their route is up. One controlplane at a time; a new connection replaces the old one.

use crate::fib::{Action, Fib, FibCell, Route, RouteKeyCfg, SessionCfg};
use crate::fibproto::{FibMsg, RuleAction, Traffic as WireTraffic};
use crate::liveness::{Event, Monitor, Node, Sample};
use crate::punt::Punts;
use crate::shard::{BUF_SIZE, HEADROOM, Shard, Verdict};
use crate::stats::DropReason;
use crate::stats::{NodeStats, Traffic, traffic};
use signal::Channel;
use std::io::{self, BufRead, BufReader};
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes per ring direction.
const RING_CAP: usize = 1 << 20;
/// Entries per list in one counters answer (keeps a record under the ring's 64 KiB limit).
const MAX_REPORTED: usize = 512;
/// Datagrams read from the probe port per loop turn: a flood of it delays the ring by at most
/// this many checks (a few hundred µs) per turn.
const MAX_PROBES_PER_TURN: usize = 256;
/// Longest the fib thread sleeps: how fast a stop request is noticed.
const FIB_IDLE: Duration = Duration::from_millis(100);

/// Sleeps until the ring, the punt queue or the listener has something, or `timeout` (at most
/// `FIB_IDLE`).
fn wait(
    ring: Option<BorrowedFd<'_>>,
    punts: BorrowedFd<'_>,
    listener: BorrowedFd<'_>,
    probes: BorrowedFd<'_>,
    timeout: Duration,
) {
    use rustix::event::{PollFd, PollFlags, poll};
    let t = timeout.min(FIB_IDLE);
    let ts = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: t.as_nanos() as i64,
    };
    let mut fds = vec![
        PollFd::new(&punts, PollFlags::IN),
        PollFd::new(&listener, PollFlags::IN),
        PollFd::new(&probes, PollFlags::IN),
    ];
    if let Some(r) = ring.as_ref() {
        fds.push(PollFd::new(r, PollFlags::IN));
    }
    // EINTR or an error: the loop looks at everything again anyway.
    let _ = poll(&mut fds, Some(&ts));
}

/// Whether a frame waits unread in any of `sockets` (one poll, no wait).
fn backlog(sockets: &[OwnedFd]) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::new(s, PollFlags::IN))
        .collect();
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

fn check_peer(s: &UnixStream) -> io::Result<()> {
    let cred = rustix::net::sockopt::socket_peercred(s)?;
    if cred.uid.is_root() || cred.uid == rustix::process::geteuid() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "fib socket: caller is neither root nor our user",
        ))
    }
}

/// Binds the fib socket (0600, its folder 0700 when made; a stale socket replaced, one a live
/// dataplane serves refused), non-blocking.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let l = netbase::private_socket::bind(path, "dataplane")?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The fib thread's state.
pub struct FibServer {
    /// Where the tables live.
    pub cell: Arc<FibCell>,
    /// Node counters.
    pub stats: Arc<NodeStats>,
    /// Shard count (counters are sized for shards + 1: the last slot is this thread's).
    pub shards: usize,
    /// Punted packets from the shards.
    pub punts: Punts,
    /// For injected packets and liveness probes: a shard of our own (taking probes only, see
    /// [`Shard::receiving_probes`]) and a socket.
    pub injector: Shard,
    /// Its socket (non-blocking): the base port + the shard count, where the neighbours'
    /// probes arrive.
    pub udp: UdpSocket,
    /// Ends the loop.
    pub stop: Arc<AtomicBool>,
    /// The socket path (removed at exit).
    pub path: PathBuf,
    /// How long tables outlive the controlplane that made them.
    pub grace: Duration,
    /// The shards' UDP sockets (duplicates; only polled, never read): a frame waiting in one
    /// means the shards are behind, so a silence is not believed yet ([`crate::liveness`]).
    pub receivers: Vec<OwnedFd>,
}

/// The fib thread's liveness state: the monitor, and when it was last looked at.
struct Liveness {
    monitor: Monitor,
    polled: Option<Instant>,
    generation: u64,
}

impl Liveness {
    fn new() -> Liveness {
        Liveness {
            monitor: Monitor::new(),
            polled: None,
            generation: u64::MAX,
        }
    }

    /// Whether the monitor has something due, the table changed (sessions added or removed),
    /// or it was not looked at for `FIB_IDLE`.
    fn due(&self, now: Instant, generation: u64) -> bool {
        generation != self.generation
            || self.polled.is_none_or(|t| now >= t + FIB_IDLE)
            || self.monitor.next_due().is_some_and(|t| now >= t)
    }

    fn polled(&mut self, now: Instant, generation: u64) {
        self.polled = Some(now);
        self.generation = generation;
    }

    /// How long the thread may sleep from `now` before the monitor is due.
    fn sleep(&self, now: Instant) -> Duration {
        self.monitor
            .next_due()
            .map_or(FIB_IDLE, |t| t.saturating_duration_since(now))
    }
}

/// Tables left by a controlplane that went away: kept (forwarding goes on while it restarts)
/// for `grace`, then cleared if no controlplane took them over, so a dead controlplane's
/// sessions, keys and routes do not live on for ever.
#[derive(Debug, Clone, Copy)]
pub struct Orphan {
    grace: Duration,
    since: Option<Instant>,
}

impl Orphan {
    /// Tables are kept for `grace` after their controlplane went away.
    pub fn new(grace: Duration) -> Orphan {
        Orphan { grace, since: None }
    }

    /// The controlplane went away at `now`.
    pub fn lost(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// A controlplane connected: the tables are its again.
    pub fn adopted(&mut self) {
        self.since = None;
    }

    /// Whether the grace period ran out at `now` (true once).
    pub fn due(&mut self, now: Instant) -> bool {
        match self.since {
            Some(t) if now.saturating_duration_since(t) >= self.grace => {
                self.since = None;
                true
            }
            _ => false,
        }
    }
}

fn accept(l: &UnixListener) -> Option<(Channel, Option<OwnedFd>)> {
    let (s, _) = l.accept().ok()?;
    let _ = s.set_nonblocking(false);
    if let Err(e) = check_peer(&s) {
        let _ = signal::attach::refuse(&s, &e.to_string());
        return None;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    if !line.contains("\"attach\"") {
        let _ = signal::attach::refuse(&s, "expected an attach request");
        return None;
    }
    let (chan, fds) = Channel::create(RING_CAP).ok()?;
    signal::attach::grant(&s, 1, &fds).ok()?;
    Some((chan, netbase::pidfd::of_peer(&s)))
}

impl FibServer {
    /// Serves until `stop`.
    pub fn run(mut self, listener: UnixListener) {
        let mut chan: Option<Channel> = None;
        let mut staged: Option<Fib> = None;
        let mut buf = vec![0u8; BUF_SIZE];
        let mut rec = Vec::new();
        let mut controlplane: Option<OwnedFd> = None;
        let mut orphan = Orphan::new(self.grace);
        let mut live = Liveness::new();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if controlplane.as_ref().is_some_and(netbase::pidfd::exited) {
                tracing::warn!(
                    "the controlplane exited; forwarding on the last tables for {:?}",
                    self.grace
                );
                controlplane = None;
                chan = None;
                staged = None;
                orphan.lost(now);
            }
            if let Some((c, pidfd)) = accept(&listener) {
                tracing::info!("controlplane connected to the fib ring");
                chan = Some(c);
                controlplane = pidfd;
                orphan.adopted();
                staged = None;
            }
            if orphan.due(now) {
                let idle = self.cell.load().0.route_idle;
                self.cell.publish(Fib {
                    route_idle: idle,
                    ..Fib::default()
                });
                tracing::warn!("no controlplane for {:?}: tables cleared", self.grace);
            }
            let mut drain = [0u8; 8];
            let _ = rustix::io::read(&*self.punts.bell, &mut drain);
            // Probes go out whether or not a controlplane is there: the neighbours must keep
            // hearing us while ours restarts.
            let mut out: Vec<FibMsg> = Vec::new();
            self.receive_probes(&mut buf);
            self.liveness(now, &mut live, &mut out, &mut buf);
            let idle = live.sleep(Instant::now());
            let Some(c) = chan.as_mut() else {
                // Nobody to punt to: punted packets are just dropped.
                while self.punts.rx.try_recv().is_ok() {}
                wait(
                    None,
                    self.punts.bell.as_fd(),
                    listener.as_fd(),
                    self.udp.as_fd(),
                    idle,
                );
                continue;
            };
            let mut lost = false;
            let mut inbox: Vec<FibMsg> = Vec::new();
            // Everything queued, bounded per turn.
            while !lost && inbox.len() < 4096 {
                match c.rx.try_recv_raw() {
                    Ok(Some(rec)) => push_decoded(rec, &mut inbox),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("fib ring broken: {e}");
                        lost = true;
                    }
                }
            }
            let busy = !inbox.is_empty();
            for m in inbox {
                self.apply(m, &mut staged, &mut out, &mut buf);
            }
            while let Ok(p) = self.punts.rx.try_recv() {
                if let Some(ip) = crate::packet::parse(&p) {
                    out.push(FibMsg::Punt {
                        dst: ip.dst,
                        packet: p,
                    });
                }
            }
            for m in out {
                m.encode(&mut rec);
                // A full ring means the controlplane is not reading; punts are best effort and
                // answers are re-asked for.
                let _ = c.tx.send_raw(&rec);
            }
            if lost {
                chan = None;
                orphan.lost(now);
                continue;
            }
            if busy {
                continue;
            }
            match c.rx.arm() {
                Ok(true) => {
                    wait(
                        Some(c.rx.bell_fd()),
                        self.punts.bell.as_fd(),
                        listener.as_fd(),
                        self.udp.as_fd(),
                        idle,
                    );
                    c.rx.disarm();
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("fib ring broken: {e}");
                    chan = None;
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Probes from the neighbours, waiting at this thread's port (checked like any frame by
    /// the injector shard, which takes probes only), at most [`MAX_PROBES_PER_TURN`].
    fn receive_probes(&mut self, buf: &mut [u8]) {
        for _ in 0..MAX_PROBES_PER_TURN {
            let Ok((len, _)) = self.udp.recv_from(buf) else {
                return;
            };
            self.injector.refresh();
            let _ = self.injector.from_udp(buf, len);
        }
    }

    /// Probes and detections due at `now` ([`crate::liveness`]): probes are sent from the
    /// injector's socket, silent sessions are reported in `out`.
    fn liveness(
        &mut self,
        now: Instant,
        live: &mut Liveness,
        out: &mut Vec<FibMsg>,
        buf: &mut [u8],
    ) {
        if !live.due(now, self.cell.generation()) {
            return;
        }
        let fib = self.cell.load().0;
        let samples = fib.sessions.iter().map(|(id, s)| Sample {
            session: *id,
            liveness: s.liveness,
            rx_pkts: s.traffic.sum(traffic::RX_PKTS),
            tx_pkts: s.traffic.sum(traffic::TX_PKTS),
        });
        let mut events = Vec::new();
        let node = Node {
            // Authenticated frames only: a flood of garbage at a data port proves nothing about
            // whether this node reads its peers' frames in time.
            rx_pkts: fib
                .sessions
                .values()
                .map(|s| s.traffic.sum(traffic::RX_PKTS))
                .fold(0u64, u64::wrapping_add),
            backlog: backlog(&self.receivers),
        };
        live.monitor.poll(now, node, samples, &mut events);
        live.polled(now, self.cell.generation());
        self.injector.refresh();
        for e in events {
            match e {
                Event::Probe(id) => {
                    if let Some(Verdict::Send { to, len }) = self.injector.probe(id, buf) {
                        match self.udp.send_to(&buf[..len], to) {
                            Ok(_) => self.injector.sent(len),
                            Err(_) => {
                                self.injector.discard(DropReason::SendError);
                            }
                        }
                    }
                }
                Event::Down { session, silent } => {
                    tracing::warn!(
                        "session {session}: nothing heard from the peer for {} ms",
                        silent.as_millis()
                    );
                    out.push(FibMsg::SessionDown {
                        id: session,
                        silent_ms: u32::try_from(silent.as_millis()).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        self.stats.set_liveness(
            live.monitor.probes,
            live.monitor.downs,
            live.monitor.late_polls,
        );
    }

    fn apply(
        &mut self,
        m: FibMsg,
        staged: &mut Option<Fib>,
        out: &mut Vec<FibMsg>,
        buf: &mut [u8],
    ) {
        let shards = self.shards + 1;
        let st = staged.get_or_insert_with(|| (*self.cell.load().0).clone());
        match m {
            FibMsg::AddSession {
                id,
                peer_id,
                peer,
                peer_shards,
                cipher,
                tx_key,
                rx_key,
                liveness,
            } => {
                // Replacing a session's keys (a rekey) keeps its counters and remembers the old
                // receive key, so frames sealed before the peer switched still open.
                let old = st.sessions.get(&id).cloned();
                let traffic = old
                    .as_ref()
                    .map(|o| o.traffic.clone())
                    .unwrap_or_else(|| Arc::new(Traffic::new(shards)));
                let prev_rx_key = match &old {
                    Some(o) if o.rx_key != rx_key.0 => Some(o.rx_key),
                    Some(o) => o.prev_rx_key,
                    None => None,
                };
                st.sessions.insert(
                    id,
                    Arc::new(SessionCfg {
                        id,
                        peer_id,
                        peer,
                        peer_shards: peer_shards.max(1),
                        cipher,
                        tx_key: tx_key.0,
                        rx_key: rx_key.0,
                        prev_rx_key,
                        traffic,
                        liveness,
                    }),
                );
            }
            FibMsg::RemoveSession { id } => {
                st.sessions.remove(&id);
                st.rules.retain(|(s, _), a| {
                    *s != id && !matches!(a, Action::Forward { session, .. } if *session == id)
                });
                let dead: Vec<_> = st
                    .routes
                    .iter()
                    .filter(|(_, r)| r.session == id)
                    .map(|(p, _)| p)
                    .collect();
                for p in dead {
                    st.routes.remove(&p);
                }
            }
            FibMsg::AddRouteKey { id, cipher, key } => {
                // Same id, same key: the entry stays (and with it the shards' counters).
                let same = st
                    .route_keys
                    .get(&id)
                    .is_some_and(|o| o.cipher == cipher && o.key == key.0);
                if !same {
                    st.route_keys.insert(
                        id,
                        Arc::new(RouteKeyCfg {
                            cipher,
                            key: key.0,
                            traffic: Arc::new(Traffic::new(shards)),
                        }),
                    );
                }
            }
            FibMsg::RemoveRouteKey { id } => {
                st.route_keys.remove(&id);
                st.rules
                    .retain(|_, a| !matches!(a, Action::Deliver { key, .. } if *key == id));
                let dead: Vec<_> = st
                    .routes
                    .iter()
                    .filter(|(_, r)| r.key == id)
                    .map(|(p, _)| p)
                    .collect();
                for p in dead {
                    st.routes.remove(&p);
                }
            }
            FibMsg::ForgetPreviousKey { id } => {
                if let Some(old) = st.sessions.get(&id).filter(|o| o.prev_rx_key.is_some()) {
                    let mut c = (**old).clone();
                    c.prev_rx_key = None;
                    st.sessions.insert(id, Arc::new(c));
                }
            }
            FibMsg::AddRule {
                session,
                label,
                action,
            } => {
                let a = match action {
                    RuleAction::Forward { session, label } => Action::Forward { session, label },
                    RuleAction::Deliver { sources, key } => Action::Deliver { sources, key },
                };
                st.rules.insert((session, label), a);
            }
            FibMsg::RemoveRule { session, label } => {
                st.rules.remove(&(session, label));
            }
            FibMsg::AddRoute {
                prefix,
                session,
                label,
                key,
                keepalive,
            } => {
                let traffic = Arc::new(Traffic::new(shards));
                st.routes.insert(
                    prefix,
                    Route {
                        session,
                        label,
                        key,
                        keepalive,
                        traffic,
                    },
                );
            }
            FibMsg::RemoveRoute { prefix } => {
                st.routes.remove(&prefix);
            }
            FibMsg::Clear => {
                let idle = st.route_idle;
                *st = Fib {
                    route_idle: idle,
                    ..Fib::default()
                };
            }
            FibMsg::Commit { nonce } => {
                let error = match staged.take() {
                    Some(f) => match f.validate() {
                        Ok(()) => {
                            self.cell.publish(f);
                            String::new()
                        }
                        Err(e) => e,
                    },
                    None => String::new(),
                };
                out.push(FibMsg::Ack { nonce, error });
            }
            FibMsg::ReadCounters { nonce } => {
                let fib = self.cell.load().0;
                let tr = |t: &Traffic| WireTraffic {
                    rx_pkts: t.sum(traffic::RX_PKTS),
                    rx_bytes: t.sum(traffic::RX_BYTES),
                    tx_pkts: t.sum(traffic::TX_PKTS),
                    tx_bytes: t.sum(traffic::TX_BYTES),
                };
                let sessions = fib
                    .sessions
                    .iter()
                    .take(MAX_REPORTED)
                    .map(|(id, s)| (*id, tr(&s.traffic)))
                    .collect();
                let routes = fib
                    .routes
                    .iter()
                    .take(MAX_REPORTED)
                    .map(|(p, r)| (p, tr(&r.traffic)))
                    .collect();
                out.push(FibMsg::Counters {
                    nonce,
                    sessions,
                    routes,
                    drops: self.stats.report(),
                });
            }
            FibMsg::Inject { packet } => {
                self.injector.refresh();
                if packet.len() <= buf.len() - HEADROOM - crate::shard::TAILROOM {
                    buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
                    if let Verdict::Send { to, len } = self.injector.from_tun(buf, packet.len()) {
                        match self.udp.send_to(&buf[..len], to) {
                            Ok(_) => self.injector.sent(len),
                            Err(_) => {
                                self.injector.discard(DropReason::SendError);
                            }
                        }
                    }
                }
            }
            // Dataplane-to-controlplane messages arriving here are ignored.
            FibMsg::Ack { .. }
            | FibMsg::Counters { .. }
            | FibMsg::Punt { .. }
            | FibMsg::SessionDown { .. } => {}
        }
    }
}

/// The controlplane's end of the fib ring.
pub struct FibClient {
    chan: Channel,
    /// The dataplane's process, when the kernel named it.
    server_pid: Option<u32>,
    nonce: u64,
    /// Messages that arrived while waiting for an answer (punts, mostly).
    pending: std::collections::VecDeque<FibMsg>,
    rec: Vec<u8>,
}

impl FibClient {
    /// Connects to a node's fib socket.
    pub fn connect(path: &Path) -> io::Result<FibClient> {
        let a = signal::attach::request_attached(path, "controlplane")?;
        Ok(FibClient {
            chan: Channel::open(a.fds)?,
            server_pid: a.server_pid,
            nonce: 0,
            pending: Default::default(),
            rec: Vec::new(),
        })
    }

    /// The dataplane's pid (from the fib socket's peer credentials), to watch for its exit.
    pub fn dataplane_pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// Sends one message (staged changes take effect at [`FibClient::commit`]).
    pub fn send(&mut self, m: &FibMsg) -> io::Result<()> {
        m.encode(&mut self.rec);
        self.chan
            .tx
            .send_raw(&self.rec)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// The next message from the dataplane (queued ones first), waiting up to `timeout`
    /// (zero: only what is there now, no spinning).
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<FibMsg>> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        if timeout.is_zero() {
            loop {
                match self.chan.rx.try_recv_raw() {
                    Ok(Some(rec)) => match FibMsg::decode(rec) {
                        Ok(m) => return Ok(Some(m)),
                        Err(e) => tracing::warn!("fib client: ignored {e}"),
                    },
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chan.rx.recv_raw_timeout(left) {
                Ok(Some(rec)) => match FibMsg::decode(rec) {
                    Ok(m) => return Ok(Some(m)),
                    Err(e) => tracing::warn!("fib client: ignored {e}"),
                },
                Ok(None) => return Ok(None),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn wait(&mut self, timeout: Duration, pick: impl Fn(&FibMsg) -> bool) -> io::Result<FibMsg> {
        let deadline = Instant::now() + timeout;
        let mut skipped = std::collections::VecDeque::new();
        let r = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the dataplane",
                ));
            }
            let m = match self.pending.pop_front() {
                Some(m) => m,
                None => match self.chan.rx.recv_raw_timeout(left) {
                    Ok(Some(rec)) => match FibMsg::decode(rec) {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                    Ok(None) => continue,
                    Err(e) => break Err(io::Error::other(e.to_string())),
                },
            };
            if pick(&m) {
                break Ok(m);
            }
            skipped.push_back(m);
        };
        skipped.extend(self.pending.drain(..));
        self.pending = skipped;
        r
    }

    /// For event loops: announce a sleep on [`FibClient::wait_fd`]. False when a message is
    /// already there (handle it instead of sleeping).
    pub fn arm(&mut self) -> io::Result<bool> {
        if !self.pending.is_empty() {
            return Ok(false);
        }
        self.chan
            .rx
            .arm()
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// After waking: clear the doorbell.
    pub fn disarm(&mut self) {
        self.chan.rx.disarm();
    }

    /// The descriptor that turns readable when the dataplane sent something.
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        self.chan.rx.bell_fd()
    }

    /// Publishes everything sent since the last commit; waits for the dataplane's answer.
    pub fn commit(&mut self, timeout: Duration) -> io::Result<()> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.send(&FibMsg::Commit { nonce })?;
        match self.wait(
            timeout,
            |m| matches!(m, FibMsg::Ack { nonce: n, .. } if *n == nonce),
        )? {
            FibMsg::Ack { error, .. } if error.is_empty() => Ok(()),
            FibMsg::Ack { error, .. } => Err(io::Error::new(io::ErrorKind::InvalidInput, error)),
            _ => Err(io::Error::other("unexpected answer")),
        }
    }

    /// Reads the dataplane's counters.
    pub fn counters(&mut self, timeout: Duration) -> io::Result<FibMsg> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.send(&FibMsg::ReadCounters { nonce })?;
        self.wait(
            timeout,
            |m| matches!(m, FibMsg::Counters { nonce: n, .. } if *n == nonce),
        )
    }
}

fn push_decoded(rec: &[u8], inbox: &mut Vec<FibMsg>) {
    match FibMsg::decode(rec) {
        Ok(m) => inbox.push(m),
        Err(e) => tracing::warn!("fib ring: ignored a message: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_fib_socket_is_private_and_a_live_one_is_not_taken_over() {
        let dir = std::env::temp_dir().join(format!("fibbind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("run").join("sky0.fib");
        let l = bind(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(
            mode(p.parent().unwrap()),
            0o700,
            "a folder we make is ours only"
        );
        let e = bind(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("another dataplane"), "{e}");
        drop(l);
        bind(&p).unwrap(); // the stale socket of a dead dataplane is replaced
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod orphan_tests {
    use super::*;

    #[test]
    fn orphaned_tables_are_kept_for_the_grace_period_then_cleared_once() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut o = Orphan::new(Duration::from_secs(30));
        assert!(
            !o.due(s(100)),
            "nothing is orphaned while a controlplane is there"
        );
        o.lost(s(0));
        o.lost(s(10)); // a second sign of the same loss does not restart the period
        assert!(!o.due(s(29)));
        assert!(o.due(s(30)));
        assert!(!o.due(s(31)), "cleared once");
        // A controlplane that comes back within the period keeps the tables.
        o.lost(s(40));
        o.adopted();
        assert!(!o.due(s(100)));
    }
}
