//! skywire-control: identity, links, routes and the messenger.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use controlplane::identity::Identity;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The Skywire controlplane.
#[derive(Parser, Debug)]
#[command(name = "skywire-control", version)]
struct Cli {
    /// The node's key file (created on first use, mode 0600).
    #[arg(long, global = true, default_value = "/var/lib/skywire/node.key")]
    key: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the key file if it does not exist, and print the public key.
    Keygen,
    /// Print the public key and the overlay address.
    Show,
    /// Run a messenger server: signed records (key -> endpoints, services) with TTL, lookup,
    /// service queries and relay for the controlplanes that connect.
    Messenger {
        /// Where to listen (TCP, Noise).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Serve Prometheus metrics at http://IP:PORT/metrics (port 0 picks a free one,
        /// logged). Off by default; loopback addresses only unless --metrics-any.
        #[arg(long, value_name = "IP:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// Allow a --metrics address other than loopback (anyone reaching it reads the
        /// metrics: they have no authentication).
        #[arg(long, requires = "metrics")]
        metrics_any: bool,
    },
    /// Write one router's key, configs and viscript catalogue; print its `pk@endpoint`.
    ///
    /// From flags alone: DIR/node.key (0600, kept when it exists; --key is not used),
    /// node.yaml (skywire-node), control.yaml (skywire-control) and config.yaml (viscript's
    /// catalogue; run the router with `viscript serve --config DIR/config.yaml`). Prints the
    /// line a neighbour passes to its --neighbour, `pk@endpoint`, last on stdout. Existing
    /// files are kept unless --force. Exit 2: an invalid flag (named) or files in the way.
    Init {
        /// The router's directory (created 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Control listen address for neighbours (TCP, Noise).
        #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:7100")]
        listen: String,
        /// The dataplane's base UDP port (shard i uses port + i).
        #[arg(long, value_name = "N", default_value_t = 7000)]
        data_port: u16,
        /// Dataplane shards [default: this machine's CPUs].
        #[arg(long, value_name = "N")]
        shards: Option<u16>,
        /// A neighbour: PK@IP:PORT (dialled), or PK alone (it dials us, or a messenger finds
        /// it). Repeatable.
        #[arg(long = "neighbour", value_name = "PK[@IP:PORT]")]
        neighbours: Vec<String>,
        /// A messenger: PK@IP:PORT. Repeatable.
        #[arg(long = "messenger", value_name = "PK@IP:PORT")]
        messengers: Vec<String>,
        /// This router's control endpoint as neighbours dial it [default: --listen unless it
        /// is 0.0.0.0 / ::].
        #[arg(long, value_name = "IP:PORT")]
        advertise: Option<String>,
        /// Where skywire-node, skywire-control and the apps are [default: the folder of this
        /// skywire-control].
        #[arg(long, value_name = "DIR")]
        bin: Option<PathBuf>,
        /// Overwrite node.yaml, control.yaml and config.yaml (the key is kept).
        #[arg(long)]
        force: bool,
        /// Replace node.key with a new identity too (with --force).
        #[arg(long)]
        force_new_key: bool,
    },
    /// Run the controlplane: links, routes, and the dataplane's fib ring.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Termination signals set `stop` (see [`signal::term::on_termination`]).
fn watch_signals(stop: Arc<AtomicBool>) {
    signal::term::on_termination(move |_| stop.store(true, Ordering::SeqCst));
}

fn main() {
    let matches = Cli::command().get_matches();
    let key_given = [Some(&matches), matches.subcommand_matches("init")]
        .into_iter()
        .flatten()
        .any(|m| m.value_source("key") == Some(clap::parser::ValueSource::CommandLine));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    signal::logging::init();
    match cli.cmd {
        Cmd::Init {
            dir,
            listen,
            data_port,
            shards,
            neighbours,
            messengers,
            advertise,
            bin,
            force,
            force_new_key,
        } => {
            if key_given {
                eprintln!(
                    "skywire-control: init: --key is not used: init keeps the key in DIR/node.key"
                );
                std::process::exit(2);
            }
            let bin = bin.unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            let opts = controlplane::init::Options {
                dir,
                listen,
                data_port,
                shards,
                neighbours,
                messengers,
                advertise,
                bin,
                force,
                force_new_key,
            };
            match controlplane::init::init(&opts) {
                Ok(r) => {
                    let how = if r.key_created { "created" } else { "kept" };
                    eprintln!(
                        "skywire-control: {how} {} (pk {})",
                        r.key_path.display(),
                        r.pk.hex()
                    );
                    for p in &r.written {
                        eprintln!("skywire-control: wrote {}", p.display());
                    }
                    for n in &r.notes {
                        eprintln!("skywire-control: note: {n}");
                    }
                    println!("{}", r.line);
                }
                Err(e) => {
                    eprintln!("skywire-control: init: {e}");
                    std::process::exit(e.exit_code());
                }
            }
        }
        Cmd::Messenger {
            listen,
            metrics,
            metrics_any,
        } => {
            if let Some(a) = metrics
                && let Err(e) =
                    netbase::metrics_http::check_addr(a, metrics_any, "--metrics", "--metrics-any")
            {
                eprintln!("skywire-control: messenger: {e}");
                std::process::exit(2);
            }
            let (id, created) = Identity::load_or_create(&cli.key).unwrap_or_else(|e| {
                eprintln!("skywire-control: {e}");
                std::process::exit(1);
            });
            if created {
                tracing::info!("created {}", cli.key.display());
            }
            let l = std::net::TcpListener::bind(listen).unwrap_or_else(|e| {
                eprintln!("skywire-control: listen {listen}: {e}");
                std::process::exit(1);
            });
            let bound = l.local_addr().map_or(listen, |a| a);
            tracing::info!("messenger {} on {bound}", id.id());
            let metrics = metrics.map(|a| {
                let m = std::net::TcpListener::bind(a).unwrap_or_else(|e| {
                    eprintln!("skywire-control: metrics {a}: {e}");
                    std::process::exit(1);
                });
                match m.local_addr() {
                    Ok(a) => tracing::info!("metrics on http://{a}/metrics"),
                    Err(e) => tracing::info!("metrics on an unknown address ({e})"),
                }
                m
            });
            let stop = Arc::new(AtomicBool::new(false));
            watch_signals(stop.clone());
            let session = match signal::Client::from_env() {
                Ok(Some(c)) => c
                    .register("skywire-messenger", env!("CARGO_PKG_VERSION"))
                    .ok(),
                _ => None,
            };
            let server = controlplane::messenger::net::spawn(
                l,
                id,
                controlplane::messenger::ServerConfig::default(),
            );
            if let Some(m) = metrics {
                let h = server.clone();
                std::thread::spawn(move || controlplane::messenger::metrics::serve(m, h));
            }
            while !stop.load(Ordering::SeqCst) {
                if let Some(s) = &session {
                    if s.wait_shutdown(Some(std::time::Duration::from_millis(250)))
                        .is_some()
                    {
                        s.ack_shutdown();
                        break;
                    }
                    let (records, rejected) =
                        server.with(|m| (m.len() as u64, m.counters().rejected_total()));
                    s.counter("records").store(records, Ordering::Relaxed);
                    s.counter("rejected").store(rejected, Ordering::Relaxed);
                    for (k, v) in server.listener_stats().snapshot().named("listener") {
                        s.counter(&k).store(v, Ordering::Relaxed);
                    }
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            }
        }
        Cmd::Run { config } => {
            let stop = Arc::new(AtomicBool::new(false));
            let reload = Arc::new(AtomicBool::new(false));
            {
                let (stop, reload) = (stop.clone(), reload.clone());
                // SIGHUP: read the config file again (see `run_reloading`); others: stop.
                signal::term::on_signals(move |sig| {
                    if sig == signal::term::SIGHUP {
                        reload.store(true, Ordering::SeqCst);
                        return true;
                    }
                    stop.store(true, Ordering::SeqCst);
                    false
                });
            }
            let cfg = match controlplane::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("skywire-control: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = controlplane::run::run_reloading(cfg, stop, Some((reload, config))) {
                eprintln!("skywire-control: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Keygen | Cmd::Show => match Identity::load_or_create(&cli.key) {
            Ok((id, created)) => {
                if created {
                    eprintln!("skywire-control: created {}", cli.key.display());
                }
                println!("pk {}", id.id());
                println!("address {}", id.id().overlay_addr());
            }
            Err(e) => {
                eprintln!("skywire-control: {e}");
                std::process::exit(1);
            }
        },
    }
}
