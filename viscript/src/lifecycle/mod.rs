//! One component's lifecycle as a pure transition function: [`next`] takes the current
//! [`Life`], an [`Event`], the time and the [`Policy`], and returns the new `Life` and the
//! [`Effect`]s the supervisor must carry out. Nothing here does I/O or reads a clock: time comes
//! in as `now`, and the random part of the backoff comes in as a jitter sample carried by the
//! events that may schedule a restart, so every transition is a table row in the tests.
//!
//! Timers are data: a `Life` holds its deadlines (registration, next ping, next start, stop
//! phase) and [`Life::state_timer`] / [`Life::stop_timer`] say which event is due when; the
//! driver sleeps until the earliest and feeds the event. A timer event that arrives early or in
//! the wrong state changes nothing.
//!
//! Some effects ask the driver for an outcome, which it feeds back as the next event:
//! [`Effect::Spawn`] -> [`Event::Spawned`] or [`Event::SpawnFailed`] (echoing the [`Cause`]),
//! [`Effect::SendShutdown`] -> [`Event::ShutdownSent`], [`Effect::SendPing`] ->
//! [`Event::PingSent`] (only when the ping went out).

use crate::config::{Restart, Settings};
use crate::proc::Exit;
use crate::units::fmt_dur;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A daemon that stayed registered this long has its failure streak forgiven.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// After SIGKILL, how long before it is sent again (a process in uninterruptible sleep).
pub const KILL_RETRY: Duration = Duration::from_secs(5);

/// Where a component is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
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
    /// The name shown by `list` and sent in its JSON.
    pub fn name(self) -> &'static str {
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

/// What the operator (or the restart policy) wants of the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Running; restarted per its policy.
    Up,
    /// Stopped, not restarted.
    Down,
    /// Stopped, then started again at once.
    Restart,
}

/// The stop phase whose deadline is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The shutdown message went over the ring; SIGTERM at the deadline.
    Signal,
    /// SIGTERM was sent; SIGKILL at the deadline.
    Term,
    /// SIGKILL was sent; again at the deadline.
    Kill,
}

/// Why a spawn was asked for: decides what a failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its `after` apps are ready (the first start). A failure is noted.
    Deps,
    /// `restart` of a component that is not running. The failure goes to the operator.
    Requested,
    /// It exited while being restarted. A failure is noted.
    Restarting,
    /// A backoff or degraded retry came due. A failure is noted and the restart scheduled again
    /// (without counting it as another failure).
    Retry,
}

/// A signal the driver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// Where a signal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The process itself, through its pidfd (when there is one).
    Pidfd,
    /// Every member of the process group `pgid`.
    Group(u32),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start the process; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn(Cause),
    /// Put the shutdown message (deadline `grace`) on the ring; answer with
    /// [`Event::ShutdownSent`].
    SendShutdown {
        /// The component's deadline.
        grace: Duration,
    },
    /// Send a health ping with a fresh nonce; answer with [`Event::PingSent`] if it went out.
    SendPing,
    /// Send a signal.
    Signal(Target, Sig),
    /// Add a line to the component's log (source `vis`).
    Note(String),
    /// Remember this ping round trip.
    RecordRtt(Duration),
    /// It registered: keep its kind and version and answer whoever waits for readiness.
    Registered {
        /// As registered.
        kind: String,
        /// As registered.
        version: String,
    },
}

