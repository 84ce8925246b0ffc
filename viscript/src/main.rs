//! viscript: supervisor, signal server and operator console for Skywire routers.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use viscript::command::Command;
use viscript::config::Config;
use viscript::{control, gui, proc, repl, supervisor};

/// Supervise and operate the components of a Skywire router.
///
/// Modes:
///   viscript --headless [--config F]        line console, supervisor in this process
///   viscript serve [--config F] [--socket P]  the daemon, with a unix control socket
///   viscript [--socket P] [--json] COMMAND... one command against the daemon
///   viscript [gui] [--socket P] [--config F]  the terminal GUI: attaches to the daemon at the
///                                             socket, else runs the supervisor itself
///
/// Commands: apps, help [APP], start|s [-a] [-w] APP [ARGS...], list|la, ping ID, ru ID,
/// sd ID, kill ID, restart ID, logs ID [-n N] [-f], attach ID, quit.
#[derive(Parser, Debug)]
#[command(name = "viscript", version, verbatim_doc_comment)]
struct Cli {
    /// Run the line console with the supervisor in this process.
    #[arg(long)]
    headless: bool,
    /// The app catalogue.
    #[arg(long, short, default_value = "config.yaml")]
    config: PathBuf,
    /// Control socket of the daemon (default: settings.socket from the config, else
    /// /run/viscript/viscript.sock as root, $XDG_RUNTIME_DIR/viscript.sock otherwise).
    #[arg(long, short)]
    socket: Option<PathBuf>,
    /// Print answers as JSON objects, one per line.
    #[arg(long)]
    json: bool,
    /// GUI refresh period in milliseconds (at least 100).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh_ms: u64,
    /// `serve`, `gui`, or a console command and its arguments (passed exactly as typed).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn load(path: &std::path::Path) -> Config {
    match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("viscript: {e}");
            std::process::exit(2);
        }
    }
}

/// Termination signals are blocked in every thread (threads inherit the mask) and handled on
/// one thread: a graceful `quit`, then exit. Children get a clean mask from std's spawn.
fn main() {
    let cli = Cli::parse();
    let first = cli.command.first().map(String::as_str);
    if cli.headless || first == Some("serve") {
        if cli.headless && !cli.command.is_empty() {
            eprintln!("viscript: --headless takes no command; type commands at its prompt");
            std::process::exit(2);
        }
        let cfg = load(&cli.config);
        let socket = cli
            .socket
            .clone()
            .or_else(|| cfg.settings.socket.clone())
            .unwrap_or_else(control::default_socket);
        if let Err(e) = proc::become_subreaper() {
            eprintln!("viscript: cannot become child subreaper ({e}); orphans go to init");
        }
        let listener = if cli.headless {
            None
        } else {
            match control::bind(&socket) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("viscript: {e}");
                    std::process::exit(2);
                }
            }
        };
        let (handle, thread) = match start_blocked(cfg) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("viscript: cannot start the supervisor: {e}");
                std::process::exit(1);
            }
        };
        if let Some(l) = listener {
            eprintln!("viscript: serving on {}", socket.display());
            let h = handle.clone();
            std::thread::spawn(move || control::serve(l, h));
            let _ = thread.join();
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        }
        let code = repl::run(&handle, cli.json);
        let _ = thread.join();
        std::process::exit(code);
    }
    if first == Some("gui") || (cli.command.is_empty() && std::io::stdout().is_terminal()) {
        std::process::exit(run_gui(&cli));
    }
    if cli.command.is_empty() {
        eprintln!("viscript: no command; see `viscript --help`");
        std::process::exit(2);
    }
    let socket = cli.socket.clone().unwrap_or_else(|| {
        // Use the config's socket if the config is there, else the default.
        Config::load(&cli.config)
            .ok()
            .and_then(|c| c.settings.socket)
            .unwrap_or_else(control::default_socket)
    });
    std::process::exit(control::one_shot(&socket, &cli.command, cli.json));
}

/// The terminal GUI: against the daemon when one answers on the socket, else with the
/// supervisor in this process (stopped when the GUI quits).
fn run_gui(cli: &Cli) -> i32 {
    if cli.command.len() > 1 {
        eprintln!("viscript: gui takes no arguments; type commands after `:` in the GUI");
        return 2;
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!("viscript: the GUI needs a terminal; use `viscript COMMAND` or --headless");
        return 2;
    }
    let refresh = std::time::Duration::from_millis(cli.refresh_ms);
    let cfg = Config::load(&cli.config);
    let socket = cli.socket.clone().unwrap_or_else(|| {
        cfg.as_ref()
            .ok()
            .and_then(|c| c.settings.socket.clone())
            .unwrap_or_else(control::default_socket)
    });
    let remote = gui::Remote::new(socket);
    if remote.reachable() {
        // Signals only restore the terminal; the daemon keeps running.
        let (_, rx) = std::sync::mpsc::sync_channel(1);
        handle_signals_deferred(rx, true);
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
    let (handle, thread) = match start_blocked_with(cfg, true) {
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

fn start_blocked(
    cfg: Config,
) -> std::io::Result<(supervisor::Handle, std::thread::JoinHandle<()>)> {
    start_blocked_with(cfg, false)
}

fn start_blocked_with(
    cfg: Config,
    tui: bool,
) -> std::io::Result<(supervisor::Handle, std::thread::JoinHandle<()>)> {
    // The mask must be in place before the supervisor thread exists; handle_signals blocks it
    // for this thread, and the supervisor thread inherits it.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle_signals_deferred(rx, tui);
    let r = supervisor::start(cfg)?;
    let _ = tx.send(r.0.clone());
    Ok(r)
}

/// With `tui`, the terminal is restored before anything else (the GUI owns it).
fn handle_signals_deferred(rx: std::sync::mpsc::Receiver<supervisor::Handle>, tui: bool) {
    signal::term::on_termination(move |sig| {
        if tui {
            gui::restore_terminal();
        }
        if let Ok(h) = rx.recv() {
            let r = h.call(Command::Quit);
            eprintln!("viscript: signal {sig}: {}", r.text);
        }
        std::process::exit(0);
    });
}
