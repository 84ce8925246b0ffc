//! The operator's commands: what each one does to the supervisor, and its reply.

use super::*;
use crate::render::{self, ListRow};
use crate::reply::{Component, Started};

/// Component kinds (as they register) that read their config again on SIGHUP.
pub const RELOADS_ON_HUP: &[&str] = &["skywire-control"];

impl Supervisor {
    pub(super) fn request(&mut self, req: Req) {
        match req {
            Req::Cmd(cmd, reply) => self.command(cmd, reply),
            Req::Attach { name, pid, reply } => {
                let r = self.attach_external(&name, pid);
                let _ = reply.send(r);
            }
        }
    }

    pub(super) fn command(&mut self, cmd: Command, reply: SyncSender<Reply>) {
        let now = Instant::now();
        if self.quitting.is_some() && !matches!(cmd, Command::List | Command::Quit) {
            let _ = reply.send(Reply::err("viscript is shutting down"));
            return;
        }
        let r = match cmd {
            Command::Apps => self.cmd_apps(),
            Command::Reload(None) => self.cmd_reload(now),
            Command::Reload(Some(id)) => self.cmd_hup(id),
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
                    let started = Started {
                        id,
                        app: p.app.clone(),
                        pid: p.life.pid,
                        ready_ms: None,
                    };
                    let waiting_for = match p.life.pid {
                        Some(_) => Vec::new(),
                        None => self.waiting_for(id),
                    };
                    let mut r = render::started(&started, &waiting_for);
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
                match self.procs.get(&id) {
                    None => Reply::err(self.unknown_id(id)),
                    Some(p) if !p.life.alive() => {
                        let was = p.life.state;
                        let _ = self.feed(id, Event::StopRequested { kill }, now);
                        let p = &self.procs[&id];
                        render::not_running(id, &p.app, was.name(), p.life.state.name())
                    }
                    Some(_) => {
                        let _ = self.feed(id, Event::StopRequested { kill }, now);
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
            Command::Restart(id) => match self.procs.get(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) if p.life.external => Reply::err(format!(
                    "{id} ({}) was started outside viscript; it cannot be restarted from here",
                    p.app
                )),
                Some(_) => {
                    if let Err(e) = self.feed(id, Event::RestartRequested, now) {
                        let _ = reply.send(Reply::err(e));
                        return;
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
            Command::Logs {
                id,
                n,
                follow,
                level,
            } => match self.procs.get(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) => {
                    let min = level.unwrap_or(Level::Trace);
                    let mut r = render::logs(id, &p.logs.tail_at(n, min));
                    if follow {
                        r.follow = Some(self.follow_at(id, 0, min));
                    }
                    r
                }
            },
            Command::Attach(id) => match self.procs.get(&id) {
                None => Reply::err(self.unknown_id(id)),
                Some(p) => {
                    let mut r = render::attached(id, &p.app);
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
                        .find(|p| p.kind == "skywire-control" && p.life.state == State::Ready)
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
                        let ids: Vec<u64> = self.procs.keys().copied().collect();
                        for id in ids {
                            let _ = self.feed(id, Event::QuitRequested, now);
                        }
                        self.quitting = Some((now, vec![reply]));
                    }
                }
                return;
            }
        };
        let _ = reply.send(r);
    }

    pub(super) fn ready_chan(&self, id: u64) -> Result<(), String> {
        let Some(p) = self.procs.get(&id) else {
            return Err(self.unknown_id(id));
        };
        if p.chan.is_none() || p.life.state != State::Ready {
            return Err(match p.life.state {
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

    /// `reload`: the config file read again. On an error nothing changes; else apps that are
    /// gone are stopped, changed ones restarted with their new entry (a component started with
    /// arguments of its own keeps them), new or changed autostart apps started, and the others
    /// left as they are (same ids). Settings apply at once; log buffer sizes to components
    /// started from now on, the control socket at the next start of viscript.
    pub(super) fn cmd_reload(&mut self, now: Instant) -> Reply {
        let new = match Config::load(&self.cfg.path) {
            Ok(c) => c,
            Err(e) => {
                return Reply::err(format!("reload refused, the running config stays:\n{e}"));
            }
        };
        let ch = Changes::between(&self.cfg, &new);
        let socket_moved = new.settings.socket != self.cfg.settings.socket;
        self.cfg = new;
        self.policy = Policy::from_settings(&self.cfg.settings);
        let (mut stopped, mut restarted, mut started, mut external) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Apps with a component restarted here: not started again.
        let mut running = Vec::new();
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            let p = &self.procs[&id];
            let active =
                p.life.want != Want::Down && !matches!(p.life.state, State::Exited | State::Failed);
            if !active {
                continue;
            }
            let label = format!("{} (id {id})", p.app);
            if ch.removed.contains(&p.app) {
                let _ = self.feed(id, Event::StopRequested { kill: false }, now);
                stopped.push(label);
            } else if ch.changed.contains(&p.app) {
                if p.life.external {
                    running.push(p.app.clone());
                    external.push(label);
                    continue;
                }
                let Some(app) = self.cfg.app(&p.app).cloned() else {
                    continue;
                };
                let waiting = p.life.state == State::Waiting;
                if let Some(p) = self.procs.get_mut(&id)
                    && !p.own_args
                {
                    p.args = app.default_args.clone();
                }
                let _ = self.feed(
                    id,
                    Event::Reconfigured {
                        restart: app.restart,
                    },
                    now,
                );
                // One still waiting for its `after` apps starts with the new entry anyway.
                if !waiting {
                    let _ = self.feed(id, Event::RestartRequested, now);
                }
                restarted.push(label);
                running.push(app.name);
            }
        }
        let to_start: Vec<String> = self
            .cfg
            .start_order()
            .into_iter()
            .filter(|a| a.autostart && (ch.added.contains(&a.name) || ch.changed.contains(&a.name)))
            .map(|a| a.name.clone())
            .filter(|name| !running.contains(name) && !self.app_pending(name))
            .collect();
        let mut failed = Vec::new();
        for name in to_start {
            match self.start_app(&name, None) {
                Ok(id) => started.push(format!("{name} (id {id})")),
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        let mut text = format!(
            "reloaded {}: {} apps",
            self.cfg.path.display(),
            self.cfg.apps.len()
        );
        for (what, list) in [
            ("started", &started),
            ("stopped", &stopped),
            ("restarted", &restarted),
            ("unchanged", &ch.same),
            ("started outside viscript, left as they run", &external),
            ("could not start", &failed),
        ] {
            if !list.is_empty() {
                text.push_str(&format!("\n{what}: {}", list.join(", ")));
            }
        }
        if ch.settings {
            text.push_str(if socket_moved {
                "\nsettings: applied; the new control socket at the next start of viscript"
            } else {
                "\nsettings: applied"
            });
        }
        let data = serde_json::json!({
            "path": self.cfg.path,
            "started": started,
            "stopped": stopped,
            "restarted": restarted,
            "unchanged": ch.same,
            "external": external,
            "failed": failed,
            "settings": ch.settings,
        });
        if failed.is_empty() {
            Reply::ok(text, data)
        } else {
            Reply {
                ok: false,
                ..Reply::ok(text, data)
            }
        }
    }

    /// `reload ID`: SIGHUP to the component's process, for the kinds that read their config
    /// again on it ([`RELOADS_ON_HUP`]); it says what it did in its log. Any other kind is
    /// refused: SIGHUP would stop it.
    pub(super) fn cmd_hup(&mut self, id: u64) -> Reply {
        let Some(p) = self.procs.get(&id) else {
            return Reply::err(self.unknown_id(id));
        };
        if !RELOADS_ON_HUP.contains(&p.kind.as_str()) {
            return Reply::err(format!(
                "{id} ({}) does not reload its config on SIGHUP (only {} do); `restart {id}` \
                 starts it again with its entry",
                p.app,
                RELOADS_ON_HUP.join(", ")
            ));
        }
        let (Some(pid), Some(fd)) = (p.life.pid, p.pidfd.as_ref()) else {
            return Reply::err(format!(
                "{id} ({}) is not running ({})",
                p.app,
                p.life.state.name()
            ));
        };
        match proc::signal_pidfd(fd.as_fd(), Signal::HUP) {
            Ok(()) => {
                let text = format!(
                    "sent SIGHUP to {id} ({}, pid {pid}): it reads its config again (see `logs {id}`)",
                    p.app
                );
                let app = p.app.clone();
                self.note(id, "SIGHUP sent (reload)");
                Reply::ok(
                    text,
                    serde_json::json!({ "id": id, "app": app, "pid": pid, "signal": "HUP" }),
                )
            }
            Err(e) => Reply::err(format!("{id} ({}): SIGHUP: {e}", p.app)),
        }
    }

    pub(super) fn cmd_apps(&self) -> Reply {
        render::apps(&self.cfg.apps, &self.cfg.path)
    }

    pub(super) fn cmd_help(&self, app: Option<&str>) -> Reply {
        match app {
            None => render::help(),
            Some(name) => match self.cfg.app(name) {
                None => Reply::err(format!("no app named {name:?}; try `apps`")),
                Some(a) => render::app_help(a),
            },
        }
    }

    pub(super) fn waiting_for(&self, id: u64) -> Vec<String> {
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

    pub(super) fn cmd_list(&self, now: Instant) -> Reply {
        let rows: Vec<ListRow> = self
            .procs
            .values()
            .map(|p| {
                let uptime = p.life.uptime(now);
                ListRow {
                    row: Component {
                        id: p.id,
                        app: p.app.clone(),
                        pid: p.life.pid,
                        state: p.life.state.name().into(),
                        args: p.args.clone(),
                        uptime_ms: uptime.map(|d| d.as_millis() as u64),
                        restarts: p.life.restarts,
                        kind: p.kind.clone(),
                        version: p.version.clone(),
                        external: p.life.external,
                        last_exit: p.last_exit.map(|e| e.to_string()),
                        ping_rtt_us: p.last_rtt.map(|d| d.as_micros() as u64),
                        heartbeat: p.chan.as_ref().map(|c| c.peer_heartbeat()),
                        log_suppressed: p.logs.suppressed_total(),
                    },
                    uptime,
                    waiting_for: if p.life.state == State::Waiting {
                        self.waiting_for(p.id)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        render::list(&rows)
    }

    /// Creates a component for `app` and starts it (or queues it behind its `after` apps,
    /// starting those that are not up).
    pub(super) fn start_app(
        &mut self,
        name: &str,
        args: Option<Vec<String>>,
    ) -> Result<u64, String> {
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
        let own_args = args.is_some();
        self.procs.insert(
            id,
            Proc::new(
                id,
                app.name.clone(),
                args.unwrap_or_else(|| app.default_args.clone()),
                Life::new(app.restart, now),
                None,
                None,
                &self.cfg.settings,
                now,
            ),
        );
        if let Some(p) = self.procs.get_mut(&id) {
            p.own_args = own_args;
        }
        if app.after.iter().all(|d| self.app_ready(d)) {
            if let Err(e) = self.feed(id, Event::DepsReady, now) {
                self.procs.remove(&id);
                return Err(e);
            }
        } else {
            self.note(id, &format!("waiting for {}", app.after.join(", ")));
        }
        Ok(id)
    }
}
