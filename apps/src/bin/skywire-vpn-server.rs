//! `skywire-vpn-server NAME CONTROL PORT (--allow PK... | --allow-all) [--pool PREFIX]
//! [--uplink DEV] [--allow-private] [--allow-dst CIDR]... [--tun DEV] [--state-dir DIR]
//! [--max-conns N] [--cleanup]`
//!
//! An IPv4 exit for mesh nodes. Clients connect to PORT on this node's overlay address (the
//! dataplane has authenticated them by then), get an address from the pool (stable per client
//! key), and their packets are forwarded and NATed (nftables masquerade) out of the uplink.
//! Every host change (ip_forward, the nftables table, the pool route) is journaled before it is
//! made and undone on exit, or at the next start after a crash.
//!
//! Clients reach the uplink only: the nftables table drops their packets to this host (any of
//! its addresses), to other clients, out of any other interface, to loopback, link-local
//! (169.254.0.0/16, the metadata address), multicast and reserved destinations, and, unless
//! `--allow-private` or `--allow-dst` opens them, to the private ranges (RFC 1918, CGNAT) on
//! the uplink's side. See `apps::hostnet::exit_ruleset`.

#![forbid(unsafe_code)]

use apps::common;
use apps::hostnet::{self, Journal};
use apps::vpn::{self, Control, LineConn, Msg, Pool};
use clap::Parser;
use controlplane::identity::NodeId;
use netbase::Prefix;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KIND: &str = "skywire-vpn-server";
/// How long a disconnected client keeps its address (and its routes).
const GRACE: Duration = Duration::from_secs(60);
/// How often leases are expired, the controlplane checked and the counters updated.
const CHORES: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(name = KIND, version, about = "IPv4 exit (VPN server) for Skywire mesh nodes")]
struct Cli {
    /// Name of this instance (names the state file and the nftables table).
    name: String,
    /// skywire-control's app socket (`app_socket` in its config).
    control: PathBuf,
    /// TCP port for clients, on this node's overlay address.
    port: u16,
    /// Serve the node with this public key (64 hex digits); repeatable.
    #[arg(long = "allow", value_name = "PK")]
    allow: Vec<String>,
    /// Serve every mesh node.
    #[arg(long)]
    allow_all: bool,
    /// Client addresses come from here.
    #[arg(long, default_value = vpn::DEFAULT_POOL)]
    pool: String,
    /// Interface to NAT through (default: the one the default route uses).
    #[arg(long)]
    uplink: Option<String>,
    /// Let clients reach private destinations (10/8, 172.16/12, 192.168/16, 100.64/10) on the
    /// uplink's side, e.g. the uplink's LAN; denied by default.
    #[arg(long)]
    allow_private: bool,
    /// Let clients reach this IPv4 prefix on the uplink's side even if private; repeatable.
    /// Loopback, 169.254.0.0/16 (link-local, metadata), multicast and reserved stay denied.
    #[arg(long = "allow-dst", value_name = "CIDR")]
    allow_dst: Vec<String>,
    #[command(flatten)]
    host: vpn::HostArgs,
    /// Most client connections at once (more are closed at once and counted as refused).
    #[arg(long, default_value_t = 1024)]
    max_conns: u64,
}

fn fail(msg: &str) -> ! {
    eprintln!("{KIND}: {msg}");
    std::process::exit(2);
}

struct Shared {
    pool: Mutex<Pool>,
    ctl: Mutex<Control>,
    allow: Option<HashSet<NodeId>>,
    active: AtomicU64,
    conns: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
}

