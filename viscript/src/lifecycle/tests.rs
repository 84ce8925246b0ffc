//! Every transition of [`next`] as a table row: the state before, the event and its time, the
//! state after (as a change of the state before) and the effects, in order.

use super::*;

const PID: u32 = 100;
const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn pol() -> Policy {
    Policy::from_settings(&Settings::default())
}

fn note(s: &str) -> Effect {
    Effect::Note(s.into())
}

fn kill(pid: u32) -> Vec<Effect> {
    vec![
        Effect::Signal(Target::Pidfd, Sig::Kill),
        Effect::Signal(Target::Group(pid), Sig::Kill),
    ]
}

fn waiting(t0: Instant) -> Life {
    Life::new(Restart::OnFailure, t0)
}

fn starting(t0: Instant) -> Life {
    Life {
        state: State::Starting,
        pid: Some(PID),
        starts: VecDeque::from([t0]),
        ..waiting(t0)
    }
}

fn ready(t0: Instant) -> Life {
    Life {
        state: State::Ready,
        registered_at: Some(t0),
        next_ping: t0 + S,
        ..starting(t0)
    }
}

fn external_ready(t0: Instant) -> Life {
    Life {
        state: State::Ready,
        registered_at: Some(t0),
        next_ping: t0 + S,
        ..Life::attached(PID, t0)
    }
}

fn stopping(t0: Instant, phase: Phase, deadline: Instant) -> Life {
    Life {
        state: State::Stopping,
        stop: Some((phase, deadline)),
        ..ready(t0)
    }
}

/// Ended after one failure, restart pending at `next`.
fn in_backoff(t0: Instant, next: Instant) -> Life {
    Life {
        state: State::Backoff,
        pid: None,
        streak: 1,
        next_start: Some(next),
        ..starting(t0)
    }
}

struct Row {
    name: &'static str,
    life: Life,
    event: Event,
    at: Instant,
    policy: Policy,
    change: Box<dyn Fn(&mut Life)>,
    fx: Vec<Effect>,
}

fn row(name: &'static str, life: Life, event: Event, at: Instant) -> Row {
    Row {
        name,
        life,
        event,
        at,
        policy: pol(),
        change: Box::new(|_| {}),
        fx: Vec::new(),
    }
}

impl Row {
    fn to(mut self, change: impl Fn(&mut Life) + 'static) -> Row {
        self.change = Box::new(change);
        self
    }
    fn fx(mut self, fx: Vec<Effect>) -> Row {
        self.fx = fx;
        self
    }
    fn policy(mut self, p: Policy) -> Row {
        self.policy = p;
        self
    }
}

fn check(rows: Vec<Row>) {
    for r in rows {
        let (got, fx) = next(&r.life, r.event.clone(), r.at, &r.policy);
        let mut want = r.life.clone();
        (r.change)(&mut want);
        assert_eq!(got, want, "{}: state after {:?}", r.name, r.event);
        assert_eq!(fx, r.fx, "{}: effects of {:?}", r.name, r.event);
    }
}

#[test]
fn spawning() {
    let t0 = Instant::now();
    let t1 = t0 + MS;
    let failed = |cause, process| Event::SpawnFailed {
        cause,
        error: "cannot start x: nope".into(),
        process,
        jitter: 0.5,
    };
    check(vec![
        row("deps ready: spawn", waiting(t0), Event::DepsReady, t1)
            .fx(vec![Effect::Spawn(Cause::Deps)]),
        row(
            "deps ready when not waiting: nothing",
            starting(t0),
            Event::DepsReady,
            t1,
        ),
        row("spawned", waiting(t0), Event::Spawned { pid: PID }, t1).to(move |l| {
            l.state = State::Starting;
            l.pid = Some(PID);
            l.spawned_at = t1;
            l.starts.push_back(t1);
        }),
        row(
            "spawned clears the old run",
            Life {
                stop: Some((Phase::Kill, t0)),
                health: Some((7, t0)),
                missed: 2,
                registered_at: Some(t0),
                ..in_backoff(t0, t1)
            },
            Event::Spawned { pid: 101 },
            t1,
        )
        .to(move |l| {
            l.state = State::Starting;
            l.pid = Some(101);
            l.spawned_at = t1;
            l.registered_at = None;
            l.stop = None;
            l.health = None;
            l.missed = 0;
            l.next_start = None;
            l.starts.push_back(t1);
        }),
        row(
            "first start fails",
            waiting(t0),
            failed(Cause::Deps, true),
            t1,
        )
        .to(|l| l.state = State::Failed)
        .fx(vec![note("cannot start x: nope")]),
        row(
            "preparing the first start fails",
            waiting(t0),
            failed(Cause::Deps, false),
            t1,
        )
        .fx(vec![note("cannot start x: nope")]),
        row(
            "requested restart fails: the operator is told, not the log",
            waiting(t0),
            failed(Cause::Requested, true),
            t1,
        )
        .to(|l| l.state = State::Failed),
        row(
            "restart after exit fails",
            Life {
                pid: None,
                ..stopping(t0, Phase::Kill, t1)
            },
            failed(Cause::Restarting, true),
            t1,
        )
        .to(|l| l.state = State::Failed)
        .fx(vec![note("cannot start x: nope")]),
        row(
            "retry fails: scheduled again, streak not counted",
            Life {
                next_start: None,
                restarts: 1,
                ..in_backoff(t0, t1)
            },
            failed(Cause::Retry, true),
            t1,
        )
        .to(move |l| {
            l.state = State::Backoff;
            l.next_start = Some(t1 + 200 * MS);
        })
        .fx(vec![
            note("cannot start x: nope"),
            note("restarting in 0.2s"),
        ]),
    ]);
}

