//! What the VPN server and client share: the lease protocol, the address pool, and the
//! connection to the controlplane's app socket that holds the routes.
//!
//! The lease protocol runs over TCP between the two nodes' overlay addresses (so the
//! dataplane has already authenticated who is talking), one line per message:
//!
//! ```text
//! client: SKYVPN1 HELLO <client pk> [<address wanted>]
//! server: SKYVPN1 OFFER <address> <pool>      or   SKYVPN1 REFUSED <why>
//! both:   SKYVPN1 KEEPALIVE                    every KEEPALIVE; silence for DEAD ends the lease
//! ```
//!
//! Packets then flow through the dataplane: the client attaches its routed prefixes to the
//! server's node and the server attaches the client's address to the client's node
//! (`controlplane::appsock`), so each side's deliver rules accept the other's inner sources.

use controlplane::appsock::AppClient;
use controlplane::identity::NodeId;
use netbase::Prefix;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Protocol tag at the start of every line.
pub const MAGIC: &str = "SKYVPN1";
/// The default client address pool (RFC 6598 shared address space).
pub const DEFAULT_POOL: &str = "100.64.0.0/10";
/// The service kind published for discovery.
pub const SERVICE: &str = "vpn";
/// How often each side says it is alive.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// Silence after which the other side is taken as gone.
pub const DEAD: Duration = Duration::from_secs(20);
/// Longest protocol line.
pub const MAX_LINE: u64 = 512;
/// How often the VPN apps look for a re-made TUN device (its skywire-node restarted): it comes
/// without their address and routes, and traffic through the tunnel waits until they are back.
pub const TUN_CHECK: Duration = Duration::from_millis(100);

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A client asks for an address (the one it had, if any).
    Hello {
        /// The client node's key (must match its overlay source address).
        pk: NodeId,
        /// The address it held before a reconnect.
        want: Option<Ipv4Addr>,
    },
    /// The server's answer: the client's address and the pool it is from.
    Offer {
        /// The client's address.
        addr: Ipv4Addr,
        /// The server's pool.
        pool: Prefix,
    },
    /// The server will not serve this client.
    Refused(String),
    /// Liveness.
    Keepalive,
}

impl Msg {
    /// The line, with its newline.
    pub fn encode(&self) -> String {
        match self {
            Msg::Hello { pk, want: None } => format!("{MAGIC} HELLO {}\n", pk.hex()),
            Msg::Hello { pk, want: Some(a) } => format!("{MAGIC} HELLO {} {a}\n", pk.hex()),
            Msg::Offer { addr, pool } => format!("{MAGIC} OFFER {addr} {pool}\n"),
            Msg::Refused(why) => format!(
                "{MAGIC} REFUSED {}\n",
                why.replace(['\n', '\r'], " ").trim()
            ),
            Msg::Keepalive => format!("{MAGIC} KEEPALIVE\n"),
        }
    }

    /// Parses one line (with or without its newline).
    pub fn parse(line: &str) -> Result<Msg, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        let rest = line
            .strip_prefix(MAGIC)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| format!("not a {MAGIC} line: {:?}", trunc(line)))?;
        let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut w = args.split_ascii_whitespace();
        let m = match verb {
            "HELLO" => {
                let pk = NodeId::from_hex(w.next().ok_or("HELLO without a key")?)?;
                let want = match w.next() {
                    None => None,
                    Some(a) => Some(
                        a.parse::<Ipv4Addr>()
                            .map_err(|_| format!("HELLO: {:?} is not an IPv4 address", trunc(a)))?,
                    ),
                };
                Msg::Hello { pk, want }
            }
            "OFFER" => {
                let addr = w
                    .next()
                    .ok_or("OFFER without an address")?
                    .parse::<Ipv4Addr>()
                    .map_err(|_| "OFFER: bad address".to_string())?;
                let pool: Prefix = w.next().ok_or("OFFER without a pool")?.parse()?;
                if !pool.addr().is_ipv4() || !pool.contains(IpAddr::V4(addr)) {
                    return Err(format!("OFFER: {addr} is not in the pool {pool}"));
                }
                Msg::Offer { addr, pool }
            }
            "REFUSED" => {
                let why = args.replace(['\n', '\r'], " ");
                return Ok(Msg::Refused(trunc(why.trim()).trim().to_string()));
            }
            "KEEPALIVE" => Msg::Keepalive,
            other => return Err(format!("unknown message {:?}", trunc(other))),
        };
        match w.next() {
            Some(x) => Err(format!("unexpected {:?} after {verb}", trunc(x))),
            None => Ok(m),
        }
    }
}