/// What happened to the component.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The process started with this pid.
    Spawned {
        /// Its pid.
        pid: u32,
    },
    /// Starting it failed.
    SpawnFailed {
        /// As in the [`Effect::Spawn`].
        cause: Cause,
        /// What went wrong.
        error: String,
        /// True when the process could not be started (it is then `failed`); false when
        /// viscript could not prepare it (the state stays).
        process: bool,
        /// A uniform sample in `[0, 1)` for the backoff jitter.
        jitter: f64,
    },
    /// Its `after` apps are all ready.
    DepsReady,
    /// It registered over the ring.
    Registered {
        /// Component kind.
        kind: String,
        /// Component version.
        version: String,
        /// The pid it says it has.
        pid: u32,
    },
    /// A health ping with this nonce went out.
    PingSent {
        /// Its nonce.
        nonce: u64,
    },
    /// A pong that no operator `ping` was waiting for.
    Pong {
        /// Its nonce.
        nonce: u64,
    },
    /// The ping timer: a missed ping is counted, then the next one sent.
    PingDue,
    /// The registration deadline.
    ReadyTimeout,
    /// The backoff or degraded-retry timer.
    RestartDue,
    /// The deadline of the stop phase.
    StopDeadline,
    /// Whether the shutdown message went on the ring.
    ShutdownSent {
        /// It did.
        ok: bool,
    },
    /// The process ended.
    Exited {
        /// How.
        exit: Exit,
        /// A uniform sample in `[0, 1)` for the backoff jitter.
        jitter: f64,
    },
    /// `sd` (graceful) or `kill`.
    StopRequested {
        /// `kill`: SIGKILL at once.
        kill: bool,
    },
    /// `restart`.
    RestartRequested,
    /// A reload changed its app's restart policy (it applies from the next exit on).
    Reconfigured {
        /// The new policy.
        restart: Restart,
    },
    /// `quit`: nothing is to be restarted; the driver stops the running ones in order.
    QuitRequested,
    /// The signal ring broke (a protocol violation).
    RingBroken,
}

/// The settings the lifecycle follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Liveness ping period.
    pub ping_interval: Duration,
    /// Missed pings before it counts as hung (at least 1).
    pub ping_failures: u32,
    /// Registration deadline after a spawn.
    pub ready_timeout: Duration,
    /// From the shutdown message to SIGTERM.
    pub shutdown_grace: Duration,
    /// From SIGTERM to SIGKILL.
    pub term_grace: Duration,
    /// First backoff.
    pub backoff_initial: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Relative jitter of the backoff.
    pub backoff_jitter: f64,
    /// Starts within `start_window` that make it degraded.
    pub start_limit: u32,
    /// Window for `start_limit`.
    pub start_window: Duration,
    /// Retry period when degraded.
    pub degraded_retry: Duration,
    /// Registered this long: the failure streak is forgiven at the next exit.
    pub stable_after: Duration,
    /// Period of repeated SIGKILLs.
    pub kill_retry: Duration,
}

impl Policy {
    /// The policy of these settings.
    pub fn from_settings(s: &Settings) -> Policy {
        Policy {
            ping_interval: s.ping_interval,
            ping_failures: s.ping_failures,
            ready_timeout: s.ready_timeout,
            shutdown_grace: s.shutdown_grace,
            term_grace: s.term_grace,
            backoff_initial: s.backoff_initial,
            backoff_max: s.backoff_max,
            backoff_jitter: s.backoff_jitter,
            start_limit: s.start_limit,
            start_window: s.start_window,
            degraded_retry: s.degraded_retry,
            stable_after: STABLE_AFTER,
            kill_retry: KILL_RETRY,
        }
    }
}

/// A component's lifecycle state. Read freely; change it only through [`next`].
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    /// Where it is.
    pub state: State,
    /// What is wanted of it.
    pub want: Want,
    /// Its app's restart policy.
    pub restart: Restart,
    /// Started outside viscript (attached): never restarted, signalled through its pidfd.
    pub external: bool,
    /// Its process while it runs.
    pub pid: Option<u32>,
    /// When the process was started (or attached).
    pub spawned_at: Instant,
    /// When it registered, since the last start.
    pub registered_at: Option<Instant>,
    /// Restarts so far.
    pub restarts: u32,
    /// Consecutive failures (drives the backoff).
    pub streak: u32,
    /// Recent start times (within `start_window`).
    pub starts: VecDeque<Instant>,
    /// In the crash-loop regime: retries every `degraded_retry`.
    pub degraded: bool,
    /// When the next start is due (backoff or degraded).
    pub next_start: Option<Instant>,
    /// The armed stop phase and its deadline.
    pub stop: Option<(Phase, Instant)>,
    /// The outstanding health ping: nonce and when it was sent.
    pub health: Option<(u64, Instant)>,
    /// Health pings missed in a row.
    pub missed: u32,
    /// When the next health ping is due (while ready).
    pub next_ping: Instant,
}

