//! The supervisor: one thread, one epoll, every child's pidfd, pipes and signal ring.
//!
//! Commands arrive over a bounded channel ([`Handle`]) with an eventfd doorbell; answers go back
//! on a per-request channel, some of them later (a ping answers when the pong arrives). All
//! timers use `Instant` (the monotonic clock), so a wall-clock jump changes nothing.

use crate::command::{Command, HELP};
use crate::config::{App, Config, Restart};
use crate::logbuf::{LineSplitter, LogBuf, Source};
use crate::proc::{self, Exit};
use rustix::event::epoll;
use rustix::process::Signal;
use serde_json::{Value, json};
use signal::{Channel, ClientFds, Msg, RecvError};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Requests queued to the supervisor at most; more block the sender (back-pressure).
const REQUEST_QUEUE: usize = 64;
/// Records taken from one ring per turn, so one chatty client cannot starve the others.
const MAX_MSGS_PER_TURN: usize = 1024;
/// Pipe reads per descriptor per turn (64 KiB each).
const MAX_READS_PER_TURN: usize = 4;
/// Longest sleep of the loop: orphans adopted as subreaper are reaped at least this often.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// How long `ping` and `ru` wait for the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// A daemon that stayed registered this long has its failure streak forgiven.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Lines a follower may lag before lines are dropped for it.
const FOLLOW_QUEUE: usize = 1024;
/// Bytes per ring.
const RING_CAP: usize = 256 * 1024;

const TOK_BELL: u64 = 0;
const K_RING: u64 = 1;
const K_OUT: u64 = 2;
const K_ERR: u64 = 3;
const K_PIDFD: u64 = 4;

fn token(id: u64, kind: u64) -> u64 {
    (id << 3) | kind
}

/// The answer to a command.
#[derive(Debug)]
pub struct Reply {
    /// Whether the command did what was asked.
    pub ok: bool,
    /// Human-readable text.
    pub text: String,
    /// The same for scripts.
    pub data: Value,
    /// For `logs -f`, `attach` and `start -a`: further lines until the receiver is dropped.
    pub follow: Option<Receiver<String>>,
}

impl Reply {
    fn ok(text: impl Into<String>, data: Value) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
            data,
            follow: None,
        }
    }
    fn err(text: impl Into<String>) -> Reply {
        let text = text.into();
        Reply {
            ok: false,
            data: json!({ "error": text }),
            text,
            follow: None,
        }
    }
}

enum Req {
    Cmd(Command, SyncSender<Reply>),
    Attach {
        name: String,
        pid: u32,
        reply: SyncSender<Result<(u64, ClientFds), String>>,
    },
}

/// A cloneable way to talk to a running supervisor.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Req>,
    bell: Arc<OwnedFd>,
}

impl Handle {
    fn send(&self, req: Req) -> Result<(), String> {
        self.tx
            .send(req)
            .map_err(|_| "the supervisor has stopped".to_string())?;
        let _ = rustix::io::write(self.bell.as_fd(), &1u64.to_ne_bytes());
        Ok(())
    }

    /// Runs one command and waits for its answer.
    pub fn call(&self, cmd: Command) -> Reply {
        let (tx, rx) = sync_channel(1);
        if let Err(e) = self.send(Req::Cmd(cmd, tx)) {
            return Reply::err(e);
        }
        rx.recv()
            .unwrap_or_else(|_| Reply::err("the supervisor stopped before answering"))
    }

    /// Creates a signal connection for a process started elsewhere (`pid`, seen through
    /// SO_PEERCRED) and returns its id and the client's descriptors.
    pub fn attach(&self, name: &str, pid: u32) -> Result<(u64, ClientFds), String> {
        let (tx, rx) = sync_channel(1);
        self.send(Req::Attach {
            name: name.to_owned(),
            pid,
            reply: tx,
        })?;
        rx.recv()
            .map_err(|_| "the supervisor stopped before answering".to_string())?
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the apps in `after` to be ready.
    Waiting,
    /// Spawned, not registered yet.
    Starting,
    /// Registered: ready.
    Ready,
    /// Being stopped.
    Stopping,
    /// Waiting out a restart backoff.
    Backoff,
    /// Crash-looping: slow retries.
    Degraded,
    /// Ended and not to be restarted.
    Exited,
    /// Ended with failure and not to be restarted.
    Failed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Backoff => "backoff",
            State::Degraded => "degraded",
            State::Exited => "exited",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Up,
    Down,
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Signal,
    Term,
    Kill,
}

struct Pipe {
    fd: OwnedFd,
    split: LineSplitter,
}

struct Proc {
    id: u64,
    app: String,
    args: Vec<String>,
    external: bool,
    state: State,
    want: Want,
    pid: Option<u32>,
    pidfd: Option<OwnedFd>,
    chan: Option<Channel>,
    out: Option<Pipe>,
    err: Option<Pipe>,
    spawned_at: Instant,
    registered_at: Option<Instant>,
    kind: String,
    version: String,
    restarts: u32,
    streak: u32,
    starts: VecDeque<Instant>,
    degraded: bool,
    next_start: Option<Instant>,
    stop: Option<(Phase, Instant)>,
    health: Option<(u64, Instant)>,
    missed: u32,
    next_ping: Instant,
    last_rtt: Option<Duration>,
    last_exit: Option<Exit>,
    logs: LogBuf,
    followers: Vec<SyncSender<String>>,
}

impl Proc {
    /// A component record with nothing running yet (or, attached, with the process given).
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u64,
        app: String,
        args: Vec<String>,
        external: bool,
        state: State,
        pid: Option<u32>,
        pidfd: Option<OwnedFd>,
        chan: Option<Channel>,
        s: &crate::config::Settings,
        now: Instant,
    ) -> Proc {
        Proc {
            id,
            app,
            args,
            external,
            state,
            want: Want::Up,
            pid,
            pidfd,
            chan,
            out: None,
            err: None,
            spawned_at: now,
            registered_at: None,
            kind: String::new(),
            version: String::new(),
            restarts: 0,
            streak: 0,
            starts: VecDeque::new(),
            degraded: false,
            next_start: None,
            stop: None,
            health: None,
            missed: 0,
            next_ping: now,
            last_rtt: None,
            last_exit: None,
            logs: LogBuf::new(s.log_lines, s.log_rate, now),
            followers: Vec::new(),
        }
    }