fn trunc(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses an IPv4 pool and checks it leaves room for clients.
pub fn parse_pool(s: &str) -> Result<Prefix, String> {
    let p: Prefix = s.parse()?;
    if !p.addr().is_ipv4() || p.len() > 30 {
        return Err(format!(
            "pool {s}: an IPv4 prefix of /30 or wider is needed"
        ));
    }
    // Clients refuse any other pool (see `check_offer`): refuse it here, at the server's start.
    if !in_private_range(&p) {
        return Err(format!(
            "pool {s}: not inside a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10)"
        ));
    }
    Ok(p)
}

/// Whether `pool` lies inside one of [`PRIVATE_POOLS`].
fn in_private_range(pool: &Prefix) -> bool {
    PRIVATE_POOLS.iter().any(|&(a, len)| {
        Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len)
            .is_some_and(|r| r.len() <= pool.len() && r.contains(pool.addr()))
    })
}

/// The ranges an offered pool must lie in: RFC 1918 and the RFC 6598 shared space (CGNAT).
const PRIVATE_POOLS: [([u8; 4], u8); 4] = [
    ([10, 0, 0, 0], 8),
    ([172, 16, 0, 0], 12),
    ([192, 168, 0, 0], 16),
    ([100, 64, 0, 0], 10),
];

/// The narrowest pool a client accepts: a /30 holds two client addresses; a /31 or /32 has no
/// room for a network beside the client's address.
pub const MAX_OFFER_POOL_LEN: u8 = 30;

/// Checks a server's OFFER before the client puts its address on the tunnel: the pool must be
/// an IPv4 prefix of /30 or wider inside a private range (RFC 1918 or 100.64.0.0/10), the
/// address one of its hosts (not its first or last address), and no address in `underlay`
/// (the mesh's underlay endpoints and this host's addresses towards them) may be inside it: a
/// server offering 0.0.0.0/0, a public range or the client's own LAN is refused.
pub fn check_offer(addr: Ipv4Addr, pool: Prefix, underlay: &[IpAddr]) -> Result<(), String> {
    let bad = |why: String| Err(format!("server offered {addr} in pool {pool}: {why}"));
    if !pool.addr().is_ipv4() {
        return bad("not an IPv4 pool".into());
    }
    if pool.len() > MAX_OFFER_POOL_LEN {
        return bad(format!(
            "a /{} is too narrow (/{MAX_OFFER_POOL_LEN} or wider needed)",
            pool.len()
        ));
    }
    if !in_private_range(&pool) {
        return bad(
            "not inside a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10)"
                .into(),
        );
    }
    if !pool.contains(IpAddr::V4(addr)) {
        return bad("the address is not in the pool".into());
    }
    let net = match pool.addr() {
        IpAddr::V4(n) => u32::from(n),
        IpAddr::V6(_) => return bad("not an IPv4 pool".into()),
    };
    let last = net | (u32::MAX >> pool.len());
    if u32::from(addr) == net || u32::from(addr) == last {
        return bad("the address is the pool's network or broadcast address".into());
    }
    if let Some(u) = underlay.iter().find(|u| pool.contains(u.to_canonical())) {
        return bad(format!(
            "the pool holds underlay address {u}, which the mesh itself uses"
        ));
    }
    Ok(())
}

/// Why the server's answer to HELLO gave no lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// Worth asking again (refused, silent, unexpected message).
    Retry(String),
    /// The server offered a pool the client must not use ([`check_offer`]): asking again would
    /// get the same offer.
    BadOffer(String),
}

