//! `skywire-vpn-client NAME CONTROL (--server-pk PK [--server-port P] | --messenger PK@ADDR
//! --key FILE) [--route PREFIX]... [--tun DEV] [--state-dir DIR] [--cleanup]`
//!
//! Sends this router's IPv4 traffic through a VPN server on the mesh. It asks the controlplane
//! for a route to the server's node (attaching the routed prefixes to it), takes the address
//! the server hands out, puts it on the TUN device and routes the prefixes (default: all of
//! IPv4, as two /1 routes beside the default route) through it, except the underlay addresses
//! the mesh itself uses (pinned to their current path). Every change to the routing table is
//! journaled first and undone on exit, or at the next start after a crash (`--cleanup` does
//! only that).

#![forbid(unsafe_code)]

use apps::common;
use apps::hostnet::Journal;
use apps::vpn::{self, Control, LeaseError, LineConn, Msg};
use clap::Parser;
use controlplane::identity::NodeId;
use netbase::Prefix;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const KIND: &str = "skywire-vpn-client";

#[derive(Parser)]
#[command(name = KIND, version, about = "Route this router's IPv4 traffic through a Skywire VPN server")]
struct Cli {
    /// Name of this instance (names the state file).
    name: String,
    /// skywire-control's app socket (`app_socket` in its config).
    control: PathBuf,
    /// The server's node (public key, 64 hex digits).
    #[arg(long, value_name = "PK")]
    server_pk: Option<String>,
    /// The server's port.
    #[arg(long, default_value_t = 8100)]
    server_port: u16,
    /// Find a server through this messenger (service "vpn"); needs --key. Repeatable.
    #[arg(long, value_name = "PK@ADDR:PORT")]
    messenger: Vec<String>,
    /// skywire-control's key file (for the messenger lookup).
    #[arg(long, default_value = "/var/lib/skywire/node.key")]
    key: PathBuf,
    /// IPv4 prefix to send through the VPN; repeatable (default: 0.0.0.0/0).
    #[arg(long = "route", value_name = "PREFIX")]
    routes: Vec<String>,
    #[command(flatten)]
    host: vpn::HostArgs,
}

fn fail(msg: &str) -> ! {
    eprintln!("{KIND}: {msg}");
    std::process::exit(2);
}

struct Counters {
    reconnects: Arc<AtomicU64>,
    exceptions: Arc<AtomicU64>,
}

