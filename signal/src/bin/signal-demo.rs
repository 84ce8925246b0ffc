//! An example signal client, used by the tests and the README.
//!
//! Prints its arguments exactly as received (one Rust-quoted list), registers with viscript,
//! answers ping / ru / sd, and counts `ticks` (every 100 ms). Flags it understands (everything
//! else is just printed):
//!
//! - `--crash-after SECS`: panic after SECS seconds (a crash the supervisor must notice).
//! - `--ignore-shutdown`: acknowledge nothing and keep running when told to shut down.
//! - `--register-after SECS`: delay readiness.
//! - `--attach SOCKET`: connect through a running `viscript serve` instead of inherited fds.
//! - `--name NAME`: the component name used with `--attach` (default `signal-demo`).
//! - `--log-every MS`: send a log line through the ring every MS milliseconds.
//! - `--exit-after SECS`: exit cleanly (status 0) after SECS seconds.
//! - `--freeze-after SECS`: stop itself with SIGSTOP after SECS seconds (a hung process).
//! - `--mark FILE`: on shutdown, append `MARK-NAME shutdown` to FILE (`--name` or `demo`).

#![forbid(unsafe_code)]

use signal::{Client, Level};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Opts {
    crash_after: Option<f64>,
    exit_after: Option<f64>,
    register_after: Option<f64>,
    ignore_shutdown: bool,
    attach: Option<String>,
    name: Option<String>,
    log_every: Option<u64>,
    freeze_after: Option<f64>,
    mark: Option<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let secs = |v: String, flag: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--crash-after" => o.crash_after = Some(secs(val(a)?, a)?),
            "--exit-after" => o.exit_after = Some(secs(val(a)?, a)?),
            "--register-after" => o.register_after = Some(secs(val(a)?, a)?),
            "--ignore-shutdown" => o.ignore_shutdown = true,
            "--freeze-after" => o.freeze_after = Some(secs(val(a)?, a)?),
            "--mark" => o.mark = Some(val(a)?),
            "--attach" => o.attach = Some(val(a)?),
            "--name" => o.name = Some(val(a)?),
            "--log-every" => {
                o.log_every = Some(
                    val(a)?
                        .parse()
                        .map_err(|_| "--log-every: not a number".to_string())?,
                )
            }
            _ => {}
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("signal-demo args: {args:?}");
    let _ = std::io::stdout().flush();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("signal-demo: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    if let Some(s) = opts.register_after {
        std::thread::sleep(Duration::from_secs_f64(s));
    }
    let client = match &opts.attach {
        Some(sock) => {
            Client::attach(sock.as_ref(), opts.name.as_deref().unwrap_or("signal-demo")).map(Some)
        }
        None => Client::from_env(),
    };
    let session = match client {
        Ok(Some(c)) => match c.register("signal-demo", env!("CARGO_PKG_VERSION")) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("signal-demo: cannot register: {e}");
                std::process::exit(1);
            }
        },
        Ok(None) => {
            println!("signal-demo: not started by viscript; running standalone");
            None
        }
        Err(e) => {
            eprintln!("signal-demo: cannot connect to viscript: {e}");
            std::process::exit(1);
        }
    };
    if let Some(s) = &session {
        println!("signal-demo: registered");
        let _ = std::io::stdout().flush();
        s.log(Level::Info, "hello from signal-demo");
    }
    let ticks = session.as_ref().map(|s| s.counter("ticks"));
    let mut announced = false;
    let mut last_log = Instant::now();
    loop {
        let shutdown = match &session {
            Some(s) => s.wait_shutdown(Some(Duration::from_millis(100))),
            None => {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        };
        if let Some(t) = &ticks {
            t.fetch_add(1, Ordering::Relaxed);
        }
        let age = start.elapsed().as_secs_f64();
        if opts.crash_after.is_some_and(|c| age >= c) {
            panic!("signal-demo: crashing as asked (--crash-after)");
        }
        if opts.freeze_after.is_some_and(|c| age >= c) {
            println!("signal-demo: freezing as asked (--freeze-after)");
            let _ = std::io::stdout().flush();
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::STOP,
            );
        }
        if opts.exit_after.is_some_and(|c| age >= c) {
            println!("signal-demo: exiting as asked (--exit-after)");
            return;
        }
        if let (Some(every), Some(s)) = (opts.log_every, &session)
            && last_log.elapsed() >= Duration::from_millis(every)
        {
            s.log(Level::Info, &format!("tick at {age:.1}s"));
            last_log = Instant::now();
        }
        if shutdown.is_some() {
            if opts.ignore_shutdown {
                if !announced {
                    println!("signal-demo: ignoring shutdown (--ignore-shutdown)");
                    let _ = std::io::stdout().flush();
                    announced = true;
                }
                continue;
            }
            if let Some(s) = &session {
                s.ack_shutdown();
            }
            if let Some(path) = &opts.mark {
                let name = opts.name.as_deref().unwrap_or("demo");
                let line = format!("{name} shutdown\n");
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    eprintln!("signal-demo: --mark {path}: {e}");
                }
            }
            println!("signal-demo: shutting down");
            return;
        }
        if session.as_ref().is_some_and(|s| s.lost()) {
            eprintln!("signal-demo: lost viscript; exiting");
            std::process::exit(1);
        }
    }
}
