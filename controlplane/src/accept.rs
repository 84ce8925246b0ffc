//! Bounded accept loops, shared by the link listener ([`crate::links`]), the messenger server
//! ([`crate::messenger::net`]) and the app socket ([`crate::appsock`]).
//!
//! Every accepted connection costs a thread and a descriptor (two once it is up: the writer
//! clones the socket). Before authentication it is a stranger's, so the [`Gate`] admits it only
//! under three caps ([`Limits`]): connections still handshaking on this listener, of those the
//! ones from one source address, and all connections of this listener. A connection over a cap
//! is closed at once and counted in [`ListenerStats`].
//!
//! Over a cap the *new* connection is refused, with one exception. Nothing holds a handshaking
//! slot for longer than the whole-handshake deadline ([`Limits::handshake_deadline`]) and the
//! per-address cap keeps one source from taking every slot; but a few sources together (the
//! handshaking cap over the per-address cap: 8 for the link listener) can hold every slot and
//! take each back the moment it frees, so that an honest peer dialling now and then is refused
//! on every try. So when the handshaking cap is full, a TCP connection from a source holding
//! fewer handshaking slots than another source does is admitted, and the oldest handshaking
//! connection of the source holding the most is shed ([`ListenerStats::shed_handshaking`]):
//! the gate keeps a clone of each handshaking TCP stream and shuts it down, which ends the
//! blocking read of the thread handling it. Slots thus tend to equal shares per source: a
//! source's own newcomers never shed its other connections, and a source holding one slot (an
//! honest peer needs one, for milliseconds) is never shed. Sources as many as the cap, one
//! slot each, still hold it all (refused as before).
//!
//! The loop ([`run`]) never returns on an accept error and never panics: on descriptor or
//! memory exhaustion (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) and on a failed thread creation
//! it counts, backs off for [`Limits::accept_backoff`] and goes on accepting.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the loop sleeps after an accept error or a failed thread creation. On `EMFILE` the
/// pending connection stays in the kernel's backlog, so accepting again at once fails again at
/// once: without a pause the loop spins a core. 100 ms lets other connections end and free
/// descriptors, and adds at most that much latency to the connections waiting in the backlog.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a non-blocking listener looks at its stop flag when nothing arrives.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections of this listener still authenticating.
    pub max_handshaking: usize,
    /// Most of those from one source ([`source_key`]: an IPv4 address or an IPv6 /64).
    pub max_handshaking_per_ip: usize,
    /// Most connections of this listener, authenticated or not.
    pub max_conns: usize,
    /// Most of those from one source: anyone can make a key and authenticate, so without this
    /// one address could hold every connection slot.
    pub max_conns_per_ip: usize,
    /// Longest the whole authentication may take, from accept to the last message (not per
    /// read: a peer that trickles a byte at a time is dropped at this deadline).
    pub handshake_deadline: Duration,
    /// The pause after an accept error or a failed thread creation ([`ACCEPT_BACKOFF`]).
    pub accept_backoff: Duration,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// [`Limits::max_handshaking`] connections are authenticating.
    #[error("too many connections authenticating")]
    Handshaking,
    /// [`Limits::max_handshaking_per_ip`] connections from this source are authenticating.
    #[error("too many connections authenticating from this address")]
    PerIp,
    /// [`Limits::max_conns`] connections are open.
    #[error("too many connections")]
    Total,
    /// [`Limits::max_conns_per_ip`] connections from this source are open.
    #[error("too many connections from this address")]
    PerIpTotal,
}

