//! The real GUI in a detached 80x24 tmux session: keys in (send-keys), screen out
//! (capture-pane). Skipped, with a note, when tmux is not installed.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A tmux server and session of our own (its own socket, so nothing else is touched); the
/// session is killed on drop.
struct Tmux {
    server: String,
    session: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env_remove("TMUX")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `viscript ARGS gui` in an 80x24 session. The shell prints the exit status after
    /// the GUI ends and keeps the pane open, so the test sees how it ended.
    fn start(viscript_args: &str) -> Tmux {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let t = Tmux {
            server: format!("viscript-test-{}-{n}", std::process::id()),
            session: format!("gui-{}-{n}", std::process::id()),
        };
        let cmd = format!(
            "TERM=xterm-256color '{}' {viscript_args} --refresh-ms 200 gui; echo GUI-EXITED $?; sleep 60",
            viscript_bin().display()
        );
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            &t.session,
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.tmux(&["send-keys", "-t", &self.session, k]);
            assert!(out.status.success(), "send-keys {k}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
        assert!(out.status.success(), "send-keys -l {text}");
        std::thread::sleep(Duration::from_millis(100));
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-p", "-t", &self.session])
                .stdout,
        )
        .into_owned()
    }

    /// Polls the screen until `pred` holds.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-session", "-t", &self.session]);
    }
}

/// The components-table row of component `id` (`│>1   demo   4242   ready ...`).
fn row(screen: &str, id: u64) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let words: Vec<String> = l
            .trim_matches('│')
            .trim_start_matches('>')
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        (words.first().map(String::as_str) == Some(&id.to_string())
            && words.get(1).map(String::as_str) == Some("demo"))
        .then_some(words)
    })
}

fn state_is(screen: &str, id: u64, state: &str) -> bool {
    row(screen, id).is_some_and(|w| w.get(3).map(String::as_str) == Some(state))
}

fn args(config: &Path, socket: &Path) -> String {
    format!(
        "--config '{}' --socket '{}'",
        config.display(),
        socket.display()
    )
}

#[test]
fn gui_starts_lists_and_stops_through_the_daemon() {
    if !have_tmux() {
        eprintln!("note: tmux is not installed; skipping the GUI end-to-end test");
        return;
    }
    let d = Daemon::start("gui", &demo_config(""));
    let t = Tmux::start(&args(&d.config, &d.socket));
    t.wait("the apps pane", |s| {
        s.contains("apps (1)") && s.contains("demo the demo") && s.contains("0 components")
    });

    // Apps pane (left), s: start the demo with its default arguments.
    t.keys(&["Left", "s"]);
    let s = t.wait("demo ready", |s| state_is(s, 1, "ready"));
    assert!(s.contains("started demo as 1"), "{s}");
    assert_eq!(d.component(1)["state"], "ready");
    // Live rates from its counters, and its output in the log pane.
    t.wait("the ticks rate", |s| s.contains("ticks/s"));
    t.wait("its logs", |s| {
        s.contains("logs: 1 demo") && s.contains("registered")
    });

    // Back to the components pane, d: graceful shutdown.
    t.keys(&["Right", "d"]);
    let s = t.wait("demo exited", |s| state_is(s, 1, "exited"));
    assert!(s.contains("1 (demo) stopped"), "{s}");
    assert_eq!(d.component(1)["state"], "exited");

    // The command line: `:start demo` with Tab completion.
    t.keys(&[":"]);
    t.type_text("start de");
    t.keys(&["Tab", "Enter"]);
    t.wait("second demo ready", |s| state_is(s, 2, "ready"));
    // The same at 100x30 after a resize, and back.
    let _ = t.tmux(&["resize-window", "-t", &t.session, "-x", "100", "-y", "30"]);
    t.wait("resized", |s| {
        s.lines().count() >= 30 && state_is(s, 2, "ready")
    });
    let _ = t.tmux(&["resize-window", "-t", &t.session, "-x", "80", "-y", "24"]);

    // q leaves the GUI; the daemon and its components keep running.
    t.keys(&["q"]);
    let s = t.wait("the GUI to exit", |s| s.contains("GUI-EXITED"));
    assert!(s.contains("GUI-EXITED 0"), "{s}");
    assert!(
        !s.contains("components ("),
        "the alternate screen was left: {s}"
    );
    assert_eq!(d.component(2)["state"], "ready");
    assert!(d.quit().success());
}

#[test]
fn gui_without_a_daemon_runs_the_supervisor_and_stops_it_on_quit() {
    if !have_tmux() {
        eprintln!("note: tmux is not installed; skipping the GUI end-to-end test");
        return;
    }
    let scratch = Scratch::new("gui-embedded");
    let config = scratch.write("config.yaml", &demo_config(""));
    let socket = scratch.dir.join("nobody-here.sock");
    let t = Tmux::start(&args(&config, &socket));
    t.wait("the embedded GUI", |s| s.contains("embedded: q stops all"));
    t.keys(&[":"]);
    t.type_text("start demo");
    t.keys(&["Enter"]);
    let s = t.wait("demo ready", |s| state_is(s, 1, "ready"));
    let pid: u64 = row(&s, 1)
        .and_then(|w| w.get(2).and_then(|p| p.parse().ok()))
        .unwrap_or_else(|| panic!("no pid in\n{s}"));
    assert!(alive(pid));
    t.keys(&["q"]);
    let s = t.wait("the GUI to exit", |s| s.contains("GUI-EXITED"));
    assert!(s.contains("GUI-EXITED 0"), "{s}");
    assert!(!alive(pid), "quitting the embedded GUI left {pid} running");
}
