//! The SOCKS5 server side of one connection: handshake under a deadline, access control,
//! CONNECT then the relay, or UDP ASSOCIATE then the datagram relay.
//!
//! Access control: the dataplane only delivers a packet whose inner source address is the
//! overlay address of the node it came from, so a peer's TCP source address names its node.
//! A client is served when its address is the overlay address of an allowed key (or with
//! `allow_all`). A refused client still gets a protocol answer, so its user sees why: after the
//! greeting and the request the server replies 0x02 ("connection not allowed by ruleset") and
//! closes. When username/password is configured a refused client's credentials are not checked
//! at all: the sub-negotiation answers failure (0x01) and the connection closes.
//!
//! Destinations: the server connects (and sends datagrams) only to addresses its
//! [`DstFilter`] allows, judged after name resolution (a name that resolves to 127.0.0.1 is
//! refused like 127.0.0.1). A refused CONNECT is answered 0x02; a datagram to a refused
//! destination is dropped. Both are counted in `refused_dst`.

use crate::common::Stats;
use crate::dest::DstFilter;
use crate::socks::{self, Command, Parsed, Target, method, reply};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The whole handshake (greeting, authentication, request) must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to the target gives up after this (per resolved address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Username and password (RFC 1929).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: Vec<u8>,
    /// Password.
    pub pass: Vec<u8>,
}

/// What the server allows.
#[derive(Clone, Default)]
pub struct Policy {
    /// Serve every client (any mesh node).
    pub allow_all: bool,
    /// Overlay addresses of the allowed nodes.
    pub allowed: HashSet<Ipv6Addr>,
    /// Required credentials, if any.
    pub credentials: Option<Credentials>,
    /// Which destinations the server connects to.
    pub dst: DstFilter,
}

impl Policy {
    /// Whether a client connecting from `ip` may use the server.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow_all {
            return true;
        }
        match ip.to_canonical() {
            IpAddr::V6(a) => self.allowed.contains(&a),
            IpAddr::V4(_) => false,
        }
    }
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug)]
enum HsError {
    Io(io::Error),
    Timeout,
    Closed,
    Proto(socks::Error),
}

impl std::fmt::Display for HsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HsError::Io(e) => write!(f, "{e}"),
            HsError::Timeout => write!(f, "handshake timed out"),
            HsError::Closed => write!(f, "client closed during the handshake"),
            HsError::Proto(e) => write!(f, "{e}"),
        }
    }
}

/// Reads until `parse` finds a whole message at the front of `buf`; removes it from `buf`.
fn read_msg<T>(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    parse: fn(&[u8]) -> Parsed<T>,
) -> Result<T, HsError> {
    let mut chunk = [0u8; 512];
    loop {
        if let Some((msg, used)) = parse(buf).map_err(HsError::Proto)? {
            buf.drain(..used.min(buf.len()));
            return Ok(msg);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HsError::Timeout);
        }
        s.set_read_timeout(Some(left)).map_err(HsError::Io)?;
        match s.read(&mut chunk) {
            Ok(0) => return Err(HsError::Closed),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HsError::Timeout);
            }
            Err(e) => return Err(HsError::Io(e)),
        }
    }
}

/// The reply code for a failed connect.
fn connect_error_code(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => reply::CONNECTION_REFUSED,
        io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut => reply::HOST_UNREACHABLE,
        io::ErrorKind::NetworkUnreachable => reply::NETWORK_UNREACHABLE,
        _ => reply::GENERAL_FAILURE,
    }
}

/// Resolves `t` and connects to the first address the filter allows that answers. When the
/// name resolves only to refused addresses the answer is 0x02 (not allowed by ruleset).
fn connect(t: &Target, dst: &DstFilter) -> Result<TcpStream, u8> {
    let mut addrs: Vec<SocketAddr> = match t {
        Target::Ip(a) => vec![*a],
        Target::Domain(d, p) => match (d.as_str(), *p).to_socket_addrs() {
            Ok(it) => it.collect(),
            Err(_) => return Err(reply::HOST_UNREACHABLE),
        },
    };
    let resolved = addrs.len();
    addrs.retain(|a| match dst.check(a.ip()) {
        Ok(()) => true,
        Err(why) => {
            tracing::info!("{t}: refused destination {}: {why}", a.ip());
            false
        }
    });
    if resolved > 0 && addrs.is_empty() {
        return Err(reply::NOT_ALLOWED);
    }
    let mut code = reply::HOST_UNREACHABLE;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => code = connect_error_code(&e),
        }
    }
    Err(code)
}