/// What a listener refused, dropped and failed at, by reason. Shared with whoever publishes it
/// (e.g. the driver's `ru` counters); every field only grows.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Refused: [`Refusal::Handshaking`].
    pub refused_handshaking: AtomicU64,
    /// Refused: [`Refusal::PerIp`].
    pub refused_per_ip: AtomicU64,
    /// Refused: [`Refusal::Total`].
    pub refused_total: AtomicU64,
    /// Refused: [`Refusal::PerIpTotal`].
    pub refused_per_ip_total: AtomicU64,
    /// `accept` failed for lack of descriptors or memory (each followed by a backoff).
    pub accept_exhausted: AtomicU64,
    /// `accept` failed for another reason (a peer that reset before we accepted, ...).
    pub accept_other: AtomicU64,
    /// No thread could be made for a connection (it was closed).
    pub spawn_failed: AtomicU64,
    /// Handshaking connections shut down to admit one from a source holding fewer slots.
    pub shed_handshaking: AtomicU64,
    /// Dropped at the whole-handshake deadline.
    pub handshake_timeout: AtomicU64,
    /// The handshake failed otherwise (bad message, unknown key, closed).
    pub handshake_failed: AtomicU64,
    /// Authenticated connections dropped for saying nothing for too long.
    pub idle_closed: AtomicU64,
}

/// A copy of [`ListenerStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub refused_handshaking: u64,
    pub refused_per_ip: u64,
    pub refused_total: u64,
    pub refused_per_ip_total: u64,
    pub accept_exhausted: u64,
    pub accept_other: u64,
    pub spawn_failed: u64,
    pub shed_handshaking: u64,
    pub handshake_timeout: u64,
    pub handshake_failed: u64,
    pub idle_closed: u64,
}

impl StatsSnapshot {
    /// The counters as `ru` names them: `PREFIX_accepted`, `PREFIX_refused_per_ip`, ...
    pub fn named(&self, prefix: &str) -> Vec<(String, u64)> {
        [
            ("accepted", self.accepted),
            ("refused_handshaking", self.refused_handshaking),
            ("refused_per_ip", self.refused_per_ip),
            ("refused_total", self.refused_total),
            ("refused_per_ip_total", self.refused_per_ip_total),
            ("accept_exhausted", self.accept_exhausted),
            ("accept_other", self.accept_other),
            ("spawn_failed", self.spawn_failed),
            ("shed_handshaking", self.shed_handshaking),
            ("handshake_timeout", self.handshake_timeout),
            ("handshake_failed", self.handshake_failed),
            ("idle_closed", self.idle_closed),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}_{k}"), v))
        .collect()
    }
}

impl ListenerStats {
    /// Adds one to `c` (a field of `self`).
    pub fn count(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: g(&self.accepted),
            refused_handshaking: g(&self.refused_handshaking),
            refused_per_ip: g(&self.refused_per_ip),
            refused_total: g(&self.refused_total),
            refused_per_ip_total: g(&self.refused_per_ip_total),
            accept_exhausted: g(&self.accept_exhausted),
            accept_other: g(&self.accept_other),
            spawn_failed: g(&self.spawn_failed),
            shed_handshaking: g(&self.shed_handshaking),
            handshake_timeout: g(&self.handshake_timeout),
            handshake_failed: g(&self.handshake_failed),
            idle_closed: g(&self.idle_closed),
        }
    }

    /// All refusals at accept (over a cap).
    pub fn refused(&self) -> u64 {
        let s = self.snapshot();
        s.refused_handshaking + s.refused_per_ip + s.refused_total + s.refused_per_ip_total
    }
}

/// The per-source key: an IPv4 address, or the /64 of an IPv6 address (one host usually holds a
/// whole /64, so counting single IPv6 addresses would bound nothing). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A handshaking TCP connection the gate may shed.
struct Sheddable {
    key: IpAddr,
    since: Instant,
    /// A clone of the connection's stream, to shut it down.
    stream: TcpStream,
}

#[derive(Default)]
struct GateState {
    handshaking: usize,
    /// The handshaking connections admitted with a stream to shed them by, by permit id.
    sheddable: HashMap<u64, Sheddable>,
    next_id: u64,
    /// Handshaking connections by source.
    per_ip: HashMap<IpAddr, usize>,
    conns: usize,
    /// All connections by source.
    conns_per_ip: HashMap<IpAddr, usize>,
}