fn main() {
    let stop = vpn::stop_flag();
    let cli = Cli::parse();
    signal::logging::init();
    let mut journal = vpn::open_journal(
        "vpn-client",
        &cli.name,
        &cli.host.state_dir,
        cli.host.cleanup,
    )
    .unwrap_or_else(|e| fail(&e));
    let mut routes: Vec<Prefix> = Vec::new();
    for r in if cli.routes.is_empty() {
        vec!["0.0.0.0/0".to_string()]
    } else {
        cli.routes.clone()
    } {
        let p: Prefix = r
            .parse()
            .unwrap_or_else(|e| fail(&format!("--route {r}: {e}")));
        if !p.addr().is_ipv4() {
            fail(&format!(
                "--route {r}: only IPv4 prefixes are routed through the VPN"
            ));
        }
        routes.push(p);
    }
    let mut ctl =
        vpn::connect_control(&cli.control, Duration::from_secs(30)).unwrap_or_else(|e| fail(&e));
    let (me, _) = ctl.whoami().unwrap_or_else(|e| fail(&e));
    let (server, port) = match &cli.server_pk {
        Some(pk) => (
            NodeId::from_hex(pk).unwrap_or_else(|e| fail(&format!("--server-pk: {e}"))),
            cli.server_port,
        ),
        None if !cli.messenger.is_empty() => {
            let ms = apps::lookup::parse_messengers(&cli.messenger)
                .unwrap_or_else(|e| fail(&format!("--messenger: {e}")));
            let found = apps::lookup::find_service_within(
                &cli.key,
                &ms,
                vpn::SERVICE,
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| fail(&format!("no vpn server found: {e}")));
            common::say(&format!(
                "{KIND}: found vpn server {} through the messenger",
                found.0.hex()
            ));
            found
        }
        None => {
            // Ask the messengers the controlplane uses.
            let found = ctl
                .find(vpn::SERVICE, Duration::from_secs(30))
                .unwrap_or_else(|e| {
                    fail(&format!(
                        "no vpn server found through the controlplane ({e}); give --server-pk PK"
                    ))
                });
            common::say(&format!(
                "{KIND}: found vpn server {} through the messenger",
                found.0.hex()
            ));
            found
        }
    };
    if server == me {
        fail("the server is this node");
    }
    let tun_index =
        vpn::wait_link(&cli.host.tun, Duration::from_secs(30)).unwrap_or_else(|e| fail(&e));
    let target = SocketAddr::new(IpAddr::V6(server.overlay_addr()), port);
    let underlay = underlay_and_sources(&ctl.underlay().unwrap_or_else(|e| fail(&e)));
    let Some((mut conn, addr)) =
        lease(&stop, target, me, None, &underlay).unwrap_or_else(|e| fail(&e))
    else {
        std::process::exit(0);
    };
    let mut pinned = HashSet::new();
    let mut nexc = 0u64;
    if let Err(e) = setup(
        &mut journal,
        &mut ctl,
        &cli,
        server,
        &routes,
        addr,
        tun_index,
        &mut pinned,
        &mut nexc,
    ) {
        undo(&mut journal);
        fail(&e);
    }
    let session = match common::register(KIND) {
        Ok(s) => s,
        Err(e) => {
            undo(&mut journal);
            fail(&e);
        }
    };
    let counter = |name: &str| common::counter(session.as_ref(), name);
    let counters = Counters {
        reconnects: counter("lease_reconnects"),
        exceptions: counter("underlay_pinned"),
    };
    counters.exceptions.store(nexc, Ordering::Relaxed);
    let shown: Vec<String> = vpn::kernel_routes(&routes)
        .iter()
        .map(|p| p.to_string())
        .collect();
    common::say(&format!(
        "{KIND} {}: up: address {addr} on {}, server {} ({target}), routes {} ({} underlay address(es) pinned)",
        cli.name,
        cli.host.tun,
        &server.hex()[..16],
        shown.join(" "),
        pinned.len()
    ));
    let mut last_check = Instant::now();
    // sky0 made again (its skywire-node restarted) comes without the lease address and the
    // routes into the tunnel: put them back.
    let ifindex = |dev: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
            .ok()
            .and_then(|i| i.trim().parse::<u32>().ok())
    };
    let mut tun_now = ifindex(&cli.host.tun);
    let code = loop {
        if stop.load(Ordering::SeqCst) {
            break 0;
        }
        let index = ifindex(&cli.host.tun);
        if index.is_some() && index != tun_now {
            match journal.restore_on(&cli.host.tun) {
                Ok(n) => {
                    tun_now = index;
                    common::say(&format!(
                        "{KIND}: {} came back; {n} address(es) and route(s) put back on it",
                        cli.host.tun
                    ));
                }
                Err(e) => tracing::warn!("{}: {e}", cli.host.tun),
            }
        }
        if let Some(s) = &session {
            if s.shutdown_requested().is_some() {
                break 0;
            }
            if s.lost() {
                tracing::warn!("lost viscript; exiting");
                break 1;
            }
        }
        let alive = match conn.recv(vpn::TUN_CHECK) {
            Ok(Some(Msg::Keepalive)) | Ok(None) => conn.tick(),
            Ok(Some(m)) => Err(format!("unexpected {m:?}")),
            Err(e) => Err(e),
        };
        if let Err(why) = alive {
            tracing::warn!("lease connection lost ({why}); reconnecting (routes stay: no leak)");
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            match lease(&stop, target, me, Some(addr), &underlay) {
                Ok(None) => break 0,
                Err(e) => {
                    tracing::error!("{e}; stopping");
                    break 1;
                }
                Ok(Some((c, a))) if a == addr => conn = c,
                Ok(Some((_, a))) => {
                    tracing::warn!("the server moved us from {addr} to {a}; restarting");
                    break 1;
                }
            }
        }
        if last_check.elapsed() >= vpn::KEEPALIVE {
            last_check = Instant::now();
            if let Err(e) = ctl.check() {
                tracing::warn!("controlplane: {e}");
            }
            if let Ok(ips) = ctl.underlay() {
                if let Err(e) = pin_underlay(
                    &mut journal,
                    &ips,
                    &routes,
                    tun_index,
                    &mut pinned,
                    &mut nexc,
                ) {
                    tracing::warn!("{e}");
                }
                counters.exceptions.store(nexc, Ordering::Relaxed);
            }
        }
    };
    undo(&mut journal);
    drop(ctl);
    if let Some(s) = &session {
        s.ack_shutdown();
    }
    common::say(&format!("{KIND}: stopped; routing table restored"));
    std::process::exit(code);
}