impl Life {
    /// A component of an app, not started yet (`waiting`).
    pub fn new(restart: Restart, now: Instant) -> Life {
        Life {
            state: State::Waiting,
            want: Want::Up,
            restart,
            external: false,
            pid: None,
            spawned_at: now,
            registered_at: None,
            restarts: 0,
            streak: 0,
            starts: VecDeque::new(),
            degraded: false,
            next_start: None,
            stop: None,
            health: None,
            missed: 0,
            next_ping: now,
        }
    }

    /// A process started elsewhere that attached now (`starting`).
    pub fn attached(pid: u32, now: Instant) -> Life {
        Life {
            state: State::Starting,
            external: true,
            pid: Some(pid),
            ..Life::new(Restart::Never, now)
        }
    }

    /// Whether its process runs.
    pub fn alive(&self) -> bool {
        self.pid.is_some()
    }

    /// Time since it started, while it runs.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        self.alive()
            .then(|| now.saturating_duration_since(self.spawned_at))
    }

    /// The timer of the current state and the event it fires: registration deadline, next
    /// ping, next start.
    pub fn state_timer(&self, p: &Policy) -> Option<(Instant, Event)> {
        match self.state {
            State::Starting => Some((self.spawned_at + p.ready_timeout, Event::ReadyTimeout)),
            State::Ready => Some((self.next_ping, Event::PingDue)),
            State::Backoff | State::Degraded => self.next_start.map(|t| (t, Event::RestartDue)),
            _ => None,
        }
    }

    /// The deadline of the stop phase ([`Event::StopDeadline`]).
    pub fn stop_timer(&self) -> Option<Instant> {
        self.stop.map(|(_, t)| t)
    }

    /// The earliest of its timers.
    pub fn deadline(&self, p: &Policy) -> Option<Instant> {
        let state = self.state_timer(p).map(|(t, _)| t);
        match (state, self.stop_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `d` spread by `+-jitter` (relative) with the uniform sample `unit` in `[0, 1)`.
pub fn jittered(d: Duration, jitter: f64, unit: f64) -> Duration {
    d.mul_f64((1.0 + jitter * (2.0 * unit - 1.0)).max(0.0))
}

/// The backoff after `streak` consecutive failures, before jitter: `backoff_initial` doubling
/// to `backoff_max`.
pub fn backoff(p: &Policy, streak: u32) -> Duration {
    let exp = streak.saturating_sub(1).min(30);
    p.backoff_initial
        .saturating_mul(1u32 << exp)
        .min(p.backoff_max)
}

/// The transition: the new state and what to do, in order.
pub fn next(life: &Life, event: Event, now: Instant, p: &Policy) -> (Life, Vec<Effect>) {
    let mut t = Step {
        l: life.clone(),
        fx: Vec::new(),
        now,
        p,
    };
    t.event(event);
    (t.l, t.fx)
}

struct Step<'a> {
    l: Life,
    fx: Vec<Effect>,
    now: Instant,
    p: &'a Policy,
}

impl Step<'_> {
    fn note(&mut self, text: String) {
        self.fx.push(Effect::Note(text));
    }

    fn event(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Spawned { pid } => {
                let l = &mut self.l;
                l.pid = Some(pid);
                l.spawned_at = now;
                l.registered_at = None;
                l.state = State::Starting;
                l.stop = None;
                l.health = None;
                l.missed = 0;
                l.next_start = None;
                l.starts.push_back(now);
            }
            Event::SpawnFailed {
                cause,
                error,
                process,
                jitter,
            } => {
                if process {
                    self.l.state = State::Failed;
                }
                match cause {
                    Cause::Requested => {}
                    Cause::Deps | Cause::Restarting => self.note(error),
                    Cause::Retry => {
                        self.note(error);
                        self.schedule_restart(false, jitter);
                    }
                }
            }
            Event::DepsReady => {
                if self.l.state == State::Waiting {
                    self.fx.push(Effect::Spawn(Cause::Deps));
                }
            }
            Event::Registered { kind, version, pid } => {
                if self.l.registered_at.is_some() {
                    self.note("registered twice; ignored".into());
                    return;
                }
                let took = now.saturating_duration_since(self.l.spawned_at);
                self.l.registered_at = Some(now);
                if self.l.state == State::Starting {
                    self.l.state = State::Ready;
                }
                self.l.next_ping = now + self.p.ping_interval;
                let mismatch = self.l.pid.is_some_and(|x| x != pid);
                self.note(format!(
                    "registered: {kind} {version} (pid {pid}) in {:.1} ms",
                    took.as_secs_f64() * 1e3
                ));
                if mismatch {
                    self.note("note: registered pid differs from the started pid".into());
                }
                self.fx.push(Effect::Registered { kind, version });
            }
            Event::PingSent { nonce } => self.l.health = Some((nonce, now)),
            Event::Pong { nonce } => {
                if let Some((n, sent)) = self.l.health
                    && n == nonce
                {
                    self.fx
                        .push(Effect::RecordRtt(now.saturating_duration_since(sent)));
                    self.l.health = None;
                    self.l.missed = 0;
                }
            }
            Event::PingDue => {
                if self.l.state != State::Ready || now < self.l.next_ping {
                    return;
                }
                if self.l.health.is_some() {
                    self.l.missed += 1;
                }
                if self.l.missed >= self.p.ping_failures.max(1) {
                    let why = format!("missed {} pings", self.l.missed);
                    if self.l.external {
                        self.l.state = State::Failed;
                        self.note(why);
                    } else {
                        self.kill_now(&why);
                    }
                    return;
                }
                self.l.next_ping = now + self.p.ping_interval;
                if self.l.health.is_none() {
                    self.fx.push(Effect::SendPing);
                }
            }
            Event::ReadyTimeout => {
                if self.l.state != State::Starting || now < self.l.spawned_at + self.p.ready_timeout
                {
                    return;
                }
                if self.l.external {
                    self.l.state = State::Ready;
                } else {
                    let why = format!("did not register within {}", fmt_dur(self.p.ready_timeout));
                    self.kill_now(&why);
                }
            }
            Event::RestartDue => {
                if !matches!(self.l.state, State::Backoff | State::Degraded)
                    || self.l.next_start.is_none_or(|t| now < t)
                {
                    return;
                }
                self.l.next_start = None;
                self.l.restarts += 1;
                self.fx.push(Effect::Spawn(Cause::Retry));
            }
            Event::StopDeadline => {
                let Some((phase, deadline)) = self.l.stop else {
                    return;
                };
                if now < deadline {
                    return;
                }
                match (phase, self.l.pid) {
                    (Phase::Signal, Some(pid)) => {
                        self.l.stop = Some((Phase::Term, now + self.p.term_grace));
                        let target = if self.l.external {
                            Target::Pidfd
                        } else {
                            Target::Group(pid)
                        };
                        self.fx.push(Effect::Signal(target, Sig::Term));
                        self.note(format!(
                            "no exit within {}: sent SIGTERM",
                            fmt_dur(self.p.shutdown_grace)
                        ));
                    }
                    (Phase::Term, _) => {
                        let why =
                            format!("no exit within {} of SIGTERM", fmt_dur(self.p.term_grace));
                        self.kill_now(&why);
                    }
                    // SIGKILL was not enough (uninterruptible sleep): try again.
                    (Phase::Kill, _) => self.kill_now("still alive"),
                    (Phase::Signal, None) => self.l.stop = None,
                }
            }
            Event::ShutdownSent { ok } => {
                if self.l.state != State::Stopping || self.l.stop.is_some() {
                    return;
                }
                let Some(pid) = self.l.pid else { return };
                if ok && self.l.registered_at.is_some() {
                    self.l.stop = Some((Phase::Signal, now + self.p.shutdown_grace));
                    self.note(format!(
                        "shutdown requested (SIGTERM in {})",
                        fmt_dur(self.p.shutdown_grace)
                    ));
                } else {
                    self.l.stop = Some((Phase::Term, now + self.p.term_grace));
                    self.fx.push(Effect::Signal(Target::Group(pid), Sig::Term));
                    self.note("not registered: sent SIGTERM".into());
                }
            }
            Event::Exited { exit, jitter } => self.exited(exit, jitter),
            Event::StopRequested { kill } => {
                self.l.want = Want::Down;
                if !self.l.alive() {
                    self.l.next_start = None;
                    self.forget_pending_start();
                } else if kill {
                    self.kill_now("kill requested");
                } else {
                    self.begin_stop();
                }
            }
            Event::RestartRequested => {
                self.l.degraded = false;
                self.l.streak = 0;
                self.l.starts.clear();
                if self.l.alive() {
                    self.l.want = Want::Restart;
                    self.begin_stop();
                } else {
                    self.l.want = Want::Up;
                    self.l.next_start = None;
                    self.l.restarts += 1;
                    self.fx.push(Effect::Spawn(Cause::Requested));
                }
            }
            Event::Reconfigured { restart } => self.l.restart = restart,
            Event::QuitRequested => {
                self.l.want = Want::Down;
                self.l.next_start = None;
                self.forget_pending_start();
            }
            Event::RingBroken => self.kill_now("protocol violation"),
        }
    }

    /// A component that was only waiting to start is done.
    fn forget_pending_start(&mut self) {
        if matches!(
            self.l.state,
            State::Backoff | State::Degraded | State::Waiting
        ) {
            self.l.state = State::Exited;
        }
    }

    fn kill_now(&mut self, why: &str) {
        let Some(pid) = self.l.pid else { return };
        self.fx.push(Effect::Signal(Target::Pidfd, Sig::Kill));
        if !self.l.external {
            self.fx.push(Effect::Signal(Target::Group(pid), Sig::Kill));
        }
        self.l.state = State::Stopping;
        self.l.stop = Some((Phase::Kill, self.now + self.p.kill_retry));
        self.note(format!("{why}: sent SIGKILL"));
    }

    fn begin_stop(&mut self) {
        if !self.l.alive() || self.l.state == State::Stopping {
            return;
        }
        self.l.state = State::Stopping;
        self.fx.push(Effect::SendShutdown {
            grace: self.p.shutdown_grace,
        });
    }

    fn exited(&mut self, exit: Exit, jitter: f64) {
        let now = self.now;
        let pid = self.l.pid.take();
        let ran = now.saturating_duration_since(self.l.spawned_at);
        let stable = self
            .l
            .registered_at
            .is_some_and(|r| now.saturating_duration_since(r) >= self.p.stable_after);
        self.l.stop = None;
        self.l.health = None;
        let external = self.l.external;
        // Whatever the app left in its process group goes with it.
        if let (Some(pgid), false) = (pid, external) {
            self.fx.push(Effect::Signal(Target::Group(pgid), Sig::Kill));
        }
        let ext_note = if external {
            String::new()
        } else {
            format!("{exit}, ")
        };
        self.note(format!("ended: {ext_note}ran {}", fmt_dur(ran)));
        match self.l.want {
            Want::Down => self.l.state = State::Exited,
            Want::Restart => {
                self.l.want = Want::Up;
                self.l.restarts += 1;
                self.fx.push(Effect::Spawn(Cause::Restarting));
            }
            Want::Up => {
                let restart = !external
                    && match self.l.restart {
                        Restart::Always => true,
                        Restart::OnFailure => !exit.success(),
                        Restart::Never => false,
                    };
                if restart {
                    if stable {
                        self.l.streak = 0;
                        self.l.degraded = false;
                    }
                    self.schedule_restart(true, jitter);
                } else {
                    self.l.state = if exit.success() || external {
                        State::Exited
                    } else {
                        State::Failed
                    };
                }
            }
        }
    }

    fn schedule_restart(&mut self, count: bool, jitter: f64) {
        let (now, p) = (self.now, self.p);
        let l = &mut self.l;
        if count {
            l.streak += 1;
        }
        while l
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > p.start_window)
        {
            l.starts.pop_front();
        }
        if l.degraded || l.starts.len() >= p.start_limit as usize {
            l.degraded = true;
            l.state = State::Degraded;
            l.next_start = Some(now + p.degraded_retry);
            let n = l.starts.len();
            self.note(format!(
                "degraded: {n} starts within {}; next try in {}",
                fmt_dur(p.start_window),
                fmt_dur(p.degraded_retry)
            ));
            return;
        }
        let delay = jittered(backoff(p, l.streak), p.backoff_jitter, jitter);
        l.state = State::Backoff;
        l.next_start = Some(now + delay);
        self.note(format!("restarting in {}", fmt_dur(delay)));
    }
}

#[cfg(test)]
mod tests;