#[test]
fn registering() {
    let t0 = Instant::now();
    let t5 = t0 + 5 * MS;
    let reg = |pid| Event::Registered {
        kind: "demo".into(),
        version: "1.0".into(),
        pid,
    };
    let registered = || Effect::Registered {
        kind: "demo".into(),
        version: "1.0".into(),
    };
    check(vec![
        row("register: ready", starting(t0), reg(PID), t5)
            .to(move |l| {
                l.state = State::Ready;
                l.registered_at = Some(t5);
                l.next_ping = t5 + S;
            })
            .fx(vec![
                note("registered: demo 1.0 (pid 100) in 5.0 ms"),
                registered(),
            ]),
        row("register with another pid", starting(t0), reg(7), t5)
            .to(move |l| {
                l.state = State::Ready;
                l.registered_at = Some(t5);
                l.next_ping = t5 + S;
            })
            .fx(vec![
                note("registered: demo 1.0 (pid 7) in 5.0 ms"),
                note("note: registered pid differs from the started pid"),
                registered(),
            ]),
        row("registered twice", ready(t0), reg(PID), t5)
            .fx(vec![note("registered twice; ignored")]),
        row(
            "register while stopping: stays stopping",
            Life {
                state: State::Stopping,
                ..starting(t0)
            },
            reg(PID),
            t5,
        )
        .to(move |l| {
            l.registered_at = Some(t5);
            l.next_ping = t5 + S;
        })
        .fx(vec![
            note("registered: demo 1.0 (pid 100) in 5.0 ms"),
            registered(),
        ]),
        row("external registers", Life::attached(PID, t0), reg(PID), t5)
            .to(move |l| {
                l.state = State::Ready;
                l.registered_at = Some(t5);
                l.next_ping = t5 + S;
            })
            .fx(vec![
                note("registered: demo 1.0 (pid 100) in 5.0 ms"),
                registered(),
            ]),
    ]);
}

#[test]
fn ready_timeout() {
    let t0 = Instant::now();
    let due = t0 + 10 * S;
    check(vec![
        row(
            "not registered in time: killed",
            starting(t0),
            Event::ReadyTimeout,
            due,
        )
        .to(move |l| {
            l.state = State::Stopping;
            l.stop = Some((Phase::Kill, due + 5 * S));
        })
        .fx([
            kill(PID),
            vec![note("did not register within 10.0s: sent SIGKILL")],
        ]
        .concat()),
        row(
            "early: nothing",
            starting(t0),
            Event::ReadyTimeout,
            due - MS,
        ),
        row(
            "already ready: nothing",
            ready(t0),
            Event::ReadyTimeout,
            due,
        ),
        row(
            "external: taken as ready",
            Life::attached(PID, t0),
            Event::ReadyTimeout,
            due,
        )
        .to(|l| l.state = State::Ready),
    ]);
}