/// Serves one client connection to its end.
pub fn handle(mut s: TcpStream, policy: &Policy, stats: &Stats) {
    let peer = match s.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    match handshake(&mut s, peer, policy, stats) {
        Ok(Some(Next::Udp(assoc))) => {
            if let Err(e) = assoc.run(&mut s, stats) {
                tracing::info!("{peer}: udp relay: {e}");
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Some(Next::Tcp(up, early))) => {
            let mut up = up;
            if !early.is_empty() {
                if up.write_all(&early).is_err() {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                stats
                    .bytes_up
                    .fetch_add(early.len() as u64, Ordering::Relaxed);
            }
            if let Err(e) =
                crate::relay::relay(s, up, stats.bytes_up.clone(), stats.bytes_down.clone())
            {
                tracing::info!("{peer}: relay: {e}");
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(None) => {}
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!("{peer}: {e}");
        }
    }
}

/// What follows a successful handshake.
enum Next {
    /// Relay bytes to the upstream connection (after the early bytes).
    Tcp(TcpStream, Vec<u8>),
    /// Relay datagrams until the control connection ends.
    Udp(UdpAssociation),
}

/// The handshake. `Ok(Some(next))` when a relay should start, `Ok(None)` when the client was
/// answered and the connection is done.
fn handshake(
    s: &mut TcpStream,
    peer: SocketAddr,
    policy: &Policy,
    stats: &Stats,
) -> Result<Option<Next>, HsError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(HsError::Io)?;
    let _ = s.set_nodelay(true);
    let allowed = policy.allows(peer.ip());
    let mut buf = Vec::with_capacity(512);
    let greeting = match read_msg(s, &mut buf, deadline, socks::parse_greeting) {
        Ok(g) => g,
        Err(HsError::Proto(socks::Error::NoMethods)) => {
            let _ = s.write_all(&socks::method_selection(method::NONE_ACCEPTABLE));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let wanted = if policy.credentials.is_some() {
        method::USER_PASS
    } else {
        method::NO_AUTH
    };
    if !greeting.offers(wanted) {
        s.write_all(&socks::method_selection(method::NONE_ACCEPTABLE))
            .map_err(HsError::Io)?;
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{peer}: refused: no acceptable authentication method offered");
        return Ok(None);
    }
    s.write_all(&socks::method_selection(wanted))
        .map_err(HsError::Io)?;
    if let Some(cred) = &policy.credentials {
        let a = read_msg(s, &mut buf, deadline, socks::parse_auth)?;
        // Not allowed: fail without looking at the credentials (no password oracle).
        let ok = allowed && (same(&a.user, &cred.user) & same(&a.pass, &cred.pass));
        s.write_all(&socks::auth_status(ok)).map_err(HsError::Io)?;
        if !ok {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let why = if allowed {
                "wrong username or password"
            } else {
                "not an allowed node"
            };
            tracing::warn!("{peer}: refused: {why}");
            return Ok(None);
        }
    }
    let req = match read_msg(s, &mut buf, deadline, socks::parse_request) {
        Ok(r) => r,
        Err(HsError::Proto(e)) => {
            let _ = s.write_all(&socks::build_reply(e.reply_code(), None));
            return Err(HsError::Proto(e));
        }
        Err(e) => return Err(e),
    };
    if !allowed {
        let _ = s.write_all(&socks::build_reply(reply::NOT_ALLOWED, None));
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{peer}: refused: not an allowed node");
        return Ok(None);
    }
    if req.command == Command::UdpAssociate {
        return match UdpAssociation::new(s, peer, &req.target, policy.dst.clone()) {
            Ok(a) => {
                s.write_all(&socks::build_reply(reply::SUCCEEDED, Some(a.bound)))
                    .map_err(HsError::Io)?;
                Ok(Some(Next::Udp(a)))
            }
            Err(e) => {
                let _ = s.write_all(&socks::build_reply(reply::GENERAL_FAILURE, None));
                Err(HsError::Io(e))
            }
        };
    }
    if req.command != Command::Connect {
        let _ = s.write_all(&socks::build_reply(reply::COMMAND_NOT_SUPPORTED, None));
        stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{peer}: command {:?} not supported", req.command);
        return Ok(None);
    }
    match connect(&req.target, &policy.dst) {
        Ok(up) => {
            let bound = up.local_addr().ok();
            let _ = up.set_nodelay(true);
            s.write_all(&socks::build_reply(reply::SUCCEEDED, bound))
                .map_err(HsError::Io)?;
            Ok(Some(Next::Tcp(up, buf)))
        }
        Err(reply::NOT_ALLOWED) => {
            let _ = s.write_all(&socks::build_reply(reply::NOT_ALLOWED, None));
            stats.refused_dst.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{peer}: refused: destination {} not allowed", req.target);
            Ok(None)
        }
        Err(code) => {
            let _ = s.write_all(&socks::build_reply(code, None));
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!("{peer}: connect {} failed (reply {code:#04x})", req.target);
            Ok(None)
        }
    }
}

/// Longest UDP datagram relayed.
const MAX_DATAGRAM: usize = 65535;

/// One UDP ASSOCIATE (RFC 1928 section 7): datagrams from the client (only from the node that
/// holds the control connection; from the port it named, or the first one it uses) go out to
/// their targets; answers come back with the header naming their source. It ends when the
/// control connection ends. Fragmented datagrams (FRAG != 0) are dropped, as the RFC allows.
struct UdpAssociation {
    /// The client side, on the address the control connection came in on.
    down: UdpSocket,
    /// The target side (dual-stack).
    up: UdpSocket,
    bound: SocketAddr,
    client_ip: IpAddr,
    client_port: Option<u16>,
    dst: DstFilter,
}

impl UdpAssociation {
    fn new(
        s: &TcpStream,
        peer: SocketAddr,
        wanted: &Target,
        dst: DstFilter,
    ) -> io::Result<UdpAssociation> {
        let local = s.local_addr()?;
        let down = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
        let up = UdpSocket::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))
            .or_else(|_| UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)))?;
        let client_port = match wanted {
            Target::Ip(a) if a.port() != 0 => Some(a.port()),
            _ => None,
        };
        Ok(UdpAssociation {
            bound: down.local_addr()?,
            down,
            up,
            client_ip: peer.ip().to_canonical(),
            client_port,
            dst,
        })
    }

    fn run(mut self, ctl: &mut TcpStream, stats: &Stats) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags, poll};
        ctl.set_read_timeout(None)?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(MAX_DATAGRAM + 262);
        let mut client: Option<SocketAddr> = None;
        let dual_stack = self.up.local_addr()?.is_ipv6();
        loop {
            let mut fds = [
                PollFd::new(&*ctl, PollFlags::IN),
                PollFd::new(&self.down, PollFlags::IN),
                PollFd::new(&self.up, PollFlags::IN),
            ];
            poll(&mut fds, None)?;
            let (c, d, u) = (fds[0].revents(), fds[1].revents(), fds[2].revents());
            if !c.is_empty() {
                // The client sends nothing more on the control connection: readable means it
                // ended (or broke the protocol), which ends the association.
                return Ok(());
            }
            if !d.is_empty() {
                let (n, from) = self.down.recv_from(&mut buf)?;
                if from.ip().to_canonical() != self.client_ip
                    || self.client_port.is_some_and(|p| p != from.port())
                {
                    continue;
                }
                self.client_port.get_or_insert(from.port());
                client = Some(from);
                let Ok((0, target, at)) = socks::parse_udp(&buf[..n]) else {
                    continue;
                };
                let Some(to) = resolve_udp(&target, dual_stack) else {
                    continue;
                };
                if let Err(why) = self.dst.check(to.ip()) {
                    stats.refused_dst.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("datagram to {target} ({}) dropped: {why}", to.ip());
                    continue;
                }
                if self.up.send_to(&buf[at..n], to).is_ok() {
                    stats.bytes_up.fetch_add((n - at) as u64, Ordering::Relaxed);
                }
            }
            if !u.is_empty() {
                let (n, from) = self.up.recv_from(&mut buf)?;
                let Some(to) = client else { continue };
                let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                out.clear();
                socks::udp_header_into(from, &mut out);
                out.extend_from_slice(&buf[..n]);
                if self.down.send_to(&out, to).is_ok() {
                    stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Where a datagram for `t` goes, as an address the target-side socket can send to (IPv4 as
/// mapped addresses on a dual-stack socket; an IPv4-only socket takes IPv4 only).
fn resolve_udp(t: &Target, dual_stack: bool) -> Option<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = match t {
        Target::Ip(a) => vec![*a],
        Target::Domain(d, p) => (d.as_str(), *p).to_socket_addrs().ok()?.collect(),
    };
    if !dual_stack {
        addrs.retain(SocketAddr::is_ipv4);
    }
    Some(match addrs.into_iter().next()? {
        SocketAddr::V4(v4) if dual_stack => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        a => a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let pk = "ab".repeat(32);
        let a = crate::common::overlay_of_pk(&pk).unwrap();
        let p = Policy {
            allowed: [a].into_iter().collect(),
            ..Policy::default()
        };
        assert!(p.allows(IpAddr::V6(a)));
        assert!(!p.allows("127.0.0.1".parse().unwrap()));
        assert!(!p.allows("::1".parse().unwrap()));
        let all = Policy {
            allow_all: true,
            ..Policy::default()
        };
        assert!(all.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn constant_time_eq() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
