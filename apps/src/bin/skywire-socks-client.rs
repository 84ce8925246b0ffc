//! `skywire-socks-client NAME CONTROL_ENDPOINT PORT (--server ADDR:PORT | --server-pk HEX
//! --server-port PORT) [--listen ADDR] [--max-conns N]`
//!
//! A local SOCKS5 endpoint (127.0.0.1:PORT) for applications on this machine. Each connection
//! is relayed byte for byte to a skywire-socks-server on the mesh, which does the SOCKS
//! handshake itself: this side is a plain TCP relay. The server's overlay address comes from
//! `--server` or from its public key (`--server-pk`).
//!
//! With no server named, one is found through the messengers (`--messenger PK@ADDR:PORT`): the
//! first node whose record offers the `socks` service (the port comes from the record).

#![forbid(unsafe_code)]

use apps::common::{self, Stats};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

const KIND: &str = "skywire-socks-client";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = KIND, version, about = "Local SOCKS5 endpoint relaying to a Skywire socks server")]
struct Cli {
    /// Text name of this app instance (a label in logs).
    name: String,
    /// skywire-control's app socket (a path: used to find a server when none is named), or an
    /// ADDR:PORT of the original app (unused).
    control_endpoint: String,
    /// Local port for applications (on 127.0.0.1).
    port: u16,
    /// Listen here instead of 127.0.0.1:PORT: ADDR:PORT or ADDR (then PORT).
    #[arg(long)]
    listen: Option<String>,
    /// The socks server: its overlay address and port.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "server_pk")]
    server: Option<SocketAddr>,
    /// The socks server's public key (64 hex digits); its overlay address derives from it.
    #[arg(long, value_name = "HEX", requires = "server_port")]
    server_pk: Option<String>,
    /// The socks server's port, with --server-pk.
    #[arg(long, value_name = "PORT", requires = "server_pk")]
    server_port: Option<u16>,
    /// A messenger to ask for a socks server when none is named (repeatable; tried in order).
    #[arg(long, value_name = "PK@ADDR:PORT")]
    messenger: Vec<String>,
    /// This node's key file (skywire-control's), to talk to the messengers as this node.
    #[arg(long, default_value = "/var/lib/skywire/node.key")]
    key: std::path::PathBuf,
    /// Most connections relayed at once; more are closed at once.
    #[arg(long, default_value_t = common::DEFAULT_MAX_CONNS)]
    max_conns: u64,
}

fn fail(msg: &str) -> ! {
    eprintln!("{KIND}: {msg}");
    std::process::exit(2);
}

fn main() {
    let cli = Cli::parse();
    signal::logging::init();
    // Listen first: applications that connect while the server is looked up wait in the
    // backlog instead of being refused.
    let addr = match &cli.listen {
        Some(l) => {
            common::parse_listen(l, cli.port).unwrap_or_else(|e| fail(&format!("--listen: {e}")))
        }
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), cli.port),
    };
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| fail(&format!("listen on {addr}: {e}")));
    let local = listener.local_addr().unwrap_or(addr);
    let upstream = match (&cli.server, &cli.server_pk, cli.server_port) {
        (Some(a), _, _) => *a,
        (None, Some(pk), Some(port)) => match common::overlay_of_pk(pk) {
            Ok(a) => SocketAddr::new(IpAddr::V6(a), port),
            Err(e) => fail(&format!("--server-pk: {e}")),
        },
        _ if !cli.messenger.is_empty() => {
            let ms = apps::lookup::parse_messengers(&cli.messenger)
                .unwrap_or_else(|e| fail(&format!("--messenger: {e}")));
            match apps::lookup::find_service_within(&cli.key, &ms, "socks", Duration::from_secs(30))
            {
                Ok((pk, port)) => match common::overlay_of_pk(&pk.hex()) {
                    Ok(a) => {
                        common::say(&format!(
                            "{KIND}: found socks server {} through the messenger",
                            pk.hex()
                        ));
                        SocketAddr::new(IpAddr::V6(a), port)
                    }
                    Err(e) => fail(&e),
                },
                Err(e) => fail(&format!("no socks server found: {e}")),
            }
        }
        _ if cli.control_endpoint.contains('/') => {
            // Ask the messengers the controlplane uses.
            let found = apps::vpn::connect_control(
                std::path::Path::new(&cli.control_endpoint),
                Duration::from_secs(30),
            )
            .and_then(|mut c| c.find("socks", Duration::from_secs(30)))
            .unwrap_or_else(|e| fail(&format!("no socks server found: {e}")));
            common::say(&format!(
                "{KIND}: found socks server {} through the messenger",
                found.0.hex()
            ));
            match common::overlay_of_pk(&found.0.hex()) {
                Ok(a) => SocketAddr::new(IpAddr::V6(a), found.1),
                Err(e) => fail(&e),
            }
        }
        _ => fail(
            "no socks server: give --server ADDR:PORT, --server-pk HEX --server-port PORT, --messenger PK@ADDR:PORT, or the controlplane's app socket as CONTROL_ENDPOINT to find one",
        ),
    };
    let session = common::register(KIND).unwrap_or_else(|e| {
        eprintln!("{KIND}: {e}");
        std::process::exit(1);
    });
    common::say(&format!(
        "{KIND} {}: listening on {local}, relaying to {upstream}",
        cli.name
    ));
    let stats = Stats::new(session.as_ref());
    let code = common::run(session, listener, cli.max_conns, stats, move |s, st| {
        relay_one(s, upstream, st)
    });
    std::process::exit(code);
}

fn relay_one(s: TcpStream, upstream: SocketAddr, st: &Stats) {
    let up = match TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) {
        Ok(u) => u,
        Err(e) => {
            // The application sees its connection close before any SOCKS answer.
            tracing::warn!("cannot reach the socks server {upstream}: {e}");
            st.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = s.set_nodelay(true);
    let _ = up.set_nodelay(true);
    if let Err(e) = apps::relay::relay(s, up, st.bytes_up.clone(), st.bytes_down.clone()) {
        tracing::info!("relay: {e}");
        st.failed.fetch_add(1, Ordering::Relaxed);
    }
}