#[test]
fn pings() {
    let t0 = Instant::now();
    let due = t0 + S;
    let mut lax = pol();
    lax.ping_failures = 0;
    check(vec![
        row("ping due: send one", ready(t0), Event::PingDue, due)
            .to(move |l| l.next_ping = due + S)
            .fx(vec![Effect::SendPing]),
        row("ping not due: nothing", ready(t0), Event::PingDue, due - MS),
        row(
            "ping due while starting: nothing",
            starting(t0),
            Event::PingDue,
            due,
        ),
        row("ping sent", ready(t0), Event::PingSent { nonce: 9 }, due)
            .to(move |l| l.health = Some((9, due))),
        row(
            "answered",
            Life {
                health: Some((9, t0)),
                missed: 2,
                ..ready(t0)
            },
            Event::Pong { nonce: 9 },
            t0 + 3 * MS,
        )
        .to(|l| {
            l.health = None;
            l.missed = 0;
        })
        .fx(vec![Effect::RecordRtt(3 * MS)]),
        row(
            "another nonce: nothing",
            Life {
                health: Some((9, t0)),
                ..ready(t0)
            },
            Event::Pong { nonce: 8 },
            t0 + 3 * MS,
        ),
        row(
            "pong without a ping: nothing",
            ready(t0),
            Event::Pong { nonce: 9 },
            t0 + 3 * MS,
        ),
        row(
            "unanswered: one missed, no second ping",
            Life {
                health: Some((9, t0)),
                ..ready(t0)
            },
            Event::PingDue,
            due,
        )
        .to(move |l| {
            l.missed = 1;
            l.next_ping = due + S;
        }),
        row(
            "second miss",
            Life {
                health: Some((9, t0)),
                missed: 1,
                ..ready(t0)
            },
            Event::PingDue,
            due,
        )
        .to(move |l| {
            l.missed = 2;
            l.next_ping = due + S;
        }),
        row(
            "ping_failures misses: killed",
            Life {
                health: Some((9, t0)),
                missed: 2,
                ..ready(t0)
            },
            Event::PingDue,
            due,
        )
        .to(move |l| {
            l.missed = 3;
            l.state = State::Stopping;
            l.stop = Some((Phase::Kill, due + 5 * S));
        })
        .fx([kill(PID), vec![note("missed 3 pings: sent SIGKILL")]].concat()),
        row(
            "ping_failures 0 counts as 1",
            Life {
                health: Some((9, t0)),
                ..ready(t0)
            },
            Event::PingDue,
            due,
        )
        .policy(lax)
        .to(move |l| {
            l.missed = 1;
            l.state = State::Stopping;
            l.stop = Some((Phase::Kill, due + 5 * S));
        })
        .fx([kill(PID), vec![note("missed 1 pings: sent SIGKILL")]].concat()),
        row(
            "external misses: failed, not killed",
            Life {
                health: Some((9, t0)),
                missed: 2,
                ..external_ready(t0)
            },
            Event::PingDue,
            due,
        )
        .to(|l| {
            l.missed = 3;
            l.state = State::Failed;
        })
        .fx(vec![note("missed 3 pings")]),
    ]);
}

fn exited(code: i32) -> Event {
    Event::Exited {
        exit: Exit::Code(code),
        jitter: 0.5,
    }
}

