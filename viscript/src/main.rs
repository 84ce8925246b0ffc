//! viscript: supervisor, signal server and operator console for Skywire routers.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;
use viscript::cli::{self, Mode, Options};
use viscript::command::Command;
use viscript::config::Config;
use viscript::{control, gui, proc, repl, supervisor};

/// How long the daemon waits, after the supervisor ended, for connections to send their last
/// answers (the reply to `quit` among them).
const QUIT_DRAIN: Duration = Duration::from_secs(2);

fn load(path: &Path) -> Config {
    match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("viscript: {e}");
            std::process::exit(2);
        }
    }
}

/// The socket: the option, else the config's `settings.socket` (if the config loads), else
/// the default.
fn socket_of(opts: &Options, cfg: Option<&Config>) -> PathBuf {
    opts.socket.clone().unwrap_or_else(|| {
        let loaded;
        let cfg = match cfg {
            Some(c) => Some(c),
            None => {
                loaded = Config::load(&opts.config).ok();
                loaded.as_ref()
            }
        };
        cfg.and_then(|c| c.settings.socket.clone())
            .unwrap_or_else(control::default_socket)
    })
}

/// Termination signals are blocked in every thread (threads inherit the mask) and handled on
/// one thread: a graceful `quit`, then exit. Children get a clean mask from std's spawn.
fn main() {
    let inv = match cli::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => e.exit(),
    };
    let opts = inv.options;
    match inv.mode {
        Mode::Serve { metrics } => {
            std::process::exit(run_supervisor(&opts, Some(metrics)));
        }
        Mode::Headless => std::process::exit(run_supervisor(&opts, None)),
        Mode::Check => std::process::exit(run_check(&opts.config)),
        Mode::Gui { refresh_ms, bare } => {
            if bare && !std::io::stdout().is_terminal() {
                eprintln!("viscript: no command; see `viscript --help` (the GUI needs a terminal)");
                std::process::exit(2);
            }
            std::process::exit(run_gui(&opts, Duration::from_millis(refresh_ms)));
        }
        Mode::Console(tokens) => {
            let socket = socket_of(&opts, None);
            std::process::exit(control::one_shot(&socket, &tokens, opts.json));
        }
    }
}

/// `check`: loads and validates the catalogue (exit 2 with the error, as `serve` would); on
/// success one line on stdout, and a warning on stderr per app whose executable is missing.
fn run_check(path: &Path) -> i32 {
    let cfg = load(path);
    for app in &cfg.apps {
        if !app.path.is_file() {
            eprintln!(
                "viscript: warning: app {}: {}: no such file",
                app.name,
                app.path.display()
            );
        }
    }
    let autostart: Vec<&str> = cfg
        .start_order()
        .into_iter()
        .filter(|a| a.autostart)
        .map(|a| a.name.as_str())
        .collect();
    println!(
        "{}: ok, {} apps, autostart: {}",
        path.display(),
        cfg.apps.len(),
        if autostart.is_empty() {
            "none".to_string()
        } else {
            autostart.join(", ")
        }
    );
    0
}

/// `serve` (the daemon on its socket; `Some(its --metrics)`) or the headless console (`None`):
/// the supervisor in this process.
fn run_supervisor(opts: &Options, serve: Option<Option<SocketAddr>>) -> i32 {
    let cfg = load(&opts.config);
    let socket = socket_of(opts, Some(&cfg));
    // Bound before anything starts, so a taken port is an error with nothing to undo.
    let metrics = match serve.flatten().map(TcpListener::bind) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!("viscript: --metrics: cannot listen: {e}");
            return 2;
        }
    };
    let serve = serve.is_some();
    if let Err(e) = proc::become_subreaper() {
        eprintln!("viscript: cannot become child subreaper ({e}); orphans go to init");
    }
    let listener = if serve {
        match control::bind(&socket) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("viscript: {e}");
                return 2;
            }
        }
    } else {
        None
    };
    // Only the daemon speaks sd_notify (the headless console is not a service).
    let notifier = if serve {
        viscript::notify::Notifier::from_env()
    } else {
        None
    };
    let (handle, thread) = match start_blocked(cfg, notifier, serve) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("viscript: cannot start the supervisor: {e}");
            return 1;
        }
    };
    if let Some(l) = metrics {
        match l.local_addr() {
            Ok(a) => eprintln!("viscript: metrics on http://{a}/metrics"),
            Err(e) => eprintln!("viscript: metrics on an unknown address ({e})"),
        }
        let h = handle.clone();
        std::thread::spawn(move || viscript::metrics::serve(l, h));
    }
    if let Some(l) = listener {
        eprintln!("viscript: serving on {}", socket.display());
        let h = handle.clone();
        let active = control::Active::default();
        let a = active.clone();
        std::thread::spawn(move || control::serve(l, h, a));
        let _ = thread.join();
        let _ = std::fs::remove_file(&socket);
        // The supervisor answered `quit` as it ended; let the connections write the answers.
        active.wait_idle(QUIT_DRAIN);
        return 0;
    }
    let code = repl::run(&handle, opts.json);
    let _ = thread.join();
    code
}

