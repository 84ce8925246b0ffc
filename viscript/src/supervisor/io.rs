//! The supervisor's process side: spawning and attaching, the stdout/stderr pipes, the signal
//! rings and their messages, and reaping.

use super::*;
use crate::lifecycle::Cause;
use crate::render;
use signal::RecvError;

impl Supervisor {
    /// Starts the process of component `id`. The outcome goes to the lifecycle (`Spawned` or
    /// `SpawnFailed`, with `cause`); a failure is also returned.
    pub(super) fn spawn(&mut self, id: u64, cause: Cause, now: Instant) -> Result<(), String> {
        let Some(p) = self.procs.get(&id) else {
            return Err(self.unknown_id(id));
        };
        let Some(app) = self.cfg.app(&p.app).cloned() else {
            let e = format!("app {} is no longer in the config", p.app);
            return self.spawn_failed(id, cause, e, false, now);
        };
        let (chan, fds) = match Channel::create(RING_CAP) {
            Ok(x) => x,
            Err(e) => return self.spawn_failed(id, cause, format!("signal ring: {e}"), false, now),
        };
        let args = p.args.clone();
        let started = Instant::now();
        let sp = match proc::spawn(&app.path, &args, &app.env, id, &fds) {
            Ok(sp) => sp,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", app.name);
                self.note(id, &msg);
                return self.spawn_failed(id, cause, msg, true, now);
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
        let pid = sp.pid;
        let _ = self.feed(id, Event::Spawned { pid }, started);
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

    pub(super) fn spawn_failed(
        &mut self,
        id: u64,
        cause: Cause,
        error: String,
        process: bool,
        now: Instant,
    ) -> Result<(), String> {
        let jitter = self.draw();
        let event = Event::SpawnFailed {
            cause,
            error: error.clone(),
            process,
            jitter,
        };
        let _ = self.feed(id, event, now);
        Err(error)
    }

    pub(super) fn attach_external(
        &mut self,
        name: &str,
        pid: u32,
    ) -> Result<(u64, ClientFds), String> {
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
                Life::attached(pid, now),
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
    pub(super) fn read_pipe(&mut self, id: u64, kind: u64) {
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

    pub(super) fn close_pipe(&mut self, id: u64, kind: u64) {
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

    pub(super) fn drain_rings(&mut self) {
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

    pub(super) fn broken_ring(&mut self, id: u64, e: RecvError) {
        self.note(
            id,
            &format!("signal ring broken ({e}); dropping the connection"),
        );
        if let Some(p) = self.procs.get_mut(&id)
            && let Some(ch) = p.chan.take()
        {
            let _ = epoll::delete(&self.epoll, ch.rx.bell_fd());
        }
        let _ = self.feed(id, Event::RingBroken, Instant::now());
    }

    pub(super) fn message(&mut self, id: u64, m: Msg) {
        let now = Instant::now();
        match m {
            Msg::Register {
                kind, version, pid, ..
            } => {
                let _ = self.feed(id, Event::Registered { kind, version, pid }, now);
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
                        let _ = w.reply.send(render::pong(id, rtt));
                        if let Some(p) = self.procs.get_mut(&id) {
                            p.last_rtt = Some(rtt);
                        }
                        answered = true;
                        break;
                    }
                    i += 1;
                }
                if !answered {
                    let _ = self.feed(id, Event::Pong { nonce }, now);
                }
            }
            Msg::Usage { nonce, usage } => {
                let Some(pos) = self.waiters.iter().position(|w| {
                    w.id == id && matches!(w.kind, WaitKind::Usage { nonce: n } if n == nonce)
                }) else {
                    return;
                };
                let w = self.waiters.swap_remove(pos);
                let _ = w.reply.send(render::usage(id, &usage));
            }
            Msg::Ping { nonce } => {
                let _ = self.send_to(id, &Msg::Pong { nonce });
            }
            Msg::QueryReply { nonce, text } => {
                if let Some(pos) = self.waiters.iter().position(|w| {
                    w.id == id && matches!(w.kind, WaitKind::Query { nonce: n } if n == nonce)
                }) {
                    let w = self.waiters.swap_remove(pos);
                    let _ = w.reply.send(render::inspect(id, text));
                }
            }
            Msg::ShutdownAck => self.note(id, "acknowledged shutdown"),
            Msg::Log { level, line } => {
                self.log_ring(id, Level::from_ring(level), &format!("[{level}] {line}"))
            }
            Msg::Event { name, data } => {
                self.log(id, Source::Ring, &format!("event {name}: {data}"))
            }
            other => self.note(id, &format!("ignored unexpected {other:?}")),
        }
    }

    pub(super) fn reap(&mut self) {
        while let Some((pid, exit)) = proc::reap_one() {
            let id = self
                .procs
                .values()
                .find(|p| p.life.pid == Some(pid) && !p.life.external)
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
            .filter(|p| p.life.external && p.life.alive())
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

    pub(super) fn exited(&mut self, id: u64, exit: Exit) {
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
        p.last_exit = Some(exit);
        let jitter = self.draw();
        let _ = self.feed(id, Event::Exited { exit, jitter }, now);
        let gone = self.procs.get(&id).is_some_and(|p| !p.life.alive());
        if gone {
            self.resolve(
                id,
                |k| matches!(k, WaitKind::Gone),
                |sup, w| {
                    let p = &sup.procs[&w.id];
                    render::stopped(w.id, &p.app, &exit.to_string())
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
}