#[test]
fn exits_by_restart_policy() {
    let t0 = Instant::now();
    let t1 = t0 + S;
    let with = |restart| Life {
        restart,
        ..ready(t0)
    };
    let ended = |s: &str| {
        vec![
            Effect::Signal(Target::Group(PID), Sig::Kill),
            note(&format!("ended: {s}, ran 1.0s")),
        ]
    };
    let backoff = move |l: &mut Life| {
        l.pid = None;
        l.streak = 1;
        l.state = State::Backoff;
        l.next_start = Some(t1 + 200 * MS);
    };
    let over = |state| {
        move |l: &mut Life| {
            l.pid = None;
            l.state = state;
        }
    };
    let restarting = || note("restarting in 0.2s");
    check(vec![
        row(
            "on-failure, exit 1: backoff",
            with(Restart::OnFailure),
            exited(1),
            t1,
        )
        .to(backoff)
        .fx([ended("exit 1"), vec![restarting()]].concat()),
        row(
            "on-failure, signal: backoff",
            with(Restart::OnFailure),
            Event::Exited {
                exit: Exit::Signal(9),
                jitter: 0.5,
            },
            t1,
        )
        .to(backoff)
        .fx([ended("signal 9 (KILL)"), vec![restarting()]].concat()),
        row(
            "on-failure, exit 0: exited",
            with(Restart::OnFailure),
            exited(0),
            t1,
        )
        .to(over(State::Exited))
        .fx(ended("exit 0")),
        row(
            "always, exit 0: backoff",
            with(Restart::Always),
            exited(0),
            t1,
        )
        .to(backoff)
        .fx([ended("exit 0"), vec![restarting()]].concat()),
        row(
            "always, exit 1: backoff",
            with(Restart::Always),
            exited(1),
            t1,
        )
        .to(backoff)
        .fx([ended("exit 1"), vec![restarting()]].concat()),
        row("never, exit 1: failed", with(Restart::Never), exited(1), t1)
            .to(over(State::Failed))
            .fx(ended("exit 1")),
        row("never, exit 0: exited", with(Restart::Never), exited(0), t1)
            .to(over(State::Exited))
            .fx(ended("exit 0")),
        row(
            "external, exit -1: exited, never restarted",
            external_ready(t0),
            exited(-1),
            t1,
        )
        .to(over(State::Exited))
        .fx(vec![note("ended: ran 1.0s")]),
        row(
            "wanted down: exited",
            Life {
                want: Want::Down,
                ..with(Restart::Always)
            },
            exited(1),
            t1,
        )
        .to(over(State::Exited))
        .fx(ended("exit 1")),
        row(
            "being restarted: spawned again at once",
            Life {
                want: Want::Restart,
                ..with(Restart::Never)
            },
            exited(0),
            t1,
        )
        .to(|l| {
            l.pid = None;
            l.want = Want::Up;
            l.restarts = 1;
        })
        .fx([ended("exit 0"), vec![Effect::Spawn(Cause::Restarting)]].concat()),
        row(
            "exit during stopping: deadline and ping dropped",
            Life {
                want: Want::Down,
                health: Some((3, t0)),
                ..stopping(t0, Phase::Term, t1 + S)
            },
            Event::Exited {
                exit: Exit::Signal(15),
                jitter: 0.5,
            },
            t1,
        )
        .to(|l| {
            l.pid = None;
            l.stop = None;
            l.health = None;
            l.state = State::Exited;
        })
        .fx(ended("signal 15 (TERM)")),
    ]);
}

#[test]
fn backoff_doubles_to_the_max() {
    let p = pol();
    let ms = |n: u64| Duration::from_millis(n);
    let table = [
        (0, ms(200)),
        (1, ms(200)),
        (2, ms(400)),
        (3, ms(800)),
        (4, ms(1600)),
        (8, ms(25_600)),
        (9, ms(30_000)),
        (31, ms(30_000)),
        (40, ms(30_000)),
        (u32::MAX, ms(30_000)),
    ];
    for (streak, want) in table {
        assert_eq!(backoff(&p, streak), want, "streak {streak}");
    }
}

#[test]
fn jitter_stays_within_bounds() {
    let d = Duration::from_secs(1);
    assert_eq!(jittered(d, 0.2, 0.0), Duration::from_millis(800));
    assert_eq!(jittered(d, 0.2, 0.5), d);
    assert_eq!(jittered(d, 0.2, 0.75), Duration::from_millis(1100));
    assert_eq!(jittered(d, 0.0, 0.9), d);
    assert_eq!(jittered(d, 1.0, 0.0), Duration::ZERO);
    for i in 0..1000 {
        let unit = f64::from(i) / 1000.0;
        let j = jittered(d, 0.2, unit);
        assert!(
            j >= Duration::from_millis(800) && j < Duration::from_millis(1200),
            "{unit}: {j:?}"
        );
    }
}