/// The client's handling of the server's answer to HELLO (`None`: no answer in time): the
/// leased address, or why there is none.
pub fn take_offer(answer: Option<Msg>, underlay: &[IpAddr]) -> Result<Ipv4Addr, LeaseError> {
    match answer {
        Some(Msg::Offer { addr, pool }) => {
            check_offer(addr, pool, underlay).map_err(LeaseError::BadOffer)?;
            Ok(addr)
        }
        Some(Msg::Refused(why)) => Err(LeaseError::Retry(format!("server refused: {why}"))),
        Some(m) => Err(LeaseError::Retry(format!("unexpected {m:?}"))),
        None => Err(LeaseError::Retry("no answer within 10 s".into())),
    }
}

struct Lease {
    addr: Ipv4Addr,
    conns: u32,
    idle_since: Option<Instant>,
}

/// Client addresses: one per client key, stable across reconnects while the lease lives.
pub struct Pool {
    net: u32,
    size: u32,
    prefix: Prefix,
    leases: HashMap<NodeId, Lease>,
    taken: HashMap<u32, NodeId>,
}

impl Pool {
    /// A pool over `prefix` (see [`parse_pool`]). Its first and last addresses are not handed out.
    pub fn new(prefix: Prefix) -> Pool {
        let IpAddr::V4(a) = prefix.addr() else {
            unreachable!("parse_pool only returns IPv4 pools")
        };
        Pool {
            net: u32::from(a),
            size: 1u32 << (32 - u32::from(prefix.len())),
            prefix,
            leases: HashMap::new(),
            taken: HashMap::new(),
        }
    }

    /// The pool's prefix.
    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    /// Leases in use or in their grace time.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The address for `pk`: its current lease, else `want` if free and in the pool, else the
    /// first free one from a slot its key picks (so a client usually gets the same address).
    pub fn lease(&mut self, pk: NodeId, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
        if let Some(l) = self.leases.get_mut(&pk) {
            l.conns += 1;
            l.idle_since = None;
            return Ok(l.addr);
        }
        let hosts = self.size - 2;
        if self.taken.len() as u32 >= hosts {
            return Err(format!("address pool {} is full", self.prefix));
        }
        let usable = |a: u32, net: u32, size: u32| a > net && a < net + size - 1;
        let pick = match want.map(u32::from) {
            Some(w) if usable(w, self.net, self.size) && !self.taken.contains_key(&w) => w,
            _ => {
                let seed = u32::from_be_bytes([pk.0[0], pk.0[1], pk.0[2], pk.0[3]]) % hosts;
                let mut i = seed;
                loop {
                    let a = self.net + 1 + i;
                    if !self.taken.contains_key(&a) {
                        break a;
                    }
                    i = (i + 1) % hosts;
                }
            }
        };
        self.taken.insert(pick, pk);
        let addr = Ipv4Addr::from(pick);
        self.leases.insert(
            pk,
            Lease {
                addr,
                conns: 1,
                idle_since: None,
            },
        );
        Ok(addr)
    }

    /// A connection holding `pk`'s lease ended; the lease stays for the grace time.
    pub fn release(&mut self, pk: &NodeId, now: Instant) {
        if let Some(l) = self.leases.get_mut(pk) {
            l.conns = l.conns.saturating_sub(1);
            if l.conns == 0 {
                l.idle_since = Some(now);
            }
        }
    }

    /// Drops leases idle for longer than `grace`; returns their keys.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.idle_since.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            if let Some(l) = self.leases.remove(k) {
                self.taken.remove(&u32::from(l.addr));
            }
        }
        gone
    }
}

/// The connection to the controlplane's app socket, with the attachments it holds. When the
/// controlplane restarts, [`Control::check`] reconnects and attaches everything again.
pub struct Control {
    path: PathBuf,
    client: Option<AppClient>,
    attached: HashMap<NodeId, Vec<Prefix>>,
    services: Vec<(String, u16)>,
    /// Reconnections made.
    pub reconnects: u64,
}

impl Control {
    /// Connects to the app socket at `path`.
    pub fn connect(path: &Path) -> Result<Control, String> {
        Ok(Control {
            path: path.to_path_buf(),
            client: Some(AppClient::connect(path)?),
            attached: HashMap::new(),
            services: Vec::new(),
            reconnects: 0,
        })
    }