fn undo(journal: &mut Journal) {
    vpn::undo(KIND, journal);
}

/// Connects to the server and takes a lease; retries (with backoff) until it has one or `stop`
/// (`Ok(None)`). An offer the client must not use ([`vpn::check_offer`]) is an error.
fn lease(
    stop: &AtomicBool,
    target: SocketAddr,
    me: NodeId,
    want: Option<Ipv4Addr>,
    underlay: &[IpAddr],
) -> Result<Option<(LineConn, Ipv4Addr)>, String> {
    let mut backoff = Duration::from_millis(200);
    let mut said = String::new();
    while !stop.load(Ordering::SeqCst) {
        let r = TcpStream::connect_timeout(&target, Duration::from_secs(3))
            .map_err(|e| LeaseError::Retry(format!("connect {target}: {e}")))
            .and_then(|s| {
                let mut c = LineConn::new(s);
                c.send(&Msg::Hello { pk: me, want })
                    .map_err(LeaseError::Retry)?;
                let answer = c.recv(Duration::from_secs(10)).map_err(LeaseError::Retry)?;
                vpn::take_offer(answer, underlay).map(|a| (c, a))
            });
        match r {
            Ok(x) => return Ok(Some(x)),
            Err(LeaseError::BadOffer(e)) => return Err(e),
            Err(LeaseError::Retry(e)) => {
                if e != said {
                    tracing::warn!("{e}; retrying");
                    said = e;
                }
            }
        }
        let t = Instant::now();
        while t.elapsed() < backoff && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    Ok(None)
}

/// The underlay addresses an offered pool must not hold: the mesh's endpoints and this host's
/// source address towards each (asked of the kernel by connecting a UDP socket: no packet).
fn underlay_and_sources(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut all = ips.to_vec();
    for ip in ips {
        let any: IpAddr = if ip.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let src = std::net::UdpSocket::bind((any, 0))
            .and_then(|u| u.connect((*ip, 9)).and_then(|()| u.local_addr()));
        if let Ok(a) = src
            && !all.contains(&a.ip())
        {
            all.push(a.ip());
        }
    }
    all
}

#[allow(clippy::too_many_arguments)]
fn setup(
    journal: &mut Journal,
    ctl: &mut Control,
    cli: &Cli,
    server: NodeId,
    routes: &[Prefix],
    addr: Ipv4Addr,
    tun_index: u32,
    pinned: &mut HashSet<IpAddr>,
    nexc: &mut u64,
) -> Result<(), String> {
    // The mesh's own underlay traffic must keep its path before the tunnel takes the prefixes.
    let ips = ctl.underlay()?;
    pin_underlay(journal, &ips, routes, tun_index, pinned, nexc)?;
    ctl.attach(server, routes)?;
    journal.add_address(&cli.host.tun, IpAddr::V4(addr), 32)?;
    for p in vpn::kernel_routes(routes) {
        journal.add_route(p.addr(), p.len(), &cli.host.tun, None)?;
    }
    Ok(())
}

/// Pins every IPv4 underlay address inside the routed prefixes to the path it has now (a /32
/// route copying the kernel's current choice), so the tunnel never carries its own transport.
fn pin_underlay(
    journal: &mut Journal,
    ips: &[IpAddr],
    routes: &[Prefix],
    tun_index: u32,
    pinned: &mut HashSet<IpAddr>,
    nexc: &mut u64,
) -> Result<(), String> {
    let mut nl = netbase::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    for ip in ips {
        if !ip.is_ipv4() || ip.is_loopback() || pinned.contains(ip) {
            continue;
        }
        if !routes.iter().any(|p| p.contains(*ip)) {
            continue;
        }
        let hop = nl
            .route_get(*ip)
            .map_err(|e| format!("route lookup {ip}: {e}"))?;
        let Some(hop) = hop else {
            continue;
        };
        if hop.oif == tun_index {
            tracing::warn!("underlay address {ip} already routes through the tunnel; not pinned");
            pinned.insert(*ip);
            continue;
        }
        let dev =
            vpn::ifname(hop.oif).ok_or_else(|| format!("no interface with index {}", hop.oif))?;
        match journal.add_route(*ip, 32, &dev, hop.gateway) {
            Ok(()) => *nexc += 1,
            Err(e) if e.contains("already exists") => {}
            Err(e) => return Err(e),
        }
        pinned.insert(*ip);
    }
    Ok(())
}