    fn alive(&self) -> bool {
        self.pid.is_some()
    }
    fn uptime(&self, now: Instant) -> Option<Duration> {
        self.alive()
            .then(|| now.saturating_duration_since(self.spawned_at))
    }
}

enum WaitKind {
    Query { nonce: u64 },
    Pong { nonce: u64, sent: Instant },
    Usage { nonce: u64 },
    Ready,
    Gone,
}

struct Waiter {
    id: u64,
    kind: WaitKind,
    reply: SyncSender<Reply>,
    deadline: Instant,
    attach: bool,
}

/// The supervisor state, owned by its thread.
pub struct Supervisor {
    cfg: Config,
    procs: BTreeMap<u64, Proc>,
    next_id: u64,
    epoll: OwnedFd,
    rx: Receiver<Req>,
    bell: Arc<OwnedFd>,
    waiters: Vec<Waiter>,
    quitting: Option<(Instant, Vec<SyncSender<Reply>>)>,
    nonce: u64,
    rng: u64,
    orphans_reaped: u64,
    buf: Vec<u8>,
    dirty: Vec<u64>,
}

/// Starts the supervisor thread for `cfg`, autostarting what the config says. Returns the
/// handle and the thread (which ends after `quit`).
pub fn start(cfg: Config) -> io::Result<(Handle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(REQUEST_QUEUE);
    let bell = Arc::new(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?);
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &epoll,
        bell.as_fd(),
        epoll::EventData::new_u64(TOK_BELL),
        epoll::EventFlags::IN,
    )?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
        | 1;
    let mut sup = Supervisor {
        cfg,
        procs: BTreeMap::new(),
        next_id: 1,
        epoll,
        rx,
        bell: bell.clone(),
        waiters: Vec::new(),
        quitting: None,
        nonce: 1,
        rng: seed,
        orphans_reaped: 0,
        buf: vec![0; 64 * 1024],
        dirty: Vec::new(),
    };
    // PDEATHSIG follows the thread that forked: children are spawned from this thread only,
    // and it lives as long as the supervisor.
    let th = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || sup.run())?;
    Ok((Handle { tx, bell }, th))
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{}d{}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