#[test]
fn restart_scheduling() {
    let t0 = Instant::now();
    let t1 = t0 + 61 * S;
    let run = |streak, starts: Vec<Instant>| Life {
        streak,
        starts: starts.into(),
        spawned_at: t1 - S,
        registered_at: Some(t1 - S),
        ..ready(t0)
    };
    let ended = vec![
        Effect::Signal(Target::Group(PID), Sig::Kill),
        note("ended: exit 1, ran 1.0s"),
    ];
    let jit = |jitter| Event::Exited {
        exit: Exit::Code(1),
        jitter,
    };
    let recent: Vec<Instant> = (0..5).map(|i| t1 - (i + 1) * S).collect();
    check(vec![
        row(
            "third failure: 800 ms, low jitter",
            run(2, vec![]),
            jit(0.0),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 3;
            l.state = State::Backoff;
            l.next_start = Some(t1 + 640 * MS);
        })
        .fx([ended.clone(), vec![note("restarting in 0.6s")]].concat()),
        row(
            "third failure: 800 ms, high jitter",
            run(2, vec![]),
            jit(0.75),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 3;
            l.state = State::Backoff;
            l.next_start = Some(t1 + 880 * MS);
        })
        .fx([ended.clone(), vec![note("restarting in 0.9s")]].concat()),
        row(
            "start_limit starts in the window: degraded",
            run(1, recent.clone()),
            jit(0.5),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 2;
            l.degraded = true;
            l.state = State::Degraded;
            l.next_start = Some(t1 + 300 * S);
        })
        .fx([
            ended.clone(),
            vec![note("degraded: 5 starts within 1m0s; next try in 5m0s")],
        ]
        .concat()),
        row(
            "starts older than the window are forgotten",
            run(1, [vec![t0], recent[..4].to_vec()].concat()),
            jit(0.5),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 2;
            l.starts.pop_front();
            l.state = State::Backoff;
            l.next_start = Some(t1 + 400 * MS);
        })
        .fx([ended.clone(), vec![note("restarting in 0.4s")]].concat()),
        row(
            "degraded stays degraded",
            Life {
                degraded: true,
                ..run(6, vec![t1 - S])
            },
            jit(0.5),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 7;
            l.state = State::Degraded;
            l.next_start = Some(t1 + 300 * S);
        })
        .fx([
            ended.clone(),
            vec![note("degraded: 1 starts within 1m0s; next try in 5m0s")],
        ]
        .concat()),
        row(
            "up stable_after: streak and degraded forgiven",
            Life {
                degraded: true,
                registered_at: Some(t1 - 10 * S),
                spawned_at: t1 - 10 * S,
                ..run(6, vec![t1 - 10 * S])
            },
            jit(0.5),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 1;
            l.degraded = false;
            l.state = State::Backoff;
            l.next_start = Some(t1 + 200 * MS);
        })
        .fx(vec![
            Effect::Signal(Target::Group(PID), Sig::Kill),
            note("ended: exit 1, ran 10.0s"),
            note("restarting in 0.2s"),
        ]),
        row(
            "just under stable_after: not forgiven",
            Life {
                degraded: true,
                registered_at: Some(t1 - 10 * S + MS),
                spawned_at: t1 - 10 * S,
                ..run(6, vec![t1 - 10 * S])
            },
            jit(0.5),
            t1,
        )
        .to(move |l| {
            l.pid = None;
            l.streak = 7;
            l.state = State::Degraded;
            l.next_start = Some(t1 + 300 * S);
        })
        .fx(vec![
            Effect::Signal(Target::Group(PID), Sig::Kill),
            note("ended: exit 1, ran 10.0s"),
            note("degraded: 1 starts within 1m0s; next try in 5m0s"),
        ]),
    ]);
}

#[test]
fn restart_timers() {
    let t0 = Instant::now();
    let due = t0 + 200 * MS;
    let degraded = Life {
        state: State::Degraded,
        degraded: true,
        ..in_backoff(t0, due)
    };
    check(vec![
        row(
            "backoff over: spawn",
            in_backoff(t0, due),
            Event::RestartDue,
            due,
        )
        .to(|l| {
            l.next_start = None;
            l.restarts = 1;
        })
        .fx(vec![Effect::Spawn(Cause::Retry)]),
        row(
            "backoff not over: nothing",
            in_backoff(t0, due),
            Event::RestartDue,
            due - MS,
        ),
        row(
            "degraded retry: spawn",
            degraded.clone(),
            Event::RestartDue,
            due,
        )
        .to(|l| {
            l.next_start = None;
            l.restarts = 1;
        })
        .fx(vec![Effect::Spawn(Cause::Retry)]),
        row(
            "stopped meanwhile: nothing",
            Life {
                state: State::Exited,
                ..in_backoff(t0, due)
            },
            Event::RestartDue,
            due,
        ),
    ]);
}