/// Admission control of one listener: counts its connections against its [`Limits`].
pub struct Gate {
    limits: Limits,
    stats: Arc<ListenerStats>,
    state: Mutex<GateState>,
}

impl Gate {
    /// A gate with these limits, counting into `stats`.
    pub fn new(limits: Limits, stats: Arc<ListenerStats>) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            stats,
            state: Mutex::new(GateState::default()),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Plain counters: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip` (`None`: a unix socket, no per-source cap) or says
    /// which cap it is over (and counts the refusal).
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Permit, Refusal> {
        self.admit_sheddable(ip, None)
    }

    /// [`Gate::admit`], for a connection that may be shed through `stream` (a clone of its
    /// stream; with `None` it never is) and that, over the handshaking cap, may shed another
    /// from a source holding more handshaking slots than its own would (see the module doc).
    pub fn admit_sheddable(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        stream: Option<TcpStream>,
    ) -> Result<Permit, Refusal> {
        let key = ip.map(source_key);
        let mut st = self.lock();
        let from_ip = key.and_then(|k| st.per_ip.get(&k).copied()).unwrap_or(0);
        let all_from_ip = key
            .and_then(|k| st.conns_per_ip.get(&k).copied())
            .unwrap_or(0);
        let refusal = if st.conns >= self.limits.max_conns {
            Some((Refusal::Total, &self.stats.refused_total))
        } else if key.is_some() && all_from_ip >= self.limits.max_conns_per_ip {
            Some((Refusal::PerIpTotal, &self.stats.refused_per_ip_total))
        } else if key.is_some() && from_ip >= self.limits.max_handshaking_per_ip {
            Some((Refusal::PerIp, &self.stats.refused_per_ip))
        } else if st.handshaking >= self.limits.max_handshaking {
            if stream.is_some() && key.is_some_and(|k| shed_for(&mut st, k, from_ip)) {
                ListenerStats::count(&self.stats.shed_handshaking);
                None
            } else {
                Some((Refusal::Handshaking, &self.stats.refused_handshaking))
            }
        } else {
            None
        };
        if let Some((r, c)) = refusal {
            ListenerStats::count(c);
            return Err(r);
        }
        st.conns += 1;
        st.handshaking += 1;
        if let Some(k) = key {
            *st.per_ip.entry(k).or_insert(0) += 1;
            *st.conns_per_ip.entry(k).or_insert(0) += 1;
        }
        let shed_id = match (key, stream) {
            (Some(k), Some(stream)) => {
                let id = st.next_id;
                st.next_id += 1;
                st.sheddable.insert(
                    id,
                    Sheddable {
                        key: k,
                        since: Instant::now(),
                        stream,
                    },
                );
                Some(id)
            }
            _ => None,
        };
        drop(st);
        ListenerStats::count(&self.stats.accepted);
        Ok(Permit {
            gate: self.clone(),
            key,
            shed_id,
            handshaking: true,
            deadline: Instant::now() + self.limits.handshake_deadline,
        })
    }

    /// (connections, of which handshaking) right now.
    pub fn load(&self) -> (usize, usize) {
        let st = self.lock();
        (st.conns, st.handshaking)
    }
}

/// Sheds, to admit a connection from `key` (now holding `from_ip` handshaking slots), the oldest
/// sheddable handshaking connection of the source holding the most slots, if that source holds
/// more than `key` would with the newcomer and is not `key`. Gives back the shed one's
/// handshaking slots (its connection slot goes when its thread drops its permit). Whether it
/// shed one.
fn shed_for(st: &mut GateState, key: IpAddr, from_ip: usize) -> bool {
    let mut by_source: HashMap<IpAddr, usize> = HashMap::new();
    for v in st.sheddable.values() {
        *by_source.entry(v.key).or_insert(0) += 1;
    }
    let held = |k: &IpAddr| by_source.get(k).copied().unwrap_or(0);
    // The most slots, then the oldest (ties between sources go to the older connection).
    let Some(id) = st
        .sheddable
        .iter()
        .filter(|(_, v)| v.key != key && held(&v.key) > from_ip + 1)
        .max_by_key(|(_, v)| (held(&v.key), std::cmp::Reverse(v.since)))
        .map(|(&id, _)| id)
    else {
        return false;
    };
    let Some(v) = st.sheddable.remove(&id) else {
        return false;
    };
    st.handshaking = st.handshaking.saturating_sub(1);
    release(&mut st.per_ip, v.key);
    // Its thread's blocking read ends; it fails the handshake and drops its permit.
    let _ = v.stream.shutdown(std::net::Shutdown::Both);
    true
}

/// One admitted connection's slots; released when dropped. It holds a handshaking slot until
/// [`Permit::authenticated`] (or until it is shed, see [`Gate::admit_sheddable`]).
pub struct Permit {
    gate: Arc<Gate>,
    key: Option<IpAddr>,
    /// Its entry among the gate's sheddable connections.
    shed_id: Option<u64>,
    handshaking: bool,
    deadline: Instant,
}

impl Permit {
    /// When the handshake must be done.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The listener's counters.
    pub fn stats(&self) -> &ListenerStats {
        &self.gate.stats
    }

    /// The peer authenticated: gives back the handshaking slots (the connection slot stays).
    pub fn authenticated(&mut self) {
        if !std::mem::replace(&mut self.handshaking, false) {
            return;
        }
        let mut st = self.gate.lock();
        if let Some(id) = self.shed_id
            && st.sheddable.remove(&id).is_none()
        {
            // Shed: its handshaking slots were given back then.
            return;
        }
        st.handshaking = st.handshaking.saturating_sub(1);
        if let Some(k) = self.key {
            release(&mut st.per_ip, k);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.authenticated();
        let mut st = self.gate.lock();
        st.conns = st.conns.saturating_sub(1);
        if let Some(k) = self.key {
            release(&mut st.conns_per_ip, k);
        }
    }
}

/// Counts one connection of source `k` out of `m` (no entry is kept at zero).
fn release(m: &mut HashMap<IpAddr, usize>, k: IpAddr) {
    if let Some(n) = m.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&k);
        }
    }
}

/// A listening socket the loop can accept on.
pub trait Listener {
    /// The accepted connection.
    type Stream: Send + 'static;
    /// Accepts one connection: the stream and its source address (`None` for unix sockets).
    fn accept_one(&self) -> io::Result<(Self::Stream, Option<IpAddr>)>;
    /// A clone of `s` the gate may shut down to shed it ([`Gate::admit_sheddable`]); `None`:
    /// never shed.
    fn shed_handle(_s: &Self::Stream) -> Option<TcpStream> {
        None
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> io::Result<(TcpStream, Option<IpAddr>)> {
        let (s, a): (TcpStream, SocketAddr) = self.accept()?;
        Ok((s, Some(a.ip())))
    }
    fn shed_handle(s: &TcpStream) -> Option<TcpStream> {
        s.try_clone().ok()
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> io::Result<(UnixStream, Option<IpAddr>)> {
        let (s, _) = self.accept()?;
        Ok((s, None))
    }
}

/// What the loop does after an accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// Nothing to accept (a non-blocking listener): look at the stop flag, poll again.
    Idle,
    /// Interrupted: accept again at once.
    Again,
    /// Out of descriptors or memory: count, back off, accept again.
    Exhausted,
    /// Anything else (the peer reset before we accepted, ...): count, back off, accept again.
    Other,
}

/// Sorts an accept error. No error ends the loop.
pub fn classify(e: &io::Error) -> AcceptError {
    if e.kind() == io::ErrorKind::WouldBlock {
        return AcceptError::Idle;
    }
    if e.kind() == io::ErrorKind::Interrupted {
        return AcceptError::Again;
    }
    let exhausted = [
        rustix::io::Errno::MFILE,
        rustix::io::Errno::NFILE,
        rustix::io::Errno::NOBUFS,
        rustix::io::Errno::NOMEM,
    ];
    match e.raw_os_error() {
        Some(n) if exhausted.iter().any(|x| x.raw_os_error() == n) => AcceptError::Exhausted,
        _ => AcceptError::Other,
    }
}

/// A connection's work, run on its own thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Starts `job` on a new thread named `name`; on failure the job (and the connection it owns)
/// is dropped.
pub fn spawn_thread(name: &str, job: Job) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(job)
        .map(drop)
}

/// Accepts on `listener` until `stop` is set: each admitted connection is handed with its
/// [`Permit`] to `handle` on a thread made by `spawn` (normally [`spawn_thread`]); a refused one
/// is closed at once. Never returns early, never panics.
pub fn run<L, H, S>(listener: &L, gate: &Arc<Gate>, stop: &AtomicBool, handle: H, mut spawn: S)
where
    L: Listener,
    H: Fn(L::Stream, Permit) + Send + Sync + 'static,
    S: FnMut(Job) -> io::Result<()>,
{
    let handle = Arc::new(handle);
    let stats = gate.stats().clone();
    let backoff = gate.limits().accept_backoff;
    while !stop.load(Ordering::SeqCst) {
        let (s, ip) = match listener.accept_one() {
            Ok(c) => c,
            Err(e) => {
                match classify(&e) {
                    AcceptError::Idle => std::thread::sleep(IDLE_POLL),
                    AcceptError::Again => {}
                    AcceptError::Exhausted => {
                        ListenerStats::count(&stats.accept_exhausted);
                        tracing::warn!("accept: {e}; backing off");
                        std::thread::sleep(backoff);
                    }
                    AcceptError::Other => {
                        ListenerStats::count(&stats.accept_other);
                        std::thread::sleep(backoff);
                    }
                }
                continue;
            }
        };
        let permit = match gate.admit_sheddable(ip, L::shed_handle(&s)) {
            Ok(p) => p,
            Err(r) => {
                tracing::debug!("connection from {ip:?} refused: {r}");
                drop(s);
                continue;
            }
        };
        let h = handle.clone();
        if let Err(e) = spawn(Box::new(move || h(s, permit))) {
            ListenerStats::count(&stats.spawn_failed);
            tracing::warn!("no thread for a connection: {e}; closed it, backing off");
            std::thread::sleep(backoff);
        }
    }
}

/// Loopback clients for the listeners' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// A TCP connection to `to` from the loopback address `from`.
    pub(crate) fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
        use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&fd, &SocketAddr::from((from, 0))).unwrap();
        connect(&fd, &to).unwrap();
        TcpStream::from(fd)
    }

    /// Whether the other end closed `s` within `wait` (EOF or reset).
    pub(crate) fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
        use std::io::Read;
        s.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }

    /// A slowloris on `s`: announces a 65535-byte first frame and sends one byte every 200 ms
    /// (each read alone is quick); returns how long until the other end dropped it, or `None`
    /// if it was still connected after 4 s.
    pub(crate) fn trickle_until_dropped(s: &mut TcpStream) -> Option<Duration> {
        use std::io::Write;
        let started = std::time::Instant::now();
        s.write_all(&[0xff, 0xff]).unwrap();
        for _ in 0..20 {
            if closed_within(s, Duration::from_millis(200)) || s.write_all(&[0]).is_err() {
                return Some(started.elapsed());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Read;

    fn limits() -> Limits {
        Limits {
            max_handshaking: 3,
            max_handshaking_per_ip: 2,
            max_conns: 4,
            max_conns_per_ip: 3,
            handshake_deadline: Duration::from_secs(1),
            accept_backoff: Duration::from_millis(10),
        }
    }

    #[test]
    fn the_gate_counts_every_cap() {
        let stats = Arc::new(ListenerStats::default());
        let g = Gate::new(limits(), stats.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut p1 = g.admit(Some(a)).unwrap();
        let _p2 = g.admit(Some(a)).unwrap();
        assert_eq!(g.admit(Some(a)).err(), Some(Refusal::PerIp));
        // The same host as an IPv4-mapped address is the same source.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(g.admit(Some(mapped)).err(), Some(Refusal::PerIp));
        let _p3 = g.admit(Some(b)).unwrap();
        assert_eq!(g.admit(Some(b)).err(), Some(Refusal::Handshaking));
        // Authenticating frees the handshaking slots, not the connection slot.
        p1.authenticated();
        let _p4 = g.admit(Some(a)).unwrap();
        assert_eq!(g.load(), (4, 3));
        assert_eq!(g.admit(None).err(), Some(Refusal::Total));
        drop(p1);
        assert_eq!(g.load(), (3, 3));
        let s = stats.snapshot();
        assert_eq!(
            (
                s.accepted,
                s.refused_per_ip,
                s.refused_handshaking,
                s.refused_total
            ),
            (4, 2, 1, 1)
        );
    }

    /// A few sources holding every handshaking slot between them cannot starve another: its
    /// connection sheds the oldest of the source holding the most (that connection's peer sees
    /// it closed), while their own newcomers and sources holding one slot each shed nothing.
    #[test]
    fn a_source_holding_more_slots_is_shed_for_one_holding_fewer() {
        let stats = Arc::new(ListenerStats::default());
        let lim = Limits {
            max_handshaking: 4,
            max_handshaking_per_ip: 2,
            max_conns: 16,
            max_conns_per_ip: 8,
            ..limits()
        };
        let g = Gate::new(lim, stats.clone());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        // A connection from `ip`: (the client end, the permit or the refusal).
        let dial = |ip: &str| {
            let c = TcpStream::connect(to).unwrap();
            let (srv, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let r = g.admit_sheddable(Some(ip.parse().unwrap()), srv.try_clone().ok());
            (c, srv, r)
        };
        let closed = |c: &mut TcpStream| match c.read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        };
        let mut a1 = dial("10.0.0.1");
        std::thread::sleep(Duration::from_millis(5));
        let a2 = dial("10.0.0.1");
        std::thread::sleep(Duration::from_millis(5));
        let b1 = dial("10.0.0.2");
        let b2 = dial("10.0.0.2");
        assert!([&a1, &a2, &b1, &b2].iter().all(|d| d.2.is_ok()));
        assert_eq!(g.load(), (4, 4));
        // The full sources' own newcomers are refused.
        assert_eq!(dial("10.0.0.1").2.err(), Some(Refusal::PerIp));
        // A new source gets in; the oldest of a source holding two is shed.
        let c1 = dial("10.0.0.3");
        assert!(c1.2.is_ok());
        assert_eq!(stats.snapshot().shed_handshaking, 1);
        assert!(closed(&mut a1.0), "the oldest handshake was not shut down");
        // Its permit gives back nothing more when its thread drops it.
        drop(a1.2);
        assert_eq!(g.load(), (4, 4));
        // A holds one now, as C does: A's newcomer would hold two, B holds two: refused.
        assert_eq!(dial("10.0.0.1").2.err(), Some(Refusal::Handshaking));
        // Another new source sheds B's oldest; then every source holds one, and a fifth is
        // refused.
        let d1 = dial("10.0.0.4");
        assert!(d1.2.is_ok());
        let mut b1 = b1;
        assert!(closed(&mut b1.0));
        assert_eq!(dial("10.0.0.5").2.err(), Some(Refusal::Handshaking));
        assert_eq!(stats.snapshot().shed_handshaking, 2);
        // Authenticating gives back the slot as before.
        let mut c1 = c1;
        c1.2.as_mut().unwrap().authenticated();
        assert_eq!(g.load().1, 3);
        assert!(dial("10.0.0.5").2.is_ok());
        drop((a2, b2, d1));
    }

    #[test]
    fn one_source_cannot_hold_every_connection() {
        let stats = Arc::new(ListenerStats::default());
        let g = Gate::new(limits(), stats.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut p = g.admit(Some(a)).unwrap();
            p.authenticated();
            held.push(p);
        }
        assert_eq!(g.admit(Some(a)).err(), Some(Refusal::PerIpTotal));
        assert!(g.admit(Some("10.0.0.2".parse().unwrap())).is_ok());
        held.pop();
        assert!(g.admit(Some(a)).is_ok());
        assert_eq!(stats.snapshot().refused_per_ip_total, 1);
        assert_eq!(stats.refused(), 1);
    }

    #[test]
    fn ipv6_sources_count_by_64() {
        let g = Gate::new(limits(), Arc::new(ListenerStats::default()));
        let _a = g.admit(Some("2001:db8::1".parse().unwrap())).unwrap();
        let _b = g.admit(Some("2001:db8::2:3".parse().unwrap())).unwrap();
        assert_eq!(
            g.admit(Some("2001:db8::ffff".parse().unwrap())).err(),
            Some(Refusal::PerIp)
        );
        assert!(g.admit(Some("2001:db8:0:1::1".parse().unwrap())).is_ok());
    }

    /// Hands out scripted errors before each accept of the real listener.
    struct Faulty {
        inner: TcpListener,
        errors: Mutex<VecDeque<i32>>,
    }

    impl Listener for Faulty {
        type Stream = TcpStream;
        fn accept_one(&self) -> io::Result<(TcpStream, Option<IpAddr>)> {
            if let Some(n) = self.errors.lock().unwrap().pop_front() {
                return Err(io::Error::from_raw_os_error(n));
            }
            self.inner.accept_one()
        }
    }

    #[test]
    fn the_loop_survives_exhaustion_and_spawn_failure() {
        use rustix::io::Errno;
        let inner = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = inner.local_addr().unwrap();
        let errors = [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::CONNABORTED,
            Errno::INTR,
        ]
        .map(|e| e.raw_os_error());
        let l = Faulty {
            inner,
            errors: Mutex::new(errors.into()),
        };
        let stats = Arc::new(ListenerStats::default());
        let gate = Gate::new(limits(), stats.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, g) = (stop.clone(), gate.clone());
        let t = std::thread::spawn(move || {
            let mut calls = 0;
            run(
                &l,
                &g,
                &st,
                |mut s: TcpStream, _p| {
                    use std::io::Write;
                    let _ = s.write_all(b"hi");
                },
                // The first thread cannot be made.
                |job| {
                    calls += 1;
                    if calls == 1 {
                        return Err(io::Error::from_raw_os_error(Errno::AGAIN.raw_os_error()));
                    }
                    spawn_thread("test", job)
                },
            );
        });
        let read = |mut c: TcpStream| {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = Vec::new();
            let _ = c.read_to_end(&mut b);
            b
        };
        // The first connection's thread failed: it is closed without a word.
        assert_eq!(read(TcpStream::connect(addr).unwrap()), b"");
        // The loop is still accepting.
        assert_eq!(read(TcpStream::connect(addr).unwrap()), b"hi");
        let s = stats.snapshot();
        assert_eq!(
            (s.accept_exhausted, s.accept_other, s.spawn_failed),
            (4, 1, 1)
        );
        assert_eq!(s.accepted, 2);
        // Both permits were given back.
        let t0 = Instant::now();
        while gate.load() != (0, 0) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(gate.load(), (0, 0));
        stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        drop(TcpStream::connect(addr));
        t.join().unwrap();
    }

    #[test]
    fn accept_errors_are_sorted() {
        use rustix::io::Errno;
        let e = |n: Errno| classify(&io::Error::from_raw_os_error(n.raw_os_error()));
        assert_eq!(e(Errno::MFILE), AcceptError::Exhausted);
        assert_eq!(e(Errno::NFILE), AcceptError::Exhausted);
        assert_eq!(e(Errno::NOBUFS), AcceptError::Exhausted);
        assert_eq!(e(Errno::NOMEM), AcceptError::Exhausted);
        assert_eq!(e(Errno::AGAIN), AcceptError::Idle);
        assert_eq!(e(Errno::INTR), AcceptError::Again);
        assert_eq!(e(Errno::CONNABORTED), AcceptError::Other);
    }
}
