//! The terminal GUI: a full-screen dashboard (ratatui + crossterm) over a [`Source`].
//!
//! Threads: one reads terminal events, one refreshes (`list`, `ru` of each ready component,
//! `logs` of the selected one, every `refresh`), and each command runs on its own short-lived
//! thread, so a slow `sd` never freezes the screen. They all feed one channel; the main thread
//! sleeps on it, updates the [`App`] and redraws (ratatui only writes the cells that changed).
//! Idle, that is one wake-up per refresh.

pub mod app;
pub mod complete;
pub mod format;
pub mod source;

pub use app::{Action, App, Show, Snapshot};
pub use source::{Embedded, Remote, Source};

use crate::reply::{self, Envelope};
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{cursor, execute};
use serde::Deserialize;
use serde_json::Value;
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The refresh period when none is given.
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(500);

enum Msg {
    Input(Event),
    InputFailed(String),
    Snapshot(Box<Snapshot>),
    Reply {
        tokens: Vec<String>,
        show: Show,
        reply: Value,
    },
}

/// Puts the terminal back: raw mode off, main screen, cursor shown. Safe to call more than once
/// and from any thread (the signal handler thread calls it too).
pub fn restore_terminal() {
    ratatui::restore();
    let _ = execute!(io::stdout(), cursor::Show);
}

/// Restores the terminal when dropped, whatever way the GUI ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Takes a snapshot every `period`, or sooner when nudged.
fn refresher(
    source: Arc<dyn Source>,
    period: Duration,
    followed: Arc<Mutex<Option<app::Followed>>>,
    nudge: Receiver<()>,
    tx: Sender<Msg>,
) {
    let mut have_apps = false;
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if next > now {
            match nudge.recv_timeout(next - now) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        loop {
            match nudge.try_recv() {
                Ok(()) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        next = Instant::now() + period;
        let list = source.call(&["list".to_string()]);
        let ok = Envelope::from_value(&list).ok;
        let apps = if ok && !have_apps {
            let a = source.call(&["apps".to_string()]);
            have_apps = Envelope::from_value(&a).ok;
            Some(a)
        } else {
            None
        };
        if !ok {
            // The daemon may come back with another config.
            have_apps = false;
        }
        let at = Instant::now();
        let mut usage = Vec::new();
        let rows: Vec<reply::Component> = Envelope::from_value(&list)
            .data::<Vec<Value>>()
            .unwrap_or_default()
            .iter()
            .map(|c| reply::Component::deserialize(c).unwrap_or_default())
            .collect();
        for c in rows {
            // Ids start at 1: 0 is a row without one.
            if c.state == "ready" && c.id > 0 {
                let id = c.id;
                usage.push((id, source.call(&["ru".to_string(), id.to_string()])));
            }
        }
        let sel = followed.lock().map(|g| *g).unwrap_or(None);
        let logs = sel.map(|f| {
            let mut tokens = vec![
                "logs".to_string(),
                f.id.to_string(),
                "-n".to_string(),
                app::LOG_FETCH.to_string(),
            ];
            if let Some(min) = f.min {
                tokens.extend(["--level".to_string(), min.name().to_string()]);
            }
            (f.id, source.call(&tokens))
        });
        let snap = Snapshot {
            at,
            list,
            usage,
            logs,
            apps,
        };
        if tx.send(Msg::Snapshot(Box::new(snap))).is_err() {
            return;
        }
    }
}

fn reader(tx: Sender<Msg>) {
    loop {
        match event::read() {
            Ok(ev) => {
                if tx.send(Msg::Input(ev)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::InputFailed(e.to_string()));
                return;
            }
        }
    }
}

/// Runs the GUI until the operator quits. With an embedded source, quitting stops every
/// component. The terminal is restored on return, on error and on panic.
pub fn run(source: Arc<dyn Source>, refresh: Duration) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let (nudge_tx, nudge_rx) = mpsc::channel::<()>();
    let followed = Arc::new(Mutex::new(None::<app::Followed>));
    {
        let (s, f, t) = (source.clone(), followed.clone(), tx.clone());
        std::thread::Builder::new()
            .name("gui-refresh".into())
            .spawn(move || refresher(s, refresh, f, nudge_rx, t))?;
    }
    // The guard first: a half-done init (raw mode on, no alternate screen) is undone too.
    let guard = TerminalGuard;
    // try_init: raw mode, alternate screen, and a panic hook that restores the terminal.
    let mut terminal = ratatui::try_init()?;
    {
        let t = tx.clone();
        std::thread::Builder::new()
            .name("gui-input".into())
            .spawn(move || reader(t))?;
    }
    let mut app = App::new(source.describe(), source.embedded(), refresh);
    let mut following = None;
    let mut result = Ok(());
    'main: loop {
        if let Err(e) = terminal.draw(|f| app.render(f)) {
            result = Err(e);
            break;
        }
        let Ok(first) = rx.recv() else { break };
        // Take everything already queued before drawing again.
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Input(Event::Key(k)) => match app.handle_key(k) {
                    Action::Quit => break 'main,
                    Action::Clear => {
                        if let Err(e) = terminal.clear() {
                            result = Err(e);
                            break 'main;
                        }
                    }
                    Action::None => {}
                    Action::Run { tokens, show } => {
                        let (s, t) = (source.clone(), tx.clone());
                        let spawned = std::thread::Builder::new()
                            .name("gui-command".into())
                            .spawn(move || {
                                let reply = s.call(&tokens);
                                let _ = t.send(Msg::Reply {
                                    tokens,
                                    show,
                                    reply,
                                });
                            });
                        if let Err(e) = spawned {
                            app.pending = app.pending.saturating_sub(1);
                            app.status = Some(app::Status {
                                text: format!("error: cannot run the command: {e}"),
                                error: true,
                            });
                        }
                    }
                },
                Msg::Input(_) => {} // resize and the rest: the redraw below handles them
                Msg::InputFailed(e) => {
                    result = Err(io::Error::other(format!("reading the terminal: {e}")));
                    break 'main;
                }
                Msg::Snapshot(s) => app.apply_snapshot(&s),
                Msg::Reply {
                    tokens,
                    show,
                    reply,
                } => {
                    app.apply_reply(&tokens, &show, &reply);
                    let _ = nudge_tx.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if app.followed() != following {
            following = app.followed();
            if let Ok(mut g) = followed.lock() {
                *g = following;
            }
            let _ = nudge_tx.send(());
        }
    }
    if source.embedded() {
        app.mode = app::Mode::Normal;
        app.status = Some(app::Status {
            text: "stopping every component...".into(),
            error: false,
        });
        let _ = terminal.draw(|f| app.render(f));
        let r = source.call(&["quit".to_string()]);
        drop(terminal);
        drop(guard);
        let t = Envelope::from_value(&r).text;
        if !t.is_empty() {
            eprintln!("viscript: {t}");
        }
    } else {
        drop(terminal);
        drop(guard);
    }
    result
}

#[cfg(test)]
mod tests;