#[test]
fn stopping_step_by_step() {
    let t0 = Instant::now();
    let t1 = t0 + S;
    let asked = |l: &Life| Life {
        want: Want::Down,
        state: State::Stopping,
        ..l.clone()
    };
    let ext_stopping = |phase, deadline| Life {
        state: State::Stopping,
        stop: Some((phase, deadline)),
        ..external_ready(t0)
    };
    check(vec![
        row(
            "sd: shutdown message",
            ready(t0),
            Event::StopRequested { kill: false },
            t1,
        )
        .to(|l| {
            l.want = Want::Down;
            l.state = State::Stopping;
        })
        .fx(vec![Effect::SendShutdown { grace: 3 * S }]),
        row(
            "sent: SIGTERM armed at shutdown_grace",
            asked(&ready(t0)),
            Event::ShutdownSent { ok: true },
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Signal, t1 + 3 * S)))
        .fx(vec![note("shutdown requested (SIGTERM in 3.0s)")]),
        row(
            "not sent: SIGTERM now",
            asked(&ready(t0)),
            Event::ShutdownSent { ok: false },
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Term, t1 + 2 * S)))
        .fx(vec![
            Effect::Signal(Target::Group(PID), Sig::Term),
            note("not registered: sent SIGTERM"),
        ]),
        row(
            "not registered: SIGTERM now",
            asked(&starting(t0)),
            Event::ShutdownSent { ok: true },
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Term, t1 + 2 * S)))
        .fx(vec![
            Effect::Signal(Target::Group(PID), Sig::Term),
            note("not registered: sent SIGTERM"),
        ]),
        row(
            "stale shutdown outcome: nothing",
            stopping(t0, Phase::Kill, t1),
            Event::ShutdownSent { ok: true },
            t1,
        ),
        row(
            "shutdown grace over: SIGTERM",
            stopping(t0, Phase::Signal, t1),
            Event::StopDeadline,
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Term, t1 + 2 * S)))
        .fx(vec![
            Effect::Signal(Target::Group(PID), Sig::Term),
            note("no exit within 3.0s: sent SIGTERM"),
        ]),
        row(
            "external: SIGTERM through the pidfd",
            ext_stopping(Phase::Signal, t1),
            Event::StopDeadline,
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Term, t1 + 2 * S)))
        .fx(vec![
            Effect::Signal(Target::Pidfd, Sig::Term),
            note("no exit within 3.0s: sent SIGTERM"),
        ]),
        row(
            "term grace over: SIGKILL",
            stopping(t0, Phase::Term, t1),
            Event::StopDeadline,
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Kill, t1 + 5 * S)))
        .fx([
            kill(PID),
            vec![note("no exit within 2.0s of SIGTERM: sent SIGKILL")],
        ]
        .concat()),
        row(
            "external: SIGKILL through the pidfd only",
            ext_stopping(Phase::Term, t1),
            Event::StopDeadline,
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Kill, t1 + 5 * S)))
        .fx(vec![
            Effect::Signal(Target::Pidfd, Sig::Kill),
            note("no exit within 2.0s of SIGTERM: sent SIGKILL"),
        ]),
        row(
            "still alive after SIGKILL: again",
            stopping(t0, Phase::Kill, t1),
            Event::StopDeadline,
            t1,
        )
        .to(move |l| l.stop = Some((Phase::Kill, t1 + 5 * S)))
        .fx([kill(PID), vec![note("still alive: sent SIGKILL")]].concat()),
        row(
            "deadline not reached: nothing",
            stopping(t0, Phase::Term, t1),
            Event::StopDeadline,
            t1 - MS,
        ),
        row("no deadline: nothing", ready(t0), Event::StopDeadline, t1),
        row(
            "shutdown deadline without a process: disarmed",
            Life {
                pid: None,
                ..stopping(t0, Phase::Signal, t1)
            },
            Event::StopDeadline,
            t1,
        )
        .to(|l| l.stop = None),
        row(
            "sd while stopping: nothing more",
            stopping(t0, Phase::Signal, t1),
            Event::StopRequested { kill: false },
            t0,
        )
        .to(|l| l.want = Want::Down),
        row(
            "kill: SIGKILL now",
            ready(t0),
            Event::StopRequested { kill: true },
            t1,
        )
        .to(move |l| {
            l.want = Want::Down;
            l.state = State::Stopping;
            l.stop = Some((Phase::Kill, t1 + 5 * S));
        })
        .fx([kill(PID), vec![note("kill requested: sent SIGKILL")]].concat()),
        row("ring broken: SIGKILL now", ready(t0), Event::RingBroken, t1)
            .to(move |l| {
                l.state = State::Stopping;
                l.stop = Some((Phase::Kill, t1 + 5 * S));
            })
            .fx([kill(PID), vec![note("protocol violation: sent SIGKILL")]].concat()),
        row(
            "ring broken without a process: nothing",
            in_backoff(t0, t1),
            Event::RingBroken,
            t1,
        ),
    ]);
}

#[test]
fn stop_when_not_running() {
    let t0 = Instant::now();
    let t1 = t0 + MS;
    let gone = |l: &mut Life| {
        l.want = Want::Down;
        l.next_start = None;
        l.state = State::Exited;
    };
    let failed = Life {
        state: State::Failed,
        pid: None,
        ..starting(t0)
    };
    let degraded = Life {
        state: State::Degraded,
        ..in_backoff(t0, t1)
    };
    for kill in [false, true] {
        let sd = Event::StopRequested { kill };
        check(vec![
            row(
                "stop in backoff: exited",
                in_backoff(t0, t1),
                sd.clone(),
                t1,
            )
            .to(gone),
            row(
                "stop while degraded: exited",
                degraded.clone(),
                sd.clone(),
                t1,
            )
            .to(gone),
            row("stop while waiting: exited", waiting(t0), sd.clone(), t1).to(gone),
            row(
                "stop when failed: stays failed",
                failed.clone(),
                sd.clone(),
                t1,
            )
            .to(|l| l.want = Want::Down),
        ]);
    }
}

