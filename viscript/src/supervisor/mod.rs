//! The supervisor: one thread, one epoll, every child's pidfd, pipes and signal ring.
//!
//! Commands arrive over a bounded channel ([`Handle`]) with an eventfd doorbell; answers go back
//! on a per-request channel, some of them later (a ping answers when the pong arrives). All
//! timers use `Instant` (the monotonic clock), so a wall-clock jump changes nothing.
//!
//! Each component's lifecycle (restarts, backoff, degraded, stop deadlines, health pings) is
//! decided by the pure [`crate::lifecycle::next`]; this module only reads the clock, feeds it
//! events and carries out the effects it returns ([`Supervisor::feed`]). The files:
//! this one (the loop, timers, effects, waiters and followers), `io.rs` (processes, pipes,
//! rings, reaping) and `commands.rs` (the operator's commands). They are one type's `impl`
//! split by concept: `commands` uses `io` and this file, `io` uses only this file, and replies
//! are built by [`crate::render`].

mod commands;
mod io;

pub use crate::render::Reply;
pub use crate::units::shell_join;

use crate::command::Command;
use crate::config::{Changes, Config};
use crate::lifecycle::{self, Effect, Event, Life, Policy, Sig, State, Target, Want};
use crate::logbuf::{Line, LineSplitter, LogBuf, Source};
use crate::loglevel::Level;
use crate::notify::{self, Notifier, Plan};
use crate::proc::{self, Exit};
use crate::render;
use crate::reply::Started;
use rustix::event::epoll;
use rustix::process::Signal;

