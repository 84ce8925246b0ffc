//! `skywire-socks-server NAME CONTROL_ENDPOINT PORT [--listen ADDR] [--allow PK]... [--allow-all]
//! [--allow-private] [--allow-dst CIDR]... [--key FILE] [--user NAME --pass PASS] [--max-conns N]`
//!
//! A SOCKS5 server (CONNECT to IPv4, IPv6 and domain targets) for mesh peers. It listens on
//! this node's overlay address (from skywire-control's key file) at PORT unless `--listen`
//! says otherwise, and serves only the nodes whose public keys are `--allow`ed (a peer's TCP
//! source address is its overlay address, which the dataplane authenticates), or every node
//! with `--allow-all`. See `apps::server` for how refusals are answered.
//!
//! Destinations: loopback, link-local, unspecified, multicast and broadcast addresses, the
//! host's own addresses, the private ranges and the overlay are refused (reply 0x02) unless
//! `--allow-private` or `--allow-dst` opens them; see `apps::dest`.
//!
//! When CONTROL_ENDPOINT is a path (skywire-control's app socket), the overlay address comes
//! from the controlplane and the server publishes itself as service `socks` with the
//! messengers for as long as it runs; an `ADDR:PORT` (the original form) is accepted and unused.

#![forbid(unsafe_code)]

use apps::common::{self, Stats};
use apps::server::{self, Credentials, Policy};
use clap::Parser;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

const KIND: &str = "skywire-socks-server";

#[derive(Parser)]
#[command(
    name = KIND,
    version,
    about = "SOCKS5 server for Skywire mesh peers",
    after_help = "Destinations (checked after name resolution): loopback (127.0.0.0/8, ::1), \
link-local (169.254.0.0/16, fe80::/10), unspecified, multicast and broadcast addresses, this \
host's own addresses, the private ranges (10/8, 172.16/12, 192.168/16, 100.64.0.0/10, \
fc00::/7) and the Skywire overlay (fd73:6b79::/32) are refused with reply 0x02 (connection \
not allowed by ruleset), and counted in refused_dst, unless --allow-private (the private \
ranges, not the overlay) or --allow-dst CIDR opens them."
)]
struct Cli {
    /// Text name of this app instance (a label in logs).
    name: String,
    /// skywire-control's app socket (a path), or an ADDR:PORT of the original app (unused).
    control_endpoint: String,
    /// Port to listen on.
    port: u16,
    /// Listen here instead of the overlay address: ADDR:PORT or ADDR (then PORT).
    #[arg(long)]
    listen: Option<String>,
    /// Serve the node with this public key (64 hex digits); repeatable.
    #[arg(long = "allow", value_name = "PK")]
    allow: Vec<String>,
    /// Serve every client that can reach the listening address.
    #[arg(long)]
    allow_all: bool,
    /// Connect to private destinations too: 10/8, 172.16/12, 192.168/16, 100.64.0.0/10 and
    /// fc00::/7 (not the overlay fd73:6b79::/32, not loopback or link-local).
    #[arg(long)]
    allow_private: bool,
    /// Connect to destinations in this prefix (CIDR or an address) whatever their kind, e.g.
    /// 127.0.0.0/8 or fd73:6b79::/32; repeatable.
    #[arg(long = "allow-dst", value_name = "CIDR")]
    allow_dst: Vec<String>,
    /// skywire-control's key file (gives the overlay address to listen on).
    #[arg(long, default_value = "/var/lib/skywire/node.key")]
    key: PathBuf,
    /// Require this user name (RFC 1929); needs --pass.
    #[arg(long, requires = "pass")]
    user: Option<String>,
    /// Require this password (RFC 1929); needs --user.
    #[arg(long, requires = "user")]
    pass: Option<String>,
    /// Most connections served at once; more are closed at once.
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
    let mut policy = Policy {
        allow_all: cli.allow_all,
        ..Policy::default()
    };
    policy.dst.allow_private = cli.allow_private;
    for d in &cli.allow_dst {
        match apps::dest::DstFilter::parse_allow(d) {
            Ok(p) => policy.dst.allow.push(p),
            Err(e) => fail(&format!("--allow-dst: {e}")),
        }
    }
    for pk in &cli.allow {
        match common::overlay_of_pk(pk) {
            Ok(a) => {
                policy.allowed.insert(a);
            }
            Err(e) => fail(&format!("--allow: {e}")),
        }
    }
    if !policy.allow_all && policy.allowed.is_empty() {
        fail("nobody would be served: give --allow PK (repeatable) or --allow-all");
    }
    if let (Some(u), Some(p)) = (&cli.user, &cli.pass) {
        if u.is_empty() || u.len() > 255 || p.is_empty() || p.len() > 255 {
            fail("--user and --pass must be 1 to 255 bytes each");
        }
        policy.credentials = Some(Credentials {
            user: u.clone().into_bytes(),
            pass: p.clone().into_bytes(),
        });
    }
    let mut control = None;
    if cli.control_endpoint.contains('/') {
        let c = apps::vpn::connect_control(
            std::path::Path::new(&cli.control_endpoint),
            std::time::Duration::from_secs(30),
        )
        .unwrap_or_else(|e| fail(&e));
        control = Some(c);
    }
    let addr = match (&cli.listen, &mut control) {
        (Some(l), _) => {
            common::parse_listen(l, cli.port).unwrap_or_else(|e| fail(&format!("--listen: {e}")))
        }
        (None, Some(c)) => match c.whoami() {
            Ok((_, a)) => SocketAddr::new(IpAddr::V6(a), cli.port),
            Err(e) => fail(&e),
        },
        (None, None) => match common::own_overlay(&cli.key) {
            Ok(a) => SocketAddr::new(IpAddr::V6(a), cli.port),
            Err(e) => fail(&e),
        },
    };
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| fail(&format!("listen on {addr}: {e}")));
    let local = listener.local_addr().unwrap_or(addr);
    let session = common::register(KIND).unwrap_or_else(|e| {
        eprintln!("{KIND}: {e}");
        std::process::exit(1);
    });
    let who = if policy.allow_all {
        "every client".to_string()
    } else {
        format!("{} allowed node(s)", policy.allowed.len())
    };
    let published = match &mut control {
        Some(c) => match c.publish("socks", local.port()) {
            Ok(r) if r.is_empty() => "published as service socks".to_string(),
            Ok(r) => format!("service socks {r}"),
            Err(e) => format!("not published: {e}"),
        },
        None => format!("control endpoint {} unused", cli.control_endpoint),
    };
    common::say(&format!(
        "{KIND} {}: listening on {local} (serving {who}{}; {published})",
        cli.name,
        if policy.credentials.is_some() {
            ", password required"
        } else {
            ""
        },
    ));
    if let Some(mut c) = control {
        // Holds the publication; follows controlplane restarts.
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                if let Err(e) = c.check() {
                    tracing::warn!("controlplane: {e}");
                }
            }
        });
    }
    let stats = Stats::new(session.as_ref());
    let policy = Arc::new(policy);
    let code = common::run(session, listener, cli.max_conns, stats, move |s, st| {
        server::handle(s, &policy, st)
    });
    std::process::exit(code);
}