    /// Sends a request, reconnecting once (and re-attaching) if the connection broke.
    pub fn call(&mut self, line: &str) -> Result<String, String> {
        if let Some(c) = &mut self.client {
            match c.call(line) {
                Ok(r) => return Ok(r),
                Err(e) if !e.starts_with("app socket") => return Err(e),
                Err(_) => self.client = None,
            }
        }
        self.reconnect()?;
        match &mut self.client {
            Some(c) => c.call(line),
            None => Err("app socket: not connected".into()),
        }
    }

    fn reconnect(&mut self) -> Result<(), String> {
        let mut c = AppClient::connect(&self.path)?;
        for (n, ps) in &self.attached {
            c.call(&attach_line(n, ps))?;
        }
        for (kind, port) in &self.services {
            c.call(&format!("service {kind} {port}"))?;
        }
        self.client = Some(c);
        self.reconnects += 1;
        Ok(())
    }

    /// Reconnects if the controlplane went away; `Err` while it is still away.
    pub fn check(&mut self) -> Result<(), String> {
        if self.client.as_ref().is_some_and(|c| c.alive()) {
            return Ok(());
        }
        self.client = None;
        self.reconnect()
    }

    /// This node's key and overlay address.
    pub fn whoami(&mut self) -> Result<(NodeId, std::net::Ipv6Addr), String> {
        let r = self.call("whoami")?;
        let mut w = r.split_ascii_whitespace();
        let pk = NodeId::from_hex(w.next().unwrap_or(""))?;
        let addr = w
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("whoami: unexpected reply {r:?}"))?;
        Ok((pk, addr))
    }

    /// Attaches `prefixes` to `node` (kept across controlplane restarts).
    pub fn attach(&mut self, node: NodeId, prefixes: &[Prefix]) -> Result<(), String> {
        self.call(&attach_line(&node, prefixes))?;
        self.attached.insert(node, prefixes.to_vec());
        Ok(())
    }

    /// Publishes a service in this node's messenger record (kept across controlplane
    /// restarts, withdrawn when this connection closes). The reply says when no messenger is
    /// configured.
    pub fn publish(&mut self, kind: &str, port: u16) -> Result<String, String> {
        let r = self.call(&format!("service {kind} {port}"))?;
        self.services.push((kind.to_string(), port));
        Ok(r)
    }

    /// Drops the attachment to `node`.
    pub fn detach(&mut self, node: NodeId) -> Result<(), String> {
        self.attached.remove(&node);
        self.call(&format!("detach {}", node.hex())).map(drop)
    }

    /// A node offering service `kind` and its port, asked of the messengers through the
    /// controlplane; asked again every second until found or `within` has passed.
    pub fn find(&mut self, kind: &str, within: Duration) -> Result<(NodeId, u16), String> {
        let t = Instant::now();
        loop {
            let r = self.call(&format!("find {kind}")).and_then(|r| {
                let mut w = r.split_ascii_whitespace();
                let pk = NodeId::from_hex(w.next().unwrap_or(""))?;
                let port = w
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("find: unexpected reply {r:?}"))?;
                Ok((pk, port))
            });
            match r {
                Ok(x) => return Ok(x),
                Err(e) if t.elapsed() >= within || e.contains("no messenger") => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// Whether a route to `node` is up.
    pub fn route_up(&mut self, node: NodeId) -> Result<bool, String> {
        Ok(self.call(&format!("route {}", node.hex()))? == "up")
    }

    /// The underlay addresses the controlplane uses.
    pub fn underlay(&mut self) -> Result<Vec<IpAddr>, String> {
        let r = self.call("underlay")?;
        r.split_ascii_whitespace()
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("underlay: bad address {a:?}"))
            })
            .collect()
    }
}

fn attach_line(node: &NodeId, prefixes: &[Prefix]) -> String {
    let ps: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    format!("attach {} {}", node.hex(), ps.join(" "))
}

