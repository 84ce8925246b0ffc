//! skywire-control: identity, links, routes and the messenger.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
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
    let cli = Cli::parse();
    signal::logging::init();
    match cli.cmd {
        Cmd::Messenger { listen } => {
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
            tracing::info!("messenger {} on {listen}", id.id());
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
            watch_signals(stop.clone());
            let cfg = match controlplane::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("skywire-control: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = controlplane::run::run(cfg, stop) {
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