/// The terminal GUI: against the daemon when one answers on the socket, else with the
/// supervisor in this process (stopped when the GUI quits).
fn run_gui(opts: &Options, refresh: Duration) -> i32 {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!("viscript: the GUI needs a terminal; use `viscript COMMAND` or --headless");
        return 2;
    }
    let cfg = Config::load(&opts.config);
    let socket = socket_of(opts, cfg.as_ref().ok());
    let remote = gui::Remote::new(socket);
    if remote.reachable() {
        // Signals only restore the terminal; the daemon keeps running.
        let (_, rx) = std::sync::mpsc::sync_channel(1);
        handle_signals_deferred(rx, true, false);
        return match gui::run(std::sync::Arc::new(remote), refresh) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("viscript: gui: {e}");
                1
            }
        };
    }
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "viscript: no daemon at {} and the config does not load: {e}",
                remote.socket.display()
            );
            return 2;
        }
    };
    if let Err(e) = proc::become_subreaper() {
        eprintln!("viscript: cannot become child subreaper ({e}); orphans go to init");
    }
    let (handle, thread) = match start_blocked_with(cfg, true, None, false) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("viscript: cannot start the supervisor: {e}");
            return 1;
        }
    };
    let r = gui::run(std::sync::Arc::new(gui::Embedded { handle }), refresh);
    let _ = thread.join();
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("viscript: gui: {e}");
            1
        }
    }
}

/// With `hup_reloads` (the daemon), SIGHUP is `reload`, not a termination signal.
fn start_blocked(
    cfg: Config,
    notifier: Option<viscript::notify::Notifier>,
    hup_reloads: bool,
) -> std::io::Result<(supervisor::Handle, std::thread::JoinHandle<()>)> {
    start_blocked_with(cfg, false, notifier, hup_reloads)
}

fn start_blocked_with(
    cfg: Config,
    tui: bool,
    notifier: Option<viscript::notify::Notifier>,
    hup_reloads: bool,
) -> std::io::Result<(supervisor::Handle, std::thread::JoinHandle<()>)> {
    // The mask must be in place before the supervisor thread exists; handle_signals blocks it
    // for this thread, and the supervisor thread inherits it.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle_signals_deferred(rx, tui, hup_reloads);
    let r = supervisor::start_notifying(cfg, notifier)?;
    let _ = tx.send(r.0.clone());
    Ok(r)
}

/// With `tui`, the terminal is restored before anything else (the GUI owns it). With
/// `hup_reloads`, SIGHUP reloads the config (its outcome on stderr) and the wait goes on.
fn handle_signals_deferred(
    rx: std::sync::mpsc::Receiver<supervisor::Handle>,
    tui: bool,
    hup_reloads: bool,
) {
    let mut handle = None;
    signal::term::on_signals(move |sig| {
        if handle.is_none() {
            handle = rx.recv().ok();
        }
        if hup_reloads && sig == signal::term::SIGHUP {
            if let Some(h) = &handle {
                let r = h.call(Command::Reload(None));
                eprintln!("viscript: SIGHUP: {}", r.text);
            }
            return true;
        }
        if tui {
            gui::restore_terminal();
        }
        if let Some(h) = &handle {
            let r = h.call(Command::Quit);
            eprintln!("viscript: signal {sig}: {}", r.text);
        }
        std::process::exit(0);
    });
}