/// Kernel routes for IPv4 prefixes routed through the tunnel: `0.0.0.0/0` becomes the two
/// halves, so the existing default route stays (and comes back untouched on exit).
pub fn kernel_routes(prefixes: &[Prefix]) -> Vec<Prefix> {
    let mut v = Vec::new();
    for p in prefixes {
        if p.len() == 0 {
            v.push(Prefix::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 1).expect("valid"));
            v.push(Prefix::new(IpAddr::V4(Ipv4Addr::new(128, 0, 0, 0)), 1).expect("valid"));
        } else {
            v.push(*p);
        }
    }
    v
}

/// A lease connection: protocol lines both ways, keepalives, and the silence check.
pub struct LineConn {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    last_rx: Instant,
    last_tx: Instant,
}

impl LineConn {
    /// Wraps a connected stream.
    pub fn new(s: std::net::TcpStream) -> LineConn {
        let _ = s.set_nodelay(true);
        LineConn {
            s,
            buf: Vec::new(),
            last_rx: Instant::now(),
            last_tx: Instant::now(),
        }
    }

    /// The other end's address.
    pub fn peer(&self) -> Result<std::net::SocketAddr, String> {
        self.s.peer_addr().map_err(|e| e.to_string())
    }

    /// Sends one message.
    pub fn send(&mut self, m: &Msg) -> Result<(), String> {
        use std::io::Write;
        self.s
            .write_all(m.encode().as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        self.last_tx = Instant::now();
        Ok(())
    }

    /// The next message, waiting at most `wait`: `Ok(None)` when none came. A closed
    /// connection, an over-long line or a malformed one is an error.
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Msg>, String> {
        use std::io::Read;
        let deadline = Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                self.last_rx = Instant::now();
                let text = std::str::from_utf8(&line).map_err(|_| "line is not UTF-8")?;
                return Msg::parse(text).map(Some);
            }
            if self.buf.len() as u64 > MAX_LINE {
                return Err(format!("line longer than {MAX_LINE} bytes"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let _ = self
                .s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut b = [0u8; 256];
            match self.s.read(&mut b) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    }

    /// Sends a keepalive when one is due; an error when the other side has been silent for
    /// [`DEAD`].
    pub fn tick(&mut self) -> Result<(), String> {
        if self.last_rx.elapsed() >= DEAD {
            return Err(format!("no word for {} s", DEAD.as_secs()));
        }
        if self.last_tx.elapsed() >= KEEPALIVE {
            self.send(&Msg::Keepalive)?;
        }
        Ok(())
    }
}

/// The options both VPN apps take about the host.
#[derive(clap::Args, Debug)]
pub struct HostArgs {
    /// The dataplane's TUN device.
    #[arg(long, default_value = "sky0")]
    pub tun: String,
    /// Where the journal of host changes lives: a directory only its owner (root or this
    /// user) can use, mode 0700; created so when missing.
    #[arg(long, default_value = "/run/skywire/vpn")]
    pub state_dir: PathBuf,
    /// Undo what a crashed previous run left, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

/// Call first in `main` (before any thread exists): SIGINT, SIGTERM and SIGHUP set the flag.
pub fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    signal::term::on_termination(move |_| s.store(true, Ordering::SeqCst));
    stop
}

/// Opens the journal `STATE_DIR/ROLE-NAME.journal` (NAME checked first), undoing what a crashed
/// previous run left and saying so; with `cleanup` the process then exits 0.
pub fn open_journal(
    role: &str,
    name: &str,
    state_dir: &Path,
    cleanup: bool,
) -> Result<crate::hostnet::Journal, String> {
    if !valid_name(name) {
        return Err("NAME must be 1-32 of [A-Za-z0-9_-]".into());
    }
    let path = state_dir.join(format!("{role}-{name}.journal"));
    let (journal, undone) = crate::hostnet::Journal::open(&path)?;
    if !undone.is_empty() {
        crate::common::say(&format!(
            "skywire-{role}: undid {} change(s) a previous run left: {}",
            undone.len(),
            undone.join("; ")
        ));
    }
    if cleanup {
        std::process::exit(0);
    }
    Ok(journal)
}

/// Undoes every journaled change, reporting the ones that failed.
pub fn undo(kind: &str, journal: &mut crate::hostnet::Journal) {
    for e in journal.undo_all() {
        tracing::error!("{kind}: undo: {e}");
    }
}

/// Valid instance names (they name state files and nftables tables).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Connects to the app socket, waiting up to `within` for the controlplane to come up.
pub fn connect_control(path: &Path, within: Duration) -> Result<Control, String> {
    let t = Instant::now();
    loop {
        match Control::connect(path) {
            Ok(c) => return Ok(c),
            Err(e) if t.elapsed() >= within => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The name of the interface with index `index` (from /sys/class/net).
pub fn ifname(index: u32) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|e| {
            let i = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
            (i.trim().parse::<u32>().ok()? == index)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// Waits up to `within` for the interface `name` to exist; its index.
pub fn wait_link(name: &str, within: Duration) -> Result<u32, String> {
    let t = Instant::now();
    loop {
        if let Ok(i) = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            && let Ok(i) = i.trim().parse()
        {
            return Ok(i);
        }
        if t.elapsed() >= within {
            return Err(format!(
                "device {name} not found (is skywire-node running?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pk(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn the_client_refuses_offers_of_improper_pools() {
        let underlay: Vec<IpAddr> = vec!["10.9.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let line = |l: &str| take_offer(Some(Msg::parse(l).unwrap()), &underlay);
        assert_eq!(
            line("SKYVPN1 OFFER 100.64.0.2 100.64.0.0/10"),
            Ok(Ipv4Addr::new(100, 64, 0, 2))
        );
        assert_eq!(
            line("SKYVPN1 OFFER 192.168.7.2 192.168.7.0/30"),
            Ok(Ipv4Addr::new(192, 168, 7, 2))
        );
        assert_eq!(
            line("SKYVPN1 OFFER 172.20.0.9 172.16.0.0/12"),
            Ok(Ipv4Addr::new(172, 20, 0, 9))
        );
        for (bad, why) in [
            (
                "SKYVPN1 OFFER 1.2.3.4 0.0.0.0/0",
                "not inside a private range",
            ),
            (
                "SKYVPN1 OFFER 8.8.8.9 8.8.8.0/24",
                "not inside a private range",
            ),
            (
                "SKYVPN1 OFFER 10.0.0.1 0.0.0.0/1",
                "not inside a private range",
            ),
            (
                "SKYVPN1 OFFER 10.0.0.5 8.0.0.0/6",
                "not inside a private range",
            ),
            (
                "SKYVPN1 OFFER 100.64.0.2 100.0.0.0/8",
                "not inside a private range",
            ),
            ("SKYVPN1 OFFER 10.0.0.1 10.0.0.0/31", "too narrow"),
            ("SKYVPN1 OFFER 10.0.0.1 10.0.0.1/32", "too narrow"),
            ("SKYVPN1 OFFER 10.0.0.0 10.0.0.0/24", "network or broadcast"),
            (
                "SKYVPN1 OFFER 10.0.0.255 10.0.0.0/24",
                "network or broadcast",
            ),
            (
                "SKYVPN1 OFFER 10.9.0.7 10.9.0.0/24",
                "underlay address 10.9.0.1",
            ),
            (
                "SKYVPN1 OFFER 10.0.0.7 10.0.0.0/8",
                "underlay address 10.9.0.1",
            ),
        ] {
            match line(bad) {
                Err(LeaseError::BadOffer(e)) => assert!(e.contains(why), "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            take_offer(Some(Msg::Refused("no".into())), &underlay),
            Err(LeaseError::Retry(_))
        ));
        assert!(matches!(
            take_offer(None, &underlay),
            Err(LeaseError::Retry(_))
        ));
    }

    #[test]
    fn messages_roundtrip_and_errors() {
        let pool = parse_pool(DEFAULT_POOL).unwrap();
        for m in [
            Msg::Hello {
                pk: pk(1),
                want: None,
            },
            Msg::Hello {
                pk: pk(2),
                want: Some(Ipv4Addr::new(100, 64, 0, 9)),
            },
            Msg::Offer {
                addr: Ipv4Addr::new(100, 64, 3, 4),
                pool,
            },
            Msg::Refused("not allowed".into()),
            Msg::Keepalive,
        ] {
            assert_eq!(Msg::parse(&m.encode()), Ok(m));
        }
        for (bad, why) in [
            ("HELLO x", "not a SKYVPN1"),
            ("SKYVPN1 HELLO", "without a key"),
            ("SKYVPN1 HELLO 12", "hex"),
            ("SKYVPN1 OFFER 10.0.0.1 100.64.0.0/10", "not in the pool"),
            ("SKYVPN1 OFFER 100.64.0.1 100.64.0.0/40", "longer"),
            ("SKYVPN1 KEEPALIVE now", "unexpected"),
            ("SKYVPN1 BYE", "unknown"),
        ] {
            let e = Msg::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_server_refuses_a_pool_clients_would_refuse() {
        assert!(parse_pool("100.64.0.0/24").is_ok());
        assert!(parse_pool("10.8.0.0/16").is_ok());
        for bad in [
            "8.8.8.0/24",
            "0.0.0.0/0",
            "100.64.0.0/31",
            "fd00::/64",
            "172.32.0.0/16",
        ] {
            assert!(parse_pool(bad).is_err(), "{bad}");
        }
        assert!(
            parse_pool("8.8.8.0/24")
                .unwrap_err()
                .contains("private range")
        );
    }

    #[test]
    fn pool_is_stable_exclusive_and_expires() {
        let mut p = Pool::new(parse_pool("100.64.0.0/29").unwrap());
        let a = p.lease(pk(1), None).unwrap();
        assert_eq!(p.lease(pk(1), None).unwrap(), a, "same key, same address");
        let mut all = vec![a];
        for i in 2..=6 {
            let x = p.lease(pk(i), None).unwrap();
            assert!(!all.contains(&x));
            assert!(x > Ipv4Addr::new(100, 64, 0, 0) && x < Ipv4Addr::new(100, 64, 0, 7));
            all.push(x);
        }
        assert!(p.lease(pk(7), None).unwrap_err().contains("full"));
        let t = Instant::now();
        p.release(&pk(3), t);
        assert!(p.expire(t, Duration::from_secs(60)).is_empty(), "grace");
        assert_eq!(
            p.expire(t + Duration::from_secs(61), Duration::from_secs(60)),
            vec![pk(3)]
        );
        // pk(1) holds two connections: one release keeps it.
        p.release(&pk(1), t);
        assert!(
            p.expire(t + Duration::from_secs(99), Duration::from_secs(60))
                .is_empty()
        );
        // A wanted free address is honoured.
        let freed = all[2];
        assert_eq!(p.lease(pk(9), Some(freed)).unwrap(), freed);
    }

    #[test]
    fn default_route_is_split() {
        let r = kernel_routes(&["0.0.0.0/0".parse().unwrap(), "10.9.0.0/16".parse().unwrap()]);
        let s: Vec<String> = r.iter().map(|p| p.to_string()).collect();
        assert_eq!(s, ["0.0.0.0/1", "128.0.0.0/1", "10.9.0.0/16"]);
    }

    proptest! {
        #[test]
        fn any_line_parses_or_errs(line in "(SKYVPN1 )?(HELLO|OFFER|REFUSED|KEEPALIVE)? ?.{0,120}") {
            if let Ok(m) = Msg::parse(&line) {
                prop_assert_eq!(Msg::parse(&m.encode()), Ok(m));
            }
        }

        #[test]
        fn leases_never_collide(keys in proptest::collection::vec(any::<[u8; 4]>(), 1..40), len in 24u8..=28) {
            let mut p = Pool::new(parse_pool(&format!("100.64.0.0/{len}")).unwrap());
            let mut seen = HashMap::new();
            for k in keys {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&k);
                let id = NodeId(id);
                match p.lease(id, None) {
                    Ok(a) => {
                        if let Some(prev) = seen.insert(a, id) {
                            prop_assert_eq!(prev, id);
                        }
                    }
                    Err(e) => prop_assert!(e.contains("full")),
                }
            }
        }
    }
}