fn main() {
    let stop = vpn::stop_flag();
    let cli = Cli::parse();
    signal::logging::init();
    let mut journal = vpn::open_journal(
        "vpn-server",
        &cli.name,
        &cli.host.state_dir,
        cli.host.cleanup,
    )
    .unwrap_or_else(|e| fail(&e));
    let allow = if cli.allow_all {
        None
    } else {
        let mut set = HashSet::new();
        for pk in &cli.allow {
            set.insert(NodeId::from_hex(pk).unwrap_or_else(|e| fail(&format!("--allow: {e}"))));
        }
        if set.is_empty() {
            fail("nobody would be served: give --allow PK (repeatable) or --allow-all");
        }
        Some(set)
    };
    let pool = vpn::parse_pool(&cli.pool).unwrap_or_else(|e| fail(&e));
    let filter = hostnet::ExitFilter {
        allow_private: cli.allow_private,
        allow: cli
            .allow_dst
            .iter()
            .map(|d| parse_allow_dst(d).unwrap_or_else(|e| fail(&format!("--allow-dst: {e}"))))
            .collect(),
    };
    if cli.port == 0 {
        fail("PORT must be 1-65535");
    }
    let mut ctl =
        vpn::connect_control(&cli.control, Duration::from_secs(30)).unwrap_or_else(|e| fail(&e));
    let (_, overlay) = ctl.whoami().unwrap_or_else(|e| fail(&e));
    vpn::wait_link(&cli.host.tun, Duration::from_secs(30)).unwrap_or_else(|e| fail(&e));
    let uplink = match &cli.uplink {
        Some(u) => u.clone(),
        None => default_uplink().unwrap_or_else(|e| fail(&e)),
    };
    if let Err(e) = setup(&mut journal, &cli, pool, &uplink, &filter) {
        undo(&mut journal);
        fail(&e);
    }
    let addr = SocketAddr::new(IpAddr::V6(overlay), cli.port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            undo(&mut journal);
            fail(&format!("listen on {addr}: {e}"));
        }
    };
    match ctl.publish(vpn::SERVICE, cli.port) {
        Ok(r) if !r.is_empty() => common::say(&format!("{KIND}: service {}: {r}", vpn::SERVICE)),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot publish the service: {e}"),
    }
    let session = match common::register(KIND) {
        Ok(s) => s,
        Err(e) => {
            undo(&mut journal);
            fail(&e);
        }
    };
    let counter = |name: &str| common::counter(session.as_ref(), name);
    let leases = counter("leases");
    let shared = Arc::new(Shared {
        pool: Mutex::new(Pool::new(pool)),
        ctl: Mutex::new(ctl),
        allow,
        active: AtomicU64::new(0),
        conns: AtomicU64::new(0),
        served: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    common::say(&format!(
        "{KIND} {}: listening on {addr}; pool {pool}, NAT out of {uplink}; serving {}",
        cli.name,
        match &shared.allow {
            None => "every node".to_string(),
            Some(s) => format!("{} allowed node(s)", s.len()),
        }
    ));
    {
        let sh = shared.clone();
        let max = cli.max_conns;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(s) = conn else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if sh.conns.load(Ordering::Relaxed) >= max {
                    sh.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                sh.conns.fetch_add(1, Ordering::Relaxed);
                let sh2 = sh.clone();
                let spawned = std::thread::Builder::new()
                    .name("client".into())
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        client(s, &sh2);
                        sh2.conns.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    sh.conns.fetch_sub(1, Ordering::Relaxed);
                }
            }
        });
    }
    let (active, served, refused, reconnects) = (
        counter("clients_active"),
        counter("clients_served"),
        counter("clients_refused"),
        counter("control_reconnects"),
    );
    // sky0 made again (its skywire-node restarted) comes without the pool route: put it back.
    let ifindex = |dev: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
            .ok()
            .and_then(|i| i.trim().parse::<u32>().ok())
    };
    let mut tun_index = ifindex(&cli.host.tun);
    let mut last_chores = Instant::now();
    let code = loop {
        if stop.load(Ordering::SeqCst) {
            break 0;
        }
        let now_index = ifindex(&cli.host.tun);
        if now_index.is_some() && now_index != tun_index {
            match journal.restore_on(&cli.host.tun) {
                Ok(n) => {
                    tun_index = now_index;
                    common::say(&format!(
                        "{KIND}: {} came back; {n} route(s) put back on it",
                        cli.host.tun
                    ));
                }
                Err(e) => tracing::warn!("{}: {e}", cli.host.tun),
            }
        }
        if let Some(s) = &session {
            if s.wait_shutdown(Some(vpn::TUN_CHECK)).is_some() {
                break 0;
            }
            if s.lost() {
                tracing::warn!("lost viscript; exiting");
                break 1;
            }
        } else {
            std::thread::sleep(vpn::TUN_CHECK);
        }
        if last_chores.elapsed() < CHORES {
            continue;
        }
        last_chores = Instant::now();
        let gone = lock(&shared.pool).expire(Instant::now(), GRACE);
        let mut ctl = lock(&shared.ctl);
        for pk in gone {
            common::say(&format!("{KIND}: lease of {} expired", &pk.hex()[..16]));
            if let Err(e) = ctl.detach(pk) {
                tracing::warn!("detach: {e}");
            }
        }
        if let Err(e) = ctl.check() {
            tracing::warn!("controlplane: {e}");
        }
        reconnects.store(ctl.reconnects, Ordering::Relaxed);
        drop(ctl);
        leases.store(lock(&shared.pool).len() as u64, Ordering::Relaxed);
        active.store(shared.active.load(Ordering::Relaxed), Ordering::Relaxed);
        served.store(shared.served.load(Ordering::Relaxed), Ordering::Relaxed);
        refused.store(shared.refused.load(Ordering::Relaxed), Ordering::Relaxed);
    };
    undo(&mut journal);
    if let Some(s) = &session {
        s.ack_shutdown();
    }
    common::say(&format!("{KIND}: stopped; host changes undone"));
    std::process::exit(code);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn undo(journal: &mut Journal) {
    vpn::undo(KIND, journal);
}