#[test]
fn restart_and_quit_requests() {
    let t0 = Instant::now();
    let t1 = t0 + MS;
    let crashing = |l: Life| Life {
        degraded: true,
        streak: 4,
        starts: VecDeque::from([t0, t0]),
        ..l
    };
    let failed = Life {
        state: State::Failed,
        pid: None,
        ..starting(t0)
    };
    let forgiven = |l: &mut Life| {
        l.degraded = false;
        l.streak = 0;
        l.starts.clear();
    };
    check(vec![
        row(
            "restart a running one: stop first",
            crashing(ready(t0)),
            Event::RestartRequested,
            t1,
        )
        .to(move |l| {
            forgiven(l);
            l.want = Want::Restart;
            l.state = State::Stopping;
        })
        .fx(vec![Effect::SendShutdown { grace: 3 * S }]),
        row(
            "restart a failed one: spawn",
            crashing(failed.clone()),
            Event::RestartRequested,
            t1,
        )
        .to(move |l| {
            forgiven(l);
            l.restarts = 1;
        })
        .fx(vec![Effect::Spawn(Cause::Requested)]),
        row(
            "restart while degraded: spawn now",
            crashing(Life {
                state: State::Degraded,
                ..in_backoff(t0, t1 + S)
            }),
            Event::RestartRequested,
            t1,
        )
        .to(move |l| {
            forgiven(l);
            l.next_start = None;
            l.restarts = 1;
        })
        .fx(vec![Effect::Spawn(Cause::Requested)]),
        row(
            "a reload changes the restart policy: nothing else",
            ready(t0),
            Event::Reconfigured {
                restart: Restart::Never,
            },
            t1,
        )
        .to(|l| l.restart = Restart::Never),
        row(
            "restart while stopping: wait for the exit",
            stopping(t0, Phase::Term, t1),
            Event::RestartRequested,
            t1,
        )
        .to(|l| {
            l.want = Want::Restart;
            l.starts.clear();
        }),
        row(
            "quit: pending restart dropped",
            in_backoff(t0, t1),
            Event::QuitRequested,
            t1,
        )
        .to(|l| {
            l.want = Want::Down;
            l.next_start = None;
            l.state = State::Exited;
        }),
        row(
            "quit: waiting one exits",
            waiting(t0),
            Event::QuitRequested,
            t1,
        )
        .to(|l| {
            l.want = Want::Down;
            l.state = State::Exited;
        }),
        row(
            "quit: running one only marked (stopped in order)",
            ready(t0),
            Event::QuitRequested,
            t1,
        )
        .to(|l| l.want = Want::Down),
    ]);
}

#[test]
fn timers_say_what_is_due() {
    let t0 = Instant::now();
    let p = pol();
    assert_eq!(waiting(t0).state_timer(&p), None);
    assert_eq!(
        starting(t0).state_timer(&p),
        Some((t0 + 10 * S, Event::ReadyTimeout))
    );
    assert_eq!(ready(t0).state_timer(&p), Some((t0 + S, Event::PingDue)));
    assert_eq!(
        in_backoff(t0, t0 + 2 * S).state_timer(&p),
        Some((t0 + 2 * S, Event::RestartDue))
    );
    let degraded = Life {
        state: State::Degraded,
        ..in_backoff(t0, t0 + 300 * S)
    };
    assert_eq!(
        degraded.state_timer(&p),
        Some((t0 + 300 * S, Event::RestartDue))
    );
    assert_eq!(
        Life {
            next_start: None,
            ..degraded
        }
        .state_timer(&p),
        None
    );
    let s = stopping(t0, Phase::Term, t0 + 2 * S);
    assert_eq!(s.stop_timer(), Some(t0 + 2 * S));
    assert_eq!(s.state_timer(&p), None);
    assert_eq!(s.deadline(&p), Some(t0 + 2 * S));
    let r = Life {
        stop: Some((Phase::Kill, t0 + 5 * S)),
        ..ready(t0)
    };
    assert_eq!(r.deadline(&p), Some(t0 + S));
    assert_eq!(waiting(t0).deadline(&p), None);
}

