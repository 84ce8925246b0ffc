//! The component side: connect (inherited descriptors or attach), register, and keep answering
//! pings, usage requests and shutdown from a small background thread.

use crate::channel::{Channel, ClientFds, RecvError, SendError, Tx};
use crate::proto::{Level, Msg, Usage};
use crate::usage::UsageMeter;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Environment variable naming the inherited descriptors: `memfd,to_client,to_server`.
pub const ENV_FDS: &str = "SIGNAL_FDS";
/// Environment variable with the sequence id viscript gave this process.
pub const ENV_ID: &str = "SIGNAL_ID";
/// How often the responder thread bumps the heartbeat word when idle.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(250);

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The environment names descriptors that are not usable.
    #[error("{ENV_FDS}: {0}")]
    BadEnv(String),
    /// The descriptors were already taken by an earlier call.
    #[error("signal descriptors were already taken")]
    AlreadyTaken,
    /// The region or socket could not be used.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Registration could not be sent.
    #[error("register: {0}")]
    Send(#[from] SendError),
}

/// A connected, not yet registered client.
pub struct Client {
    chan: Channel,
    id: u64,
}

fn parse_fds(v: &str) -> Result<[RawFd; 3], ClientError> {
    let parts: Vec<&str> = v.split(',').collect();
    let bad = || ClientError::BadEnv(format!("expected three descriptor numbers, got {v:?}"));
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = [0; 3];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p.trim().parse::<RawFd>().map_err(|_| bad())?;
        if *o < 3 {
            return Err(bad());
        }
    }
    if out[0] == out[1] || out[1] == out[2] || out[0] == out[2] {
        return Err(bad());
    }
    Ok(out)
}