/// The interface the default route leaves by (a route lookup; nothing is sent).
fn default_uplink() -> Result<String, String> {
    let mut nl = netbase::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let hop = nl
        .route_get(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        .map_err(|e| format!("route lookup: {e}"))?
        .ok_or("no default route: give --uplink DEV")?;
    vpn::ifname(hop.oif).ok_or_else(|| format!("no interface with index {}", hop.oif))
}

/// An `--allow-dst` prefix: IPv4, outside what is always denied.
fn parse_allow_dst(s: &str) -> Result<Prefix, String> {
    let p: Prefix = s.parse()?;
    if !p.addr().is_ipv4() {
        return Err(format!("{s}: only IPv4 goes through the VPN"));
    }
    for d in hostnet::EXIT_ALWAYS_DENIED.split(", ") {
        let d: Prefix = d.parse()?;
        if d.overlaps(&p) {
            return Err(format!("{s} overlaps {d}, which clients may never reach"));
        }
    }
    Ok(p)
}

fn setup(
    journal: &mut Journal,
    cli: &Cli,
    pool: Prefix,
    uplink: &str,
    filter: &hostnet::ExitFilter,
) -> Result<(), String> {
    if !std::path::Path::new("/sys/class/net").join(uplink).exists() {
        return Err(format!("uplink {uplink}: no such interface"));
    }
    journal.set_sysctl("net/ipv4/ip_forward", "1")?;
    journal.nft_table(
        "ip",
        &format!("skywire_vpn_{}", cli.name),
        &hostnet::exit_ruleset(&pool.to_string(), uplink, &cli.host.tun, filter),
    )?;
    journal.add_route(pool.addr(), pool.len(), &cli.host.tun, None)?;
    Ok(())
}

/// One client: hello, checks, lease, attach; then keepalives until it goes.
fn client(s: TcpStream, sh: &Shared) {
    let mut c = LineConn::new(s);
    let peer = match c.peer() {
        Ok(p) => p.ip(),
        Err(_) => return,
    };
    let refuse = |c: &mut LineConn, why: &str| {
        sh.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refused {peer}: {why}");
        let _ = c.send(&Msg::Refused(why.to_string()));
    };
    let (pk, want) = match c.recv(Duration::from_secs(10)) {
        Ok(Some(Msg::Hello { pk, want })) => (pk, want),
        Ok(Some(_)) => return refuse(&mut c, "expected HELLO"),
        Ok(None) => return refuse(&mut c, "no HELLO within 10 s"),
        Err(e) => return refuse(&mut c, &e),
    };
    // The dataplane only delivers packets whose source is the sending node's own overlay
    // address, so the address proves the key.
    if IpAddr::V6(pk.overlay_addr()) != peer {
        return refuse(
            &mut c,
            "the key does not match the connection's overlay address",
        );
    }
    if sh.allow.as_ref().is_some_and(|a| !a.contains(&pk)) {
        return refuse(&mut c, "this node is not allowed");
    }
    let addr = match lock(&sh.pool).lease(pk, want) {
        Ok(a) => a,
        Err(e) => return refuse(&mut c, &e),
    };
    let pool = lock(&sh.pool).prefix();
    let host = Prefix::new(IpAddr::V4(addr), 32).expect("a /32 is valid");
    if let Err(e) = lock(&sh.ctl).attach(pk, &[host]) {
        lock(&sh.pool).release(&pk, Instant::now());
        return refuse(&mut c, &format!("controlplane: {e}"));
    }
    if c.send(&Msg::Offer { addr, pool }).is_err() {
        lock(&sh.pool).release(&pk, Instant::now());
        return;
    }
    sh.served.fetch_add(1, Ordering::Relaxed);
    sh.active.fetch_add(1, Ordering::Relaxed);
    common::say(&format!("{KIND}: {} has {addr}", &pk.hex()[..16]));
    let why = loop {
        match c.recv(Duration::from_secs(1)) {
            Ok(Some(Msg::Keepalive)) | Ok(None) => {}
            Ok(Some(m)) => break format!("unexpected {m:?}"),
            Err(e) => break e,
        }
        if let Err(e) = c.tick() {
            break e;
        }
    };
    common::say(&format!(
        "{KIND}: {} ({addr}) gone: {why}; address kept {} s",
        &pk.hex()[..16],
        GRACE.as_secs()
    ));
    sh.active.fetch_sub(1, Ordering::Relaxed);
    lock(&sh.pool).release(&pk, Instant::now());
}