/// A daemon that crashes right after every start: the backoff doubles until `start_limit`
/// starts fall within `start_window`, then it is degraded; a restart by hand forgives it.
#[test]
fn crash_loop_scenario() {
    let p = pol();
    let mut now = Instant::now();
    let mut l = Life::new(Restart::OnFailure, now);
    let mut delays = Vec::new();
    let step = |l: &mut Life, ev, now| {
        let (n, fx) = next(l, ev, now, &p);
        *l = n;
        fx
    };
    assert_eq!(
        step(&mut l, Event::DepsReady, now),
        [Effect::Spawn(Cause::Deps)]
    );
    loop {
        step(&mut l, Event::Spawned { pid: PID }, now);
        now += 10 * MS;
        step(
            &mut l,
            Event::Exited {
                exit: Exit::Code(1),
                jitter: 0.5,
            },
            now,
        );
        let Some(at) = l.next_start else {
            panic!("no restart scheduled")
        };
        if l.state == State::Degraded {
            assert_eq!(at - now, 300 * S);
            break;
        }
        assert_eq!(l.state, State::Backoff);
        delays.push(at - now);
        now = at;
        assert_eq!(
            step(&mut l, Event::RestartDue, now),
            [Effect::Spawn(Cause::Retry)]
        );
    }
    let ms = Duration::from_millis;
    assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1600)]);
    assert_eq!((l.restarts, l.streak, l.starts.len()), (4, 5, 5));
    assert_eq!(
        step(&mut l, Event::RestartRequested, now),
        [Effect::Spawn(Cause::Requested)]
    );
    assert!(!l.degraded && l.streak == 0 && l.starts.is_empty());
}

#[test]
fn retry_failing_while_degraded_stays_degraded() {
    let t0 = Instant::now();
    let t1 = t0 + 300 * S;
    let degraded = Life {
        state: State::Degraded,
        degraded: true,
        next_start: None,
        restarts: 3,
        ..in_backoff(t0, t1)
    };
    check(vec![
        row(
            "degraded retry fails: next try after degraded_retry",
            degraded,
            Event::SpawnFailed {
                cause: Cause::Retry,
                error: "cannot start x: nope".into(),
                process: true,
                jitter: 0.5,
            },
            t1,
        )
        .to(move |l| {
            // The start at t0 is out of the window now.
            l.starts.clear();
            l.state = State::Degraded;
            l.next_start = Some(t1 + 300 * S);
        })
        .fx(vec![
            note("cannot start x: nope"),
            note("degraded: 0 starts within 1m0s; next try in 5m0s"),
        ]),
    ]);
}

/// `sd` of a component that ignores everything: shutdown message, SIGTERM after
/// `shutdown_grace`, SIGKILL `term_grace` later, SIGKILL again every `kill_retry`, then the
/// exit.
#[test]
fn stop_sequence_scenario() {
    let p = pol();
    let t0 = Instant::now();
    let mut l = ready(t0);
    let mut step = |ev, now| {
        let (n, fx) = next(&l, ev, now, &p);
        l = n;
        (l.state, l.stop, fx)
    };
    let (state, stop, fx) = step(Event::StopRequested { kill: false }, t0);
    assert_eq!((state, stop), (State::Stopping, None));
    assert_eq!(fx, [Effect::SendShutdown { grace: 3 * S }]);
    let (_, stop, _) = step(Event::ShutdownSent { ok: true }, t0);
    assert_eq!(stop, Some((Phase::Signal, t0 + 3 * S)));
    let (_, stop, fx) = step(Event::StopDeadline, t0 + 3 * S);
    assert_eq!(stop, Some((Phase::Term, t0 + 5 * S)));
    assert_eq!(fx[0], Effect::Signal(Target::Group(PID), Sig::Term));
    let (_, stop, fx) = step(Event::StopDeadline, t0 + 5 * S);
    assert_eq!(stop, Some((Phase::Kill, t0 + 10 * S)));
    assert_eq!(fx[..2], kill(PID)[..]);
    let (_, stop, fx) = step(Event::StopDeadline, t0 + 10 * S);
    assert_eq!(stop, Some((Phase::Kill, t0 + 15 * S)));
    assert_eq!(fx[..2], kill(PID)[..]);
    let (state, stop, _) = step(
        Event::Exited {
            exit: Exit::Signal(9),
            jitter: 0.5,
        },
        t0 + 11 * S,
    );
    assert_eq!((state, stop), (State::Exited, None));
}