impl Supervisor {
    fn run(&mut self) {
        let auto: Vec<String> = self
            .cfg
            .start_order()
            .into_iter()
            .filter(|a| a.autostart)
            .map(|a| a.name.clone())
            .collect();
        for name in auto {
            if let Err(e) = self.start_app(&name, None) {
                eprintln!("viscript: autostart of {name} failed: {e}");
            }
        }
        let mut events = Vec::with_capacity(64);
        loop {
            let now = Instant::now();
            let timeout = if self.dirty.is_empty() {
                self.next_deadline(now)
                    .map(|d| d.saturating_duration_since(now))
                    .unwrap_or(MAX_IDLE)
                    .min(MAX_IDLE)
            } else {
                Duration::ZERO
            };
            events.clear();
            let ts = rustix::time::Timespec::try_from(timeout).ok();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                ts.as_ref(),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    eprintln!("viscript: epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            for ev in events.iter() {
                let t = ev.data.u64();
                if t == TOK_BELL {
                    let mut b = [0u8; 8];
                    let _ = rustix::io::read(self.bell.as_fd(), &mut b);
                    continue;
                }
                let (id, kind) = (t >> 3, t & 7);
                match kind {
                    K_RING => {
                        if let Some(ch) = self.procs.get_mut(&id).and_then(|p| p.chan.as_mut()) {
                            ch.rx.disarm();
                        }
                        self.dirty.push(id);
                    }
                    K_OUT | K_ERR => self.read_pipe(id, kind),
                    K_PIDFD => self.reap(),
                    _ => {}
                }
            }
            self.drain_rings();
            while let Ok(req) = self.rx.try_recv() {
                self.request(req);
            }
            self.reap();
            self.timers(Instant::now());
            if self.quit_done() {
                return;
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        for p in self.procs.values() {
            match p.state {
                State::Starting => min(p.spawned_at + self.cfg.settings.ready_timeout),
                State::Ready => min(p.next_ping),
                State::Backoff | State::Degraded => {
                    if let Some(t) = p.next_start {
                        min(t)
                    }
                }
                _ => {}
            }
            if let Some((_, t)) = p.stop {
                min(t);
            }
        }
        for w in &self.waiters {
            min(w.deadline);
        }
        if let Some((t, _)) = &self.quitting {
            min(*t + Duration::from_millis(100));
        }
        d.map(|t| t.max(now))
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64: good enough to spread restarts; no need for a crypto RNG.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let j = self.cfg.settings.backoff_jitter;
        d.mul_f64((1.0 + j * (2.0 * unit - 1.0)).max(0.0))
    }

    fn note(&mut self, id: u64, text: &str) {
        self.log(id, Source::Viscript, text);
    }

    fn log(&mut self, id: u64, source: Source, text: &str) {
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        let lines = p.logs.push(source, text, Instant::now());
        if p.followers.is_empty() {
            return;
        }
        for l in lines {
            let r = l.render();
            p.followers
                .retain(|f| !matches!(f.try_send(r.clone()), Err(TrySendError::Disconnected(_))));
        }
    }

    // ---- requests ---------------------------------------------------------------------

    fn request(&mut self, req: Req) {
        match req {
            Req::Cmd(cmd, reply) => self.command(cmd, reply),
            Req::Attach { name, pid, reply } => {
                let r = self.attach_external(&name, pid);
                let _ = reply.send(r);
            }
        }
    }

    fn command(&mut self, cmd: Command, reply: SyncSender<Reply>) {
        let now = Instant::now();
        if self.quitting.is_some() && !matches!(cmd, Command::List | Command::Quit) {
            let _ = reply.send(Reply::err("viscript is shutting down"));
            return;
        }
        let r = match cmd {
            Command::Apps => self.cmd_apps(),
            Command::Help(app) => self.cmd_help(app.as_deref()),
            Command::List => self.cmd_list(now),
            Command::Start {
                app,
                args,
                attach,
                wait,
            } => match self.start_app(&app, args) {
                Err(e) => Reply::err(e),
                Ok(id) => {
                    if wait {
                        let deadline =
                            now + self.cfg.settings.ready_timeout + Duration::from_secs(1);
                        self.waiters.push(Waiter {
                            id,
                            kind: WaitKind::Ready,
                            reply,
                            deadline,
                            attach,
                        });
                        return;
                    }
                    let p = &self.procs[&id];
                    let mut r = Reply::ok(
                        match p.pid {
                            Some(pid) => format!("started {} as {id} (pid {pid})", p.app),
                            None => format!(
                                "{} is {id}, waiting for {}",
                                p.app,
                                self.waiting_for(id).join(", ")
                            ),
                        },
                        json!({"id": id, "app": p.app, "pid": p.pid}),
                    );
                    if attach {
                        r.follow = Some(self.follow(id, 0));
                    }
                    r
                }
            },
            Command::Ping(id) => match self.ready_chan(id) {
                Err(e) => Reply::err(e),
                Ok(()) => {
                    let nonce = self.next_nonce();
                    let sent = Instant::now();
                    match self.send_to(id, &Msg::Ping { nonce }) {
                        Err(e) => Reply::err(e),
                        Ok(()) => {
                            self.waiters.push(Waiter {
                                id,
                                kind: WaitKind::Pong { nonce, sent },
                                reply,
                                deadline: now + ANSWER_TIMEOUT,
                                attach: false,
                            });
                            return;
                        }
                    }
                }
            },
            Command::Ru(id) => match self.ready_chan(id) {
                Err(e) => Reply::err(e),
                Ok(()) => {
                    let nonce = self.next_nonce();
                    match self.send_to(id, &Msg::UsageRequest { nonce }) {
                        Err(e) => Reply::err(e),
                        Ok(()) => {
                            self.waiters.push(Waiter {
                                id,
                                kind: WaitKind::Usage { nonce },
                                reply,
                                deadline: now + ANSWER_TIMEOUT,
                                attach: false,
                            });
                            return;
                        }
                    }
                }
            },
            Command::Shutdown(id) | Command::Kill(id) => {
                let kill = matches!(cmd, Command::Kill(_));
                match self.procs.get_mut(&id) {
                    None => Reply::err(self.unknown_id(id)),
                    Some(p) if !p.alive() => {
                        let was = p.state;
                        p.want = Want::Down;
                        p.next_start = None;
                        if matches!(was, State::Backoff | State::Degraded | State::Waiting) {
                            p.state = State::Exited;
                        }
                        Reply::ok(
                            format!("{id} ({}) is not running ({})", p.app, was.name()),
                            json!({"id": id, "state": p.state.name()}),
                        )
                    }
                    Some(p) => {
                        p.want = Want::Down;
                        if kill {
                            self.kill_now(id, "kill requested");
                        } else {
                            self.begin_stop(id, now);
                        }
                        let deadline = now + self.stop_budget();
                        self.waiters.push(Waiter {
                            id,
                            kind: WaitKind::Gone,
                            reply,
                            deadline,
                            attach: false,
                        });
                        return;
                    }
                }
            }
            Command::Restart(id) => match self.procs.get_mut(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) if p.external => Reply::err(format!(
                    "{id} ({}) was started outside viscript; it cannot be restarted from here",
                    p.app
                )),
                Some(p) => {
                    p.degraded = false;
                    p.streak = 0;
                    p.starts.clear();
                    if p.alive() {
                        p.want = Want::Restart;
                        self.begin_stop(id, now);
                    } else {
                        p.want = Want::Up;
                        p.next_start = None;
                        p.restarts += 1;
                        if let Err(e) = self.spawn(id) {
                            let _ = reply.send(Reply::err(e));
                            return;
                        }
                    }
                    let deadline = now + self.stop_budget() + self.cfg.settings.ready_timeout;
                    self.waiters.push(Waiter {
                        id,
                        kind: WaitKind::Ready,
                        reply,
                        deadline,
                        attach: false,
                    });
                    return;
                }
            },
            Command::Logs { id, n, follow } => match self.procs.get(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) => {
                    let lines: Vec<String> = p.logs.tail(n).map(|l| l.render()).collect();
                    let mut r = Reply::ok(lines.join("\n"), json!({"id": id, "lines": lines}));
                    if follow {
                        r.follow = Some(self.follow(id, 0));
                    }
                    r
                }
            },
            Command::Attach(id) => match self.procs.get(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) => {
                    let text = format!("attached to {id} ({}); press Enter to detach", p.app);
                    let mut r = Reply::ok(text, json!({"id": id}));
                    r.follow = Some(self.follow(id, 10));
                    r
                }
            },
            Command::Inspect { what, id } => {
                let id = match id {
                    Some(id) => Some(id),
                    None => self
                        .procs
                        .values()
                        .find(|p| p.kind == "skywire-control" && p.state == State::Ready)
                        .map(|p| p.id),
                };
                match id {
                    None => Reply::err(
                        "no skywire-control is running; start it (`apps` lists it) or name a component id",
                    ),
                    Some(id) => match self.ready_chan(id) {
                        Err(e) => Reply::err(e),
                        Ok(()) => {
                            let nonce = self.next_nonce();
                            match self.send_to(id, &Msg::Query { nonce, name: what }) {
                                Err(e) => Reply::err(e),
                                Ok(()) => {
                                    self.waiters.push(Waiter {
                                        id,
                                        kind: WaitKind::Query { nonce },
                                        reply,
                                        deadline: now + ANSWER_TIMEOUT,
                                        attach: false,
                                    });
                                    return;
                                }
                            }
                        }
                    },
                }
            }
            Command::Quit => {
                match &mut self.quitting {
                    Some((_, replies)) => replies.push(reply),
                    None => {
                        for p in self.procs.values_mut() {
                            p.want = Want::Down;
                            p.next_start = None;
                            if matches!(p.state, State::Backoff | State::Degraded | State::Waiting)
                            {
                                p.state = State::Exited;
                            }
                        }
                        self.quitting = Some((now, vec![reply]));
                    }
                }
                return;
            }
        };
        let _ = reply.send(r);
    }

    fn stop_budget(&self) -> Duration {
        self.cfg.settings.shutdown_grace + self.cfg.settings.term_grace + Duration::from_secs(2)
    }

    fn follow(&mut self, id: u64, history: usize) -> Receiver<String> {
        let (tx, rx) = sync_channel(FOLLOW_QUEUE);
        if let Some(p) = self.procs.get_mut(&id) {
            for l in p.logs.tail(history) {
                let _ = tx.try_send(l.render());
            }
            p.followers.push(tx);
        }
        rx
    }

    fn unknown_id(&self, id: u64) -> String {
        format!("no component with id {id}; `list` shows the running ones")
    }

    fn next_nonce(&mut self) -> u64 {
        self.nonce += 1;
        self.nonce
    }

    fn ready_chan(&self, id: u64) -> Result<(), String> {
        let Some(p) = self.procs.get(&id) else {
            return Err(self.unknown_id(id));
        };
        if p.chan.is_none() || p.state != State::Ready {
            return Err(match p.state {
                State::Starting | State::Waiting => {
                    format!(
                        "{id} ({}) has not registered yet; wait a moment or see `logs {id}`",
                        p.app
                    )
                }
                s => format!(
                    "{id} ({}) is {}; `restart {id}` starts it again",
                    p.app,
                    s.name()
                ),
            });
        }
        Ok(())
    }

    fn send_to(&mut self, id: u64, msg: &Msg) -> Result<(), String> {
        let Some(ch) = self.procs.get_mut(&id).and_then(|p| p.chan.as_mut()) else {
            return Err(format!("{id} has no signal connection"));
        };
        ch.tx
            .send(msg)
            .map_err(|e| format!("cannot send to {id}: {e}"))
    }

    fn cmd_apps(&self) -> Reply {
        let mut text = String::new();
        let mut list = Vec::new();
        let w = self
            .cfg
            .apps
            .iter()
            .map(|a| a.name.len())
            .max()
            .unwrap_or(0);
        for a in &self.cfg.apps {
            let flags = format!(
                "{}{}",
                if a.daemon { "daemon" } else { "" },
                if a.autostart { " autostart" } else { "" }
            );
            text.push_str(&format!(
                "{:w$}  {}{}\n",
                a.name,
                a.desc.lines().next().unwrap_or(""),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", flags.trim())
                }
            ));
            list.push(json!({"name": a.name, "desc": a.desc, "daemon": a.daemon, "autostart": a.autostart,
                "path": a.path, "default_args": a.default_args, "restart": a.restart.as_str(), "after": a.after}));
        }
        if self.cfg.apps.is_empty() {
            text = format!("no apps in {}", self.cfg.path.display());
        }
        Reply::ok(text.trim_end().to_string(), Value::Array(list))
    }

    fn cmd_help(&self, app: Option<&str>) -> Reply {
        match app {
            None => Reply::ok(HELP, json!({"help": HELP})),
            Some(name) => match self.cfg.app(name) {
                None => Reply::err(format!("no app named {name:?}; try `apps`")),
                Some(a) => {
                    let text = format!(
                        "{}: {}\npath: {}\ndefault args: {:?}\ndaemon: {}  restart: {}  autostart: {}{}\n{}",
                        a.name,
                        a.desc,
                        a.path.display(),
                        a.default_args,
                        a.daemon,
                        a.restart.as_str(),
                        a.autostart,
                        if a.after.is_empty() {
                            String::new()
                        } else {
                            format!("  after: {}", a.after.join(", "))
                        },
                        a.help.trim_end()
                    );
                    Reply::ok(
                        text.trim_end().to_string(),
                        json!({"name": a.name, "desc": a.desc, "help": a.help}),
                    )
                }
            },
        }
    }

    fn waiting_for(&self, id: u64) -> Vec<String> {
        let Some(p) = self.procs.get(&id) else {
            return Vec::new();
        };
        let Some(app) = self.cfg.app(&p.app) else {
            return Vec::new();
        };
        app.after
            .iter()
            .filter(|d| !self.app_ready(d))
            .cloned()
            .collect()
    }

    fn cmd_list(&self, now: Instant) -> Reply {
        let mut rows = vec![format!(
            "{:>4}  {:<20} {:>7}  {:<9} {:>8} {:>4}  {}",
            "ID", "NAME", "PID", "STATE", "UPTIME", "RST", "ARGS"
        )];
        let mut data = Vec::new();
        for p in self.procs.values() {
            let uptime = p.uptime(now);
            let mut state = p.state.name().to_string();
            if p.state == State::Waiting {
                state = format!("waiting for {}", self.waiting_for(p.id).join(","));
            }
            rows.push(format!(
                "{:>4}  {:<20} {:>7}  {:<9} {:>8} {:>4}  {}",
                p.id,
                p.app,
                p.pid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                state,
                uptime.map(fmt_dur).unwrap_or_else(|| "-".into()),
                p.restarts,
                shell_join(&p.args)
            ));
            data.push(json!({
                "id": p.id, "app": p.app, "pid": p.pid, "state": p.state.name(), "args": p.args,
                "uptime_ms": uptime.map(|d| d.as_millis() as u64), "restarts": p.restarts,
                "kind": p.kind, "version": p.version, "external": p.external,
                "last_exit": p.last_exit.map(|e| e.to_string()),
                "ping_rtt_us": p.last_rtt.map(|d| d.as_micros() as u64),
                "heartbeat": p.chan.as_ref().map(|c| c.peer_heartbeat()),
                "log_suppressed": p.logs.suppressed_total(),
            }));
        }
        let text = if self.procs.is_empty() {
            "nothing running; `apps` lists what can be started".to_string()
        } else {
            rows.join("\n")
        };
        Reply::ok(text, Value::Array(data))
    }

    // ---- lifecycle --------------------------------------------------------------------

    fn app_ready(&self, name: &str) -> bool {
        self.procs
            .values()
            .any(|p| p.app == name && p.state == State::Ready)
    }

    fn app_pending(&self, name: &str) -> bool {
        self.procs.values().any(|p| {
            p.app == name
                && matches!(
                    p.state,
                    State::Ready | State::Starting | State::Waiting | State::Backoff
                )
        })
    }

    /// Creates a component for `app` and starts it (or queues it behind its `after` apps,
    /// starting those that are not up).
    fn start_app(&mut self, name: &str, args: Option<Vec<String>>) -> Result<u64, String> {
        let Some(app) = self.cfg.app(name).cloned() else {
            return Err(format!("no app named {name:?}; try `apps`"));
        };
        for dep in &app.after {
            if !self.app_pending(dep) {
                self.start_app(dep, None)
                    .map_err(|e| format!("{name} needs {dep}: {e}"))?;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        self.procs.insert(
            id,
            Proc::new(
                id,
                app.name.clone(),
                args.unwrap_or_else(|| app.default_args.clone()),
                false,
                State::Waiting,
                None,
                None,
                None,
                &self.cfg.settings,
                now,
            ),
        );
        if app.after.iter().all(|d| self.app_ready(d)) {
            if let Err(e) = self.spawn(id) {
                self.procs.remove(&id);
                return Err(e);
            }
        } else {
            self.note(id, &format!("waiting for {}", app.after.join(", ")));
        }
        Ok(id)
    }

    fn spawn(&mut self, id: u64) -> Result<(), String> {
        let Some(p) = self.procs.get(&id) else {
            return Err(self.unknown_id(id));
        };
        let Some(app): Option<App> = self.cfg.app(&p.app).cloned() else {
            return Err(format!("app {} is no longer in the config", p.app));
        };
        let (chan, fds) = Channel::create(RING_CAP).map_err(|e| format!("signal ring: {e}"))?;
        let args = p.args.clone();
        let now = Instant::now();
        let sp = match proc::spawn(&app.path, &args, &app.env, id, &fds) {
            Ok(sp) => sp,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", app.name);
                self.note(id, &msg);
                if let Some(p) = self.procs.get_mut(&id) {
                    p.state = State::Failed;
                }
                return Err(msg);
            }
        };
        drop(fds);
        let reg = |fd: &OwnedFd, kind| {
            epoll::add(
                &self.epoll,
                fd.as_fd(),
                epoll::EventData::new_u64(token(id, kind)),
                epoll::EventFlags::IN,
            )
        };
        let res = reg(&sp.pidfd, K_PIDFD)
            .and_then(|_| reg(&sp.stdout, K_OUT))
            .and_then(|_| reg(&sp.stderr, K_ERR))
            .and_then(|_| {
                epoll::add(
                    &self.epoll,
                    chan.rx.bell_fd(),
                    epoll::EventData::new_u64(token(id, K_RING)),
                    epoll::EventFlags::IN,
                )
            });
        if let Err(e) = res {
            let _ = proc::signal_pidfd(sp.pidfd.as_fd(), Signal::KILL);
            eprintln!("viscript: epoll registration for {id} failed: {e}");
        }
        let Some(p) = self.procs.get_mut(&id) else {
            return Ok(());
        };
        p.pid = Some(sp.pid);
        p.pidfd = Some(sp.pidfd);
        p.out = Some(Pipe {
            fd: sp.stdout,
            split: LineSplitter::default(),
        });
        p.err = Some(Pipe {
            fd: sp.stderr,
            split: LineSplitter::default(),
        });
        p.chan = Some(chan);
        p.spawned_at = now;
        p.registered_at = None;
        p.state = State::Starting;
        p.stop = None;
        p.health = None;
        p.missed = 0;
        p.next_start = None;
        p.starts.push_back(now);
        let pid = sp.pid;
        let line = format!(
            "started pid {pid}: {} {}",
            app.path.display(),
            shell_join(&args)
        );
        self.note(id, &line);
        // The ring may already hold the registration.
        self.dirty.push(id);
        Ok(())
    }

    fn attach_external(&mut self, name: &str, pid: u32) -> Result<(u64, ClientFds), String> {
        if self.quitting.is_some() {
            return Err("viscript is shutting down".into());
        }
        let (chan, fds) = Channel::create(RING_CAP).map_err(|e| format!("signal ring: {e}"))?;
        let pidfd = proc::pidfd_open(pid).map_err(|e| format!("pidfd for {pid}: {e}"))?;
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        epoll::add(
            &self.epoll,
            pidfd.as_fd(),
            epoll::EventData::new_u64(token(id, K_PIDFD)),
            epoll::EventFlags::IN,
        )
        .map_err(|e| e.to_string())?;
        epoll::add(
            &self.epoll,
            chan.rx.bell_fd(),
            epoll::EventData::new_u64(token(id, K_RING)),
            epoll::EventFlags::IN,
        )
        .map_err(|e| e.to_string())?;
        self.procs.insert(
            id,
            Proc::new(
                id,
                name.to_owned(),
                Vec::new(),
                true,
                State::Starting,
                Some(pid),
                Some(pidfd),
                Some(chan),
                &self.cfg.settings,
                now,
            ),
        );
        self.note(id, &format!("attached external process {pid} as {name}"));
        // Arms the ring (and reads a registration that may already be there).
        self.dirty.push(id);
        Ok((id, fds))
    }

    fn begin_stop(&mut self, id: u64, now: Instant) {
        let grace = self.cfg.settings.shutdown_grace;
        let term = self.cfg.settings.term_grace;
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        if !p.alive() {
            return;
        }
        if p.state == State::Stopping {
            return;
        }
        p.state = State::Stopping;
        let sent = p.chan.as_mut().is_some_and(|c| {
            c.tx.send(&Msg::Shutdown {
                deadline_ms: grace.as_millis() as u64,
            })
            .is_ok()
        });
        if sent && p.registered_at.is_some() {
            p.stop = Some((Phase::Signal, now + grace));
            self.note(
                id,
                &format!("shutdown requested (SIGTERM in {})", fmt_dur(grace)),
            );
        } else {
            p.stop = Some((Phase::Term, now + term));
            if let Some(pid) = p.pid {
                proc::signal_group(pid, Signal::TERM);
            }
            self.note(id, "not registered: sent SIGTERM");
        }
    }

    fn kill_now(&mut self, id: u64, why: &str) {
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        if let Some(pid) = p.pid {
            if let Some(fd) = &p.pidfd {
                let _ = proc::signal_pidfd(fd.as_fd(), Signal::KILL);
            }
            if !p.external {
                proc::signal_group(pid, Signal::KILL);
            }
            p.state = State::Stopping;
            p.stop = Some((Phase::Kill, Instant::now() + Duration::from_secs(5)));
            self.note(id, &format!("{why}: sent SIGKILL"));
        }
    }

    fn timers(&mut self, now: Instant) {
        let s = self.cfg.settings.clone();
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            let Some(p) = self.procs.get_mut(&id) else {
                continue;
            };
            match p.state {
                State::Starting if now >= p.spawned_at + s.ready_timeout => {
                    if p.external {
                        p.state = State::Ready;
                    } else {
                        let why = format!("did not register within {}", fmt_dur(s.ready_timeout));
                        self.kill_now(id, &why);
                    }
                }
                State::Ready if now >= p.next_ping => {
                    if p.health.is_some() {
                        p.missed += 1;
                    }
                    if p.missed >= s.ping_failures.max(1) {
                        let why = format!("missed {} pings", p.missed);
                        if p.external {
                            p.state = State::Failed;
                            self.note(id, &why);
                        } else {
                            self.kill_now(id, &why);
                        }
                        continue;
                    }
                    p.next_ping = now + s.ping_interval;
                    if p.health.is_none() {
                        self.nonce += 1;
                        let nonce = self.nonce;
                        if let Some(p) = self.procs.get_mut(&id)
                            && p.chan
                                .as_mut()
                                .is_some_and(|c| c.tx.send(&Msg::Ping { nonce }).is_ok())
                        {
                            p.health = Some((nonce, now));
                        }
                    }
                }
                State::Backoff | State::Degraded if p.next_start.is_some_and(|t| now >= t) => {
                    p.next_start = None;
                    p.restarts += 1;
                    if let Err(e) = self.spawn(id) {
                        self.note(id, &e);
                        self.schedule_restart(id, now, false);
                    }
                }
                State::Waiting => {
                    let deps = self
                        .cfg
                        .app(&p.app)
                        .map(|a| a.after.clone())
                        .unwrap_or_default();
                    if deps.iter().all(|d| self.app_ready(d))
                        && let Err(e) = self.spawn(id)
                    {
                        self.note(id, &e);
                    }
                }
                _ => {}
            }
            let Some(p) = self.procs.get_mut(&id) else {
                continue;
            };
            if let Some((phase, deadline)) = p.stop
                && now >= deadline
            {
                match (phase, p.pid) {
                    (Phase::Signal, Some(pid)) => {
                        p.stop = Some((Phase::Term, now + s.term_grace));
                        if p.external {
                            if let Some(fd) = &p.pidfd {
                                let _ = proc::signal_pidfd(fd.as_fd(), Signal::TERM);
                            }
                        } else {
                            proc::signal_group(pid, Signal::TERM);
                        }
                        self.note(
                            id,
                            &format!("no exit within {}: sent SIGTERM", fmt_dur(s.shutdown_grace)),
                        );
                    }
                    (Phase::Term, _) => {
                        let why = format!("no exit within {} of SIGTERM", fmt_dur(s.term_grace));
                        self.kill_now(id, &why);
                    }
                    (Phase::Kill, _) => {
                        // SIGKILL was not enough (uninterruptible sleep): try again.
                        self.kill_now(id, "still alive");
                    }
                    (Phase::Signal, None) => p.stop = None,
                }
            }
        }
        // Answers that never came.
        let mut i = 0;
        while i < self.waiters.len() {
            if now >= self.waiters[i].deadline {
                let w = self.waiters.swap_remove(i);
                let what = match w.kind {
                    WaitKind::Pong { .. } => "no pong",
                    WaitKind::Query { .. } => "no answer",
                    WaitKind::Usage { .. } => "no usage report",
                    WaitKind::Ready => "not registered",
                    WaitKind::Gone => "still running",
                };
                let _ = w.reply.send(Reply::err(format!(
                    "{}: {what} after {}",
                    w.id,
                    fmt_dur(now - (w.deadline - ANSWER_TIMEOUT).min(now))
                )));
            } else {
                i += 1;
            }
        }
        if self.quitting.is_some() {
            self.quit_step(now);
        }
    }

    fn depth(&self, app: &str, seen: usize) -> usize {
        if seen > self.cfg.apps.len() {
            return 0;
        }
        self.cfg.app(app).map_or(0, |a| {
            a.after
                .iter()
                .map(|d| 1 + self.depth(d, seen + 1))
                .max()
                .unwrap_or(0)
        })
    }

    /// Stops components in reverse `after` order: the deepest dependents first.
    fn quit_step(&mut self, now: Instant) {
        let alive: Vec<(u64, usize)> = self
            .procs
            .values()
            .filter(|p| p.alive())
            .map(|p| (p.id, self.depth(&p.app, 0)))
            .collect();
        let Some(top) = alive.iter().map(|(_, d)| *d).max() else {
            return;
        };
        for (id, d) in alive {
            if d == top {
                self.begin_stop(id, now);
            }
        }
    }

    fn quit_done(&mut self) -> bool {
        let Some((since, _)) = &self.quitting else {
            return false;
        };
        let all_down = self.procs.values().all(|p| !p.alive());
        let overdue = since.elapsed() > self.stop_budget() * 2;
        if !all_down && !overdue {
            return false;
        }
        let n = self.procs.len();
        if let Some((_, replies)) = self.quitting.take() {
            for r in replies {
                let _ = r.send(Reply::ok(
                    if all_down {
                        format!("stopped; {n} components ended")
                    } else {
                        "stopped; some processes did not exit".into()
                    },
                    json!({"stopped": all_down}),
                ));
            }
        }
        true
    }

    // ---- I/O --------------------------------------------------------------------------

    fn read_pipe(&mut self, id: u64, kind: u64) {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(p) = self.procs.get_mut(&id) else {
                return;
            };
            let pipe = if kind == K_OUT {
                &mut p.out
            } else {
                &mut p.err
            };
            let Some(pp) = pipe.as_mut() else { return };
            let n = match rustix::io::read(&pp.fd, &mut self.buf) {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => None,
            };
            let Some(n) = n else {
                self.close_pipe(id, kind);
                return;
            };
            let mut lines = Vec::new();
            pp.split.feed(&self.buf[..n], |l| lines.push(l.to_owned()));
            let src = if kind == K_OUT {
                Source::Stdout
            } else {
                Source::Stderr
            };
            for l in lines {
                self.log(id, src, &l);
            }
        }
    }

    fn close_pipe(&mut self, id: u64, kind: u64) {
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        let pipe = if kind == K_OUT {
            p.out.take()
        } else {
            p.err.take()
        };
        if let Some(mut pp) = pipe {
            let _ = epoll::delete(&self.epoll, pp.fd.as_fd());
            let mut rest = Vec::new();
            pp.split.finish(|l| rest.push(l.to_owned()));
            let src = if kind == K_OUT {
                Source::Stdout
            } else {
                Source::Stderr
            };
            for l in rest {
                self.log(id, src, &l);
            }
        }
    }

    fn drain_rings(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for id in dirty {
            let mut msgs = Vec::new();
            let mut broken = None;
            let mut more = false;
            {
                let Some(ch) = self.procs.get_mut(&id).and_then(|p| p.chan.as_mut()) else {
                    continue;
                };
                ch.beat();
                for _ in 0..MAX_MSGS_PER_TURN {
                    match ch.rx.try_recv() {
                        Ok(Some(m)) => msgs.push(Ok(m)),
                        Ok(None) => break,
                        Err(e) if e.is_fatal() => {
                            broken = Some(e);
                            break;
                        }
                        Err(e) => msgs.push(Err(e)),
                    }
                }
                if broken.is_none() {
                    match ch.rx.arm() {
                        Ok(true) => {}
                        Ok(false) => more = true,
                        Err(e) => broken = Some(e),
                    }
                }
            }
            for m in msgs {
                match m {
                    Ok(m) => self.message(id, m),
                    Err(e) => self.note(id, &format!("ignored a message: {e}")),
                }
            }
            if let Some(e) = broken {
                self.broken_ring(id, e);
            } else if more && !self.dirty.contains(&id) {
                self.dirty.push(id);
            }
        }
    }

    fn broken_ring(&mut self, id: u64, e: RecvError) {
        self.note(
            id,
            &format!("signal ring broken ({e}); dropping the connection"),
        );
        if let Some(p) = self.procs.get_mut(&id)
            && let Some(ch) = p.chan.take()
        {
            let _ = epoll::delete(&self.epoll, ch.rx.bell_fd());
        }
        self.kill_now(id, "protocol violation");
    }

    fn message(&mut self, id: u64, m: Msg) {
        let now = Instant::now();
        match m {
            Msg::Register {
                kind, version, pid, ..
            } => {
                let Some(p) = self.procs.get_mut(&id) else {
                    return;
                };
                if p.registered_at.is_some() {
                    self.note(id, "registered twice; ignored");
                    return;
                }
                let took = now.saturating_duration_since(p.spawned_at);
                p.registered_at = Some(now);
                p.kind = kind.clone();
                p.version = version.clone();
                if p.state == State::Starting {
                    p.state = State::Ready;
                }
                p.next_ping = now + self.cfg.settings.ping_interval;
                let mismatch = p.pid.is_some_and(|x| x != pid);
                self.note(
                    id,
                    &format!(
                        "registered: {kind} {version} (pid {pid}) in {:.1} ms",
                        took.as_secs_f64() * 1e3
                    ),
                );
                if mismatch {
                    self.note(id, "note: registered pid differs from the started pid");
                }
                self.resolve(
                    id,
                    |k| matches!(k, WaitKind::Ready),
                    |sup, w| sup.ready_reply(w.id, w.attach),
                );
            }
            Msg::Pong { nonce } => {
                let mut answered = false;
                let mut i = 0;
                while i < self.waiters.len() {
                    let w = &self.waiters[i];
                    if let (true, WaitKind::Pong { nonce: n, sent }) = (w.id == id, &w.kind)
                        && *n == nonce
                    {
                        let rtt = now.saturating_duration_since(*sent);
                        let w = self.waiters.swap_remove(i);
                        let _ = w.reply.send(Reply::ok(
                            format!("pong from {id} in {:.1} us", rtt.as_secs_f64() * 1e6),
                            json!({"id": id, "rtt_us": rtt.as_secs_f64() * 1e6}),
                        ));
                        if let Some(p) = self.procs.get_mut(&id) {
                            p.last_rtt = Some(rtt);
                        }
                        answered = true;
                        break;
                    }
                    i += 1;
                }
                if !answered
                    && let Some(p) = self.procs.get_mut(&id)
                    && let Some((n, sent)) = p.health
                    && n == nonce
                {
                    p.last_rtt = Some(now.saturating_duration_since(sent));
                    p.health = None;
                    p.missed = 0;
                }
            }
            Msg::Usage { nonce, usage } => {
                let Some(pos) = self.waiters.iter().position(|w| {
                    w.id == id && matches!(w.kind, WaitKind::Usage { nonce: n } if n == nonce)
                }) else {
                    return;
                };
                let w = self.waiters.swap_remove(pos);
                let mut text = format!(
                    "cpu {:.1}%  rss {}  threads {}  uptime {}",
                    usage.cpu_percent,
                    fmt_bytes(usage.rss_bytes),
                    usage.threads,
                    fmt_dur(Duration::from_millis(usage.uptime_ms))
                );
                for (k, v) in &usage.counters {
                    text.push_str(&format!("\n  {k} {v}"));
                }
                let counters: serde_json::Map<String, Value> = usage
                    .counters
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                let _ = w.reply.send(Reply::ok(
                    text,
                    json!({"id": id, "cpu_percent": usage.cpu_percent, "rss_bytes": usage.rss_bytes,
                        "threads": usage.threads, "uptime_ms": usage.uptime_ms, "counters": counters}),
                ));
            }
            Msg::Ping { nonce } => {
                let _ = self.send_to(id, &Msg::Pong { nonce });
            }
            Msg::QueryReply { nonce, text } => {
                if let Some(pos) = self.waiters.iter().position(|w| {
                    w.id == id && matches!(w.kind, WaitKind::Query { nonce: n } if n == nonce)
                }) {
                    let w = self.waiters.swap_remove(pos);
                    let _ = w
                        .reply
                        .send(Reply::ok(text.clone(), json!({"id": id, "text": text})));
                }
            }
            Msg::ShutdownAck => self.note(id, "acknowledged shutdown"),
            Msg::Log { level, line } => self.log(id, Source::Ring, &format!("[{level}] {line}")),
            Msg::Event { name, data } => {
                self.log(id, Source::Ring, &format!("event {name}: {data}"))
            }
            other => self.note(id, &format!("ignored unexpected {other:?}")),
        }
    }

    fn ready_reply(&mut self, id: u64, attach: bool) -> Reply {
        let Some(p) = self.procs.get(&id) else {
            return Reply::err(self.unknown_id(id));
        };
        let took = p
            .registered_at
            .map(|r| r.saturating_duration_since(p.spawned_at))
            .unwrap_or_default();
        let mut r = Reply::ok(
            format!(
                "started {} as {id} (pid {}), registered in {:.1} ms",
                p.app,
                p.pid.unwrap_or(0),
                took.as_secs_f64() * 1e3
            ),
            json!({"id": id, "app": p.app, "pid": p.pid, "ready_ms": took.as_secs_f64() * 1e3}),
        );
        if attach {
            r.follow = Some(self.follow(id, 20));
        }
        r
    }

    fn resolve(
        &mut self,
        id: u64,
        pick: impl Fn(&WaitKind) -> bool,
        answer: impl Fn(&mut Self, &Waiter) -> Reply,
    ) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].id == id && pick(&self.waiters[i].kind) {
                let w = self.waiters.swap_remove(i);
                let r = answer(self, &w);
                let _ = w.reply.send(r);
            } else {
                i += 1;
            }
        }
    }

    fn reap(&mut self) {
        while let Some((pid, exit)) = proc::reap_one() {
            let id = self
                .procs
                .values()
                .find(|p| p.pid == Some(pid) && !p.external)
                .map(|p| p.id);
            match id {
                Some(id) => self.exited(id, exit),
                None => self.orphans_reaped += 1,
            }
        }
        // External processes are not our children: their pidfd turns readable when they end.
        let ext: Vec<u64> = self
            .procs
            .values()
            .filter(|p| p.external && p.alive())
            .filter(|p| {
                p.pidfd.as_ref().is_some_and(|fd| {
                    let mut f = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                    matches!(rustix::event::poll(&mut f, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
                })
            })
            .map(|p| p.id)
            .collect();
        for id in ext {
            self.exited(id, Exit::Code(-1));
        }
    }

    fn exited(&mut self, id: u64, exit: Exit) {
        let now = Instant::now();
        self.read_pipe(id, K_OUT);
        self.read_pipe(id, K_ERR);
        self.close_pipe(id, K_OUT);
        self.close_pipe(id, K_ERR);
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        if let Some(fd) = p.pidfd.take() {
            let _ = epoll::delete(&self.epoll, fd.as_fd());
        }
        if let Some(ch) = p.chan.take() {
            let _ = epoll::delete(&self.epoll, ch.rx.bell_fd());
        }
        let pid = p.pid.take();
        let ran = now.saturating_duration_since(p.spawned_at);
        let stable = p
            .registered_at
            .is_some_and(|r| now.saturating_duration_since(r) >= STABLE_AFTER);
        p.last_exit = Some(exit);
        p.stop = None;
        p.health = None;
        let external = p.external;
        // Whatever the app left in its process group goes with it.
        if let (Some(pgid), false) = (pid, external) {
            proc::signal_group(pgid, Signal::KILL);
        }
        let ext_note = if external {
            String::new()
        } else {
            format!("{exit}, ")
        };
        self.note(id, &format!("ended: {ext_note}ran {}", fmt_dur(ran)));
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        let app = self.cfg.app(&p.app).cloned();
        match p.want {
            Want::Down => p.state = State::Exited,
            Want::Restart => {
                p.want = Want::Up;
                p.restarts += 1;
                if let Err(e) = self.spawn(id) {
                    self.note(id, &e);
                }
            }
            Want::Up => {
                let restart = match app.as_ref().map(|a| a.restart) {
                    _ if external => false,
                    Some(Restart::Always) => true,
                    Some(Restart::OnFailure) => !exit.success(),
                    Some(Restart::Never) | None => false,
                };
                if restart {
                    if stable {
                        p.streak = 0;
                        p.degraded = false;
                    }
                    self.schedule_restart(id, now, true);
                } else {
                    p.state = if exit.success() || external {
                        State::Exited
                    } else {
                        State::Failed
                    };
                }
            }
        }
        let gone = self.procs.get(&id).is_some_and(|p| !p.alive());
        if gone {
            self.resolve(
                id,
                |k| matches!(k, WaitKind::Gone),
                |sup, w| {
                    let p = &sup.procs[&w.id];
                    Reply::ok(
                        format!("{} ({}) stopped: {}", w.id, p.app, exit),
                        json!({"id": w.id, "exit": exit.to_string()}),
                    )
                },
            );
            self.resolve(
                id,
                |k| {
                    matches!(
                        k,
                        WaitKind::Pong { .. } | WaitKind::Usage { .. } | WaitKind::Query { .. }
                    )
                },
                |_, w| Reply::err(format!("{} exited before answering", w.id)),
            );
        }
    }

    fn schedule_restart(&mut self, id: u64, now: Instant, count: bool) {
        let s = self.cfg.settings.clone();
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        if count {
            p.streak += 1;
        }
        while p
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > s.start_window)
        {
            p.starts.pop_front();
        }
        if p.degraded || p.starts.len() >= s.start_limit as usize {
            p.degraded = true;
            p.state = State::Degraded;
            p.next_start = Some(now + s.degraded_retry);
            let n = p.starts.len();
            self.note(
                id,
                &format!(
                    "degraded: {n} starts within {}; next try in {}",
                    fmt_dur(s.start_window),
                    fmt_dur(s.degraded_retry)
                ),
            );
            return;
        }
        let exp = p.streak.saturating_sub(1).min(30);
        let base = s
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(s.backoff_max);
        let delay = self.jitter(base);
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        p.state = State::Backoff;
        p.next_start = Some(now + delay);
        self.note(id, &format!("restarting in {}", fmt_dur(delay)));
    }
}

/// Joins arguments for display, quoting those that need it.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