impl Client {
    /// Takes the descriptors viscript passed at spawn. `Ok(None)` when this process was not
    /// started by viscript (the variable is unset).
    pub fn from_env() -> Result<Option<Client>, ClientError> {
        let Ok(v) = std::env::var(ENV_FDS) else {
            return Ok(None);
        };
        let raw = parse_fds(&v)?;
        let id = std::env::var(ENV_ID)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(ClientError::AlreadyTaken);
        }
        let mut owned = Vec::with_capacity(3);
        for fd in raw {
            // SAFETY: F_GETFD on any integer is harmless; it tells whether the number is open.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            if rustix::io::fcntl_getfd(borrowed).is_err() {
                return Err(ClientError::BadEnv(format!("descriptor {fd} is not open")));
            }
            // SAFETY: the descriptor is open (checked above), was placed there for us by the
            // spawner, and TAKEN guarantees this is the only place that takes ownership of it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // Our own children must not inherit the signal connection.
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(io::Error::from)?;
            owned.push(fd);
        }
        let mut it = owned.into_iter();
        let (Some(memfd), Some(to_client), Some(to_server)) = (it.next(), it.next(), it.next())
        else {
            return Err(ClientError::BadEnv("descriptors missing".into()));
        };
        let chan = Channel::open(ClientFds {
            memfd,
            to_client,
            to_server,
        })?;
        Ok(Some(Client { chan, id }))
    }

    /// Connects to a viscript daemon through its control socket (for processes started
    /// elsewhere).
    pub fn attach(socket: &Path, name: &str) -> Result<Client, ClientError> {
        let (id, fds) = crate::attach::request(socket, name)?;
        Ok(Client {
            chan: Channel::open(fds)?,
            id,
        })
    }

    /// Builds a client from descriptors obtained some other way (tests).
    pub fn from_fds(fds: ClientFds, id: u64) -> Result<Client, ClientError> {
        Ok(Client {
            chan: Channel::open(fds)?,
            id,
        })
    }

    /// The sequence id viscript gave this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends `register` (readiness) and starts the responder thread.
    pub fn register(mut self, kind: &str, version: &str) -> Result<Session, ClientError> {
        self.chan.tx.send(&Msg::Register {
            id: self.id,
            kind: kind.to_owned(),
            pid: std::process::id(),
            version: version.to_owned(),
        })?;
        self.chan.beat();
        let Channel {
            tx, mut rx, region, ..
        } = self.chan;
        let shared = Arc::new(Shared {
            queries: Mutex::new(Vec::new()),
            tx: Mutex::new(tx),
            counters: Mutex::new(Vec::new()),
            shutdown: Mutex::new(None),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("signal".into())
            .spawn(move || {
                let mut meter = UsageMeter::new();
                while !s.stop.load(Ordering::Relaxed) {
                    region.beat(crate::shm::Side::Client);
                    match rx.recv_timeout(HEARTBEAT_PERIOD) {
                        Ok(None) => {}
                        Ok(Some(msg)) => s.handle(msg, &mut meter),
                        Err(RecvError::Decode(e)) => {
                            s.log(Level::Warn, &format!("signal: ignored a message: {e}"))
                        }
                        Err(RecvError::Corrupt(e)) => {
                            eprintln!("signal: connection to viscript lost: {e}");
                            s.lost.store(true, Ordering::SeqCst);
                            s.cv.notify_all();
                            return;
                        }
                    }
                }
            })?;
        Ok(Session { shared })
    }
}

/// Answers a named query with text.
pub type QueryHandler = Box<dyn Fn() -> String + Send + Sync>;

struct Shared {
    queries: Mutex<Vec<(String, QueryHandler)>>,
    tx: Mutex<Tx>,
    counters: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    shutdown: Mutex<Option<Instant>>,
    cv: Condvar,
    stop: AtomicBool,
    lost: AtomicBool,
    dropped: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn send(&self, msg: &Msg) -> bool {
        match lock(&self.tx).send(msg) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn log(&self, level: Level, line: &str) {
        self.send(&Msg::Log {
            level,
            line: line.to_owned(),
        });
    }

    fn handle(&self, msg: Msg, meter: &mut UsageMeter) {
        match msg {
            Msg::Ping { nonce } => {
                self.send(&Msg::Pong { nonce });
            }
            Msg::UsageRequest { nonce } => {
                let mut usage: Usage = meter.sample();
                usage.counters = lock(&self.counters)
                    .iter()
                    .take(crate::proto::MAX_COUNTERS)
                    .map(|(n, v)| (n.clone(), v.load(Ordering::Relaxed)))
                    .collect();
                self.send(&Msg::Usage { nonce, usage });
            }
            Msg::Query { nonce, name } => {
                let text = {
                    let q = lock(&self.queries);
                    match q.iter().find(|(n, _)| *n == name) {
                        Some((_, h)) => h(),
                        None => format!("this component has no {name:?} view"),
                    }
                };
                // Cut to what one message carries.
                let mut text = text;
                if text.len() > crate::proto::MAX_STR {
                    let mut cut = crate::proto::MAX_STR - 20;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push_str("\n[cut]");
                }
                self.send(&Msg::QueryReply { nonce, text });
            }
            Msg::Shutdown { deadline_ms } => {
                *lock(&self.shutdown) = Some(Instant::now() + Duration::from_millis(deadline_ms));
                self.cv.notify_all();
            }
            // Server-originated messages only; anything else from the server is ignored.
            _ => {}
        }
    }
}

/// A registered client. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// A named counter reported in every usage answer. Same name, same counter.
    pub fn counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut c = lock(&self.shared.counters);
        if let Some((_, v)) = c.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let v = Arc::new(AtomicU64::new(0));
        c.push((name.to_owned(), v.clone()));
        v
    }

    /// Answers viscript's `NAME` query (e.g. `routes`) with what `handler` returns.
    pub fn on_query(&self, name: &str, handler: QueryHandler) {
        let mut q = lock(&self.shared.queries);
        q.retain(|(n, _)| n != name);
        q.push((name.to_owned(), handler));
    }

    /// Sends a log line. Returns false when the ring is full (the line is counted as dropped).
    pub fn log(&self, level: Level, line: &str) -> bool {
        self.shared.send(&Msg::Log {
            level,
            line: line.to_owned(),
        })
    }

    /// Sends an event.
    pub fn event(&self, name: &str, data: &str) -> bool {
        self.shared.send(&Msg::Event {
            name: name.to_owned(),
            data: data.to_owned(),
        })
    }

    /// Messages that could not be sent (ring full or too big).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The deadline of a requested shutdown, if one was requested.
    pub fn shutdown_requested(&self) -> Option<Instant> {
        *lock(&self.shared.shutdown)
    }

    /// Whether the connection to viscript broke.
    pub fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// Blocks until shutdown is requested (returns its deadline), the connection is lost, or
    /// `timeout` passes (both `None`).
    pub fn wait_shutdown(&self, timeout: Option<Duration>) -> Option<Instant> {
        let start = Instant::now();
        let mut g = lock(&self.shared.shutdown);
        loop {
            if g.is_some() || self.lost() {
                return *g;
            }
            match timeout {
                None => g = self.shared.cv.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return None;
                    }
                    g = self
                        .shared
                        .cv
                        .wait_timeout(g, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Tells viscript the shutdown is under way.
    pub fn ack_shutdown(&self) -> bool {
        self.shared.send(&Msg::ShutdownAck)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_list_parsing() {
        assert_eq!(parse_fds("3,4,5").unwrap(), [3, 4, 5]);
        assert!(parse_fds("3,4").is_err());
        assert!(parse_fds("3,3,5").is_err());
        assert!(parse_fds("0,4,5").is_err());
        assert!(parse_fds("a,b,c").is_err());
    }
}