use signal::{Channel, ClientFds, Msg};
use std::collections::BTreeMap;
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

    /// [`Handle::call`] for callers that must not wait on a busy supervisor (the metrics
    /// endpoint): a full request queue is an error at once, and the answer is waited for at
    /// most `limit`.
    pub fn call_within(&self, cmd: Command, limit: Duration) -> Reply {
        let (tx, rx) = sync_channel(1);
        match self.tx.try_send(Req::Cmd(cmd, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Reply::err("the supervisor is busy"),
            Err(TrySendError::Disconnected(_)) => return Reply::err("the supervisor has stopped"),
        }
        let _ = rustix::io::write(self.bell.as_fd(), &1u64.to_ne_bytes());
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| Reply::err("the supervisor did not answer in time"))
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

struct Pipe {
    fd: OwnedFd,
    split: LineSplitter,
}

struct Proc {
    id: u64,
    app: String,
    args: Vec<String>,
    /// `args` were given at start (not the app's `default_args`): a reload keeps them.
    own_args: bool,
    /// Its lifecycle; changed only by [`Supervisor::feed`].
    life: Life,
    pidfd: Option<OwnedFd>,
    chan: Option<Channel>,
    out: Option<Pipe>,
    err: Option<Pipe>,
    kind: String,
    version: String,
    last_rtt: Option<Duration>,
    last_exit: Option<Exit>,
    logs: LogBuf,
    followers: Vec<Follower>,
}

/// Someone streaming a component's output (`logs -f`, `attach`, `start -a`).
struct Follower {
    tx: SyncSender<String>,
    /// Only lines of this severity or more.
    min: Level,
}

impl Proc {
    /// A component record with nothing running yet (or, attached, with the process given).
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u64,
        app: String,
        args: Vec<String>,
        life: Life,
        pidfd: Option<OwnedFd>,
        chan: Option<Channel>,
        s: &crate::config::Settings,
        now: Instant,
    ) -> Proc {
        Proc {
            id,
            app,
            args,
            own_args: false,
            life,
            pidfd,
            chan,
            out: None,
            err: None,
            kind: String::new(),
            version: String::new(),
            last_rtt: None,
            last_exit: None,
            logs: LogBuf::new(s.log_lines, s.log_rate, now),
            followers: Vec::new(),
        }
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
    policy: Policy,
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
    /// sd_notify, when started by a service manager (`NOTIFY_SOCKET`).
    sd: Option<Sd>,
}

/// The service manager's side: where to send and what was sent.
struct Sd {
    notifier: Notifier,
    plan: Plan,
    /// The autostart components (and the autostart apps that could not be created at all).
    autostart: Vec<u64>,
    not_created: Vec<String>,
}

/// Starts the supervisor thread for `cfg`, autostarting what the config says. Returns the
/// handle and the thread (which ends after `quit`).
pub fn start(cfg: Config) -> std::io::Result<(Handle, std::thread::JoinHandle<()>)> {
    start_notifying(cfg, None)
}

/// [`start`], telling the service manager behind `notifier` about readiness, status, liveness
/// (from the loop) and stopping; see [`crate::notify`].
pub fn start_notifying(
    cfg: Config,
    notifier: Option<Notifier>,
) -> std::io::Result<(Handle, std::thread::JoinHandle<()>)> {
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
        policy: Policy::from_settings(&cfg.settings),
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
        sd: notifier.map(|notifier| Sd {
            plan: Plan::new(Instant::now(), Instant::now(), None),
            notifier,
            autostart: Vec::new(),
            not_created: Vec::new(),
        }),
    };
    // PDEATHSIG follows the thread that forked: children are spawned from this thread only,
    // and it lives as long as the supervisor.
    let th = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || sup.run())?;
    Ok((Handle { tx, bell }, th))
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
        let mut ids = Vec::new();
        let mut not_created = Vec::new();
        for name in auto {
            match self.start_app(&name, None) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    eprintln!("viscript: autostart of {name} failed: {e}");
                    not_created.push(name);
                }
            }
        }
        let ready_by = Instant::now() + self.ready_bound();
        if let Some(sd) = &mut self.sd {
            sd.plan = Plan::new(Instant::now(), ready_by, sd.notifier.watchdog);
            sd.autostart = ids;
            sd.not_created = not_created;
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
            // Before `quit_done`, which ends `quitting`: STOPPING=1 goes out even when the stop
            // took a single turn.
            self.notify(Instant::now());
            if self.quit_done() {
                return;
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        for p in self.procs.values() {
            if let Some(t) = p.life.deadline(&self.policy) {
                min(t);
            }
        }
        for w in &self.waiters {
            min(w.deadline);
        }
        if let Some((t, _)) = &self.quitting {
            min(*t + Duration::from_millis(100));
        }
        if let Some(t) = self.sd.as_ref().and_then(|sd| sd.plan.deadline()) {
            min(t);
        }
        d.map(|t| t.max(now))
    }

    /// A uniform sample in `[0, 1)` for the backoff jitter.
    fn draw(&mut self) -> f64 {
        // xorshift64: good enough to spread restarts; no need for a crypto RNG.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    // ---- lifecycle --------------------------------------------------------------------

    /// Runs one lifecycle transition of `id` and carries out its effects, in order. Returns
    /// the error of a spawn the transition asked for, when that failed.
    fn feed(&mut self, id: u64, event: Event, now: Instant) -> Result<(), String> {
        let Some(p) = self.procs.get_mut(&id) else {
            return Ok(());
        };
        let (life, effects) = lifecycle::next(&p.life, event, now, &self.policy);
        p.life = life;
        let mut result = Ok(());
        for fx in effects {
            if let Err(e) = self.effect(id, fx, now) {
                result = Err(e);
            }
        }
        result
    }

    fn effect(&mut self, id: u64, fx: Effect, now: Instant) -> Result<(), String> {
        match fx {
            Effect::Spawn(cause) => return self.spawn(id, cause, now),
            Effect::SendShutdown { grace } => {
                let ok = self
                    .procs
                    .get_mut(&id)
                    .and_then(|p| p.chan.as_mut())
                    .is_some_and(|c| {
                        c.tx.send(&Msg::Shutdown {
                            deadline_ms: grace.as_millis() as u64,
                        })
                        .is_ok()
                    });
                return self.feed(id, Event::ShutdownSent { ok }, now);
            }
            Effect::SendPing => {
                let nonce = self.next_nonce();
                let sent = self
                    .procs
                    .get_mut(&id)
                    .and_then(|p| p.chan.as_mut())
                    .is_some_and(|c| c.tx.send(&Msg::Ping { nonce }).is_ok());
                if sent {
                    return self.feed(id, Event::PingSent { nonce }, now);
                }
            }
            Effect::Signal(target, sig) => {
                let sig = match sig {
                    Sig::Term => Signal::TERM,
                    Sig::Kill => Signal::KILL,
                };
                match target {
                    Target::Pidfd => {
                        if let Some(fd) = self.procs.get(&id).and_then(|p| p.pidfd.as_ref()) {
                            let _ = proc::signal_pidfd(fd.as_fd(), sig);
                        }
                    }
                    Target::Group(pgid) => {
                        proc::signal_group(pgid, sig);
                    }
                }
            }
            Effect::Note(text) => self.note(id, &text),
            Effect::RecordRtt(rtt) => {
                if let Some(p) = self.procs.get_mut(&id) {
                    p.last_rtt = Some(rtt);
                }
            }
            Effect::Registered { kind, version } => {
                if let Some(p) = self.procs.get_mut(&id) {
                    p.kind = kind;
                    p.version = version;
                }
                self.resolve(
                    id,
                    |k| matches!(k, WaitKind::Ready),
                    |sup, w| sup.ready_reply(w.id, w.attach),
                );
            }
        }
        Ok(())
    }

    fn note(&mut self, id: u64, text: &str) {
        self.log(id, Source::Viscript, text);
    }

    fn log(&mut self, id: u64, source: Source, text: &str) {
        self.publish(id, |b| b.push(source, text, Instant::now()));
    }

    /// A log message from the component's ring, sent at `level`.
    fn log_ring(&mut self, id: u64, level: Level, text: &str) {
        self.publish(id, |b| b.push_ring(level, text, Instant::now()));
    }

    /// Stores lines in the component's buffer (`push`) and hands what was stored to its
    /// followers.
    fn publish(&mut self, id: u64, push: impl FnOnce(&mut LogBuf) -> Vec<Line>) {
        let Some(p) = self.procs.get_mut(&id) else {
            return;
        };
        let lines = push(&mut p.logs);
        if p.followers.is_empty() {
            return;
        }
        for l in lines {
            let r = l.render();
            p.followers.retain(|f| {
                l.severity < f.min
                    || !matches!(f.tx.try_send(r.clone()), Err(TrySendError::Disconnected(_)))
            });
        }
    }

    // ---- waiters and followers ---------------------------------------------------------

    fn stop_budget(&self) -> Duration {
        self.cfg.settings.shutdown_grace + self.cfg.settings.term_grace + Duration::from_secs(2)
    }

    fn follow(&mut self, id: u64, history: usize) -> Receiver<String> {
        self.follow_at(id, history, Level::Trace)
    }

    /// Streams the last `history` lines of severity `min` or more, then every new one.
    fn follow_at(&mut self, id: u64, history: usize, min: Level) -> Receiver<String> {
        let (tx, rx) = sync_channel(FOLLOW_QUEUE);
        if let Some(p) = self.procs.get_mut(&id) {
            for l in p.logs.tail_at(history, min) {
                let _ = tx.try_send(l.render());
            }
            p.followers.push(Follower { tx, min });
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

    fn send_to(&mut self, id: u64, msg: &Msg) -> Result<(), String> {
        let Some(ch) = self.procs.get_mut(&id).and_then(|p| p.chan.as_mut()) else {
            return Err(format!("{id} has no signal connection"));
        };
        ch.tx
            .send(msg)
            .map_err(|e| format!("cannot send to {id}: {e}"))
    }

    fn ready_reply(&mut self, id: u64, attach: bool) -> Reply {
        let Some(p) = self.procs.get(&id) else {
            return Reply::err(self.unknown_id(id));
        };
        let took = p
            .life
            .registered_at
            .map(|r| r.saturating_duration_since(p.life.spawned_at))
            .unwrap_or_default();
        let mut r = render::ready(&Started {
            id,
            app: p.app.clone(),
            pid: p.life.pid,
            ready_ms: Some(took.as_secs_f64() * 1e3),
        });
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

    fn app_ready(&self, name: &str) -> bool {
        self.procs
            .values()
            .any(|p| p.app == name && p.life.state == State::Ready)
    }

    fn app_pending(&self, name: &str) -> bool {
        self.procs.values().any(|p| {
            p.app == name
                && matches!(
                    p.life.state,
                    State::Ready | State::Starting | State::Waiting | State::Backoff
                )
        })
    }

    /// Feeds every timer that is due, and the dependency check of waiting components.
    fn timers(&mut self, now: Instant) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            let Some(p) = self.procs.get(&id) else {
                continue;
            };
            if p.life.state == State::Waiting {
                let deps = self
                    .cfg
                    .app(&p.app)
                    .map(|a| a.after.clone())
                    .unwrap_or_default();
                if deps.iter().all(|d| self.app_ready(d)) {
                    let _ = self.feed(id, Event::DepsReady, now);
                }
            } else if let Some((due, event)) = p.life.state_timer(&self.policy)
                && now >= due
            {
                let _ = self.feed(id, event, now);
            }
            if self
                .procs
                .get(&id)
                .and_then(|p| p.life.stop_timer())
                .is_some_and(|due| now >= due)
            {
                let _ = self.feed(id, Event::StopDeadline, now);
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
                    crate::units::fmt_dur(now - (w.deadline - ANSWER_TIMEOUT).min(now))
                )));
            } else {
                i += 1;
            }
        }
        if self.quitting.is_some() {
            self.quit_step(now);
        }
    }

    // ---- sd_notify ----------------------------------------------------------------------

    /// How long READY=1 waits for the autostart apps: each level of `after` may take its
    /// registration timeout.
    fn ready_bound(&self) -> Duration {
        let levels = self
            .cfg
            .apps
            .iter()
            .filter(|a| a.autostart)
            .map(|a| self.depth(&a.name, 0))
            .max()
            .unwrap_or(0);
        self.cfg.settings.ready_timeout * (levels as u32 + 1)
    }

    /// Sends what the service manager should hear this turn (see [`crate::notify::Plan`]).
    fn notify(&mut self, now: Instant) {
        let Some(sd) = &self.sd else { return };
        let summary = notify::summary(
            self.procs
                .values()
                .map(|p| (p.app.as_str(), p.life.state.name())),
        );
        let mut not_up = sd.not_created.clone();
        for id in &sd.autostart {
            match self.procs.get(id) {
                Some(p) if matches!(p.life.state, State::Ready | State::Exited) => {}
                Some(p) => not_up.push(p.app.clone()),
                None => {}
            }
        }
        let all_up = not_up.is_empty();
        let stopping = self.quitting.is_some();
        let Some(sd) = &mut self.sd else { return };
        let msg = sd.plan.step(&notify::Now {
            now,
            all_up,
            not_up: &not_up,
            summary: &summary,
            stopping: stopping || sd.plan.stopping_sent,
        });
        if let Some(msg) = msg {
            sd.notifier.send(&msg);
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
            .filter(|p| p.life.alive())
            .map(|p| (p.id, self.depth(&p.app, 0)))
            .collect();
        let Some(top) = alive.iter().map(|(_, d)| *d).max() else {
            return;
        };
        for (id, d) in alive {
            if d == top {
                let _ = self.feed(id, Event::StopRequested { kill: false }, now);
            }
        }
    }

    fn quit_done(&mut self) -> bool {
        let Some((since, _)) = &self.quitting else {
            return false;
        };
        let all_down = self.procs.values().all(|p| !p.life.alive());
        let overdue = since.elapsed() > self.stop_budget() * 2;
        if !all_down && !overdue {
            return false;
        }
        let n = self.procs.len();
        if let Some((_, replies)) = self.quitting.take() {
            for r in replies {
                let _ = r.send(render::quit(all_down, n));
            }
        }
        true
    }
}
