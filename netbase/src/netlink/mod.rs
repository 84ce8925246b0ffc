//! Minimal rtnetlink client over a raw `NETLINK_ROUTE` socket.
//!
//! Every request is sent with `NLM_F_REQUEST | NLM_F_ACK`; the kernel's ACK
//! (or error) is read back and turned into an [`io::Error`] whose message
//! names the operation, e.g.
//! `add address 10.1.0.1/24 to sky0: File exists (os error 17)`.
//! The raw errno stays reachable through [`NetlinkError`] / [`os_errno`].
//!
//! Replies are parsed defensively: every length field coming from the kernel
//! is bounds-checked, so short or garbled messages yield
//! [`io::ErrorKind::InvalidData`] instead of a panic.
//!
//! The socket lives in the network namespace of the thread that called
//! [`Netlink::open`]; all operations act on that namespace.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::Prefix;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

mod consts;
use consts::*;

mod parse;
use parse::*;
pub use parse::{
    ErrorMsg, LinkInfo, NetlinkError, NlMsg, ParseError, RouteHop, attrs, attrs_strict, os_errno,
    parse_error, parse_messages, parse_route_hop,
};

// ---- building ----

/// Builds one netlink message with 4-byte aligned attributes.
#[derive(Debug, Clone)]
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    /// Header with a placeholder length (filled by [`MsgBuilder::finish`]).
    pub fn new(ty: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: kernel fills in
        MsgBuilder { buf }
    }

    fn pad(&mut self) {
        let n = align(self.buf.len());
        self.buf.resize(n, 0);
    }

    /// Append a fixed family header (ifinfomsg, ifaddrmsg, rtmsg) as bytes.
    pub fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Append an attribute. Values longer than 65531 bytes are invalid
    /// netlink and are rejected with `InvalidInput`.
    pub fn attr(&mut self, ty: u16, val: &[u8]) -> io::Result<&mut Self> {
        let len = u16::try_from(NLA_HDRLEN + val.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "netlink attribute too long")
        })?;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(val);
        self.pad();
        Ok(self)
    }

    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        // 8 bytes total: cannot exceed u16.
        self.buf.extend_from_slice(&8u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> io::Result<&mut Self> {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    pub fn attr_ip(&mut self, ty: u16, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(a) => self.attr_fixed(ty, &a.octets()),
            IpAddr::V6(a) => self.attr_fixed(ty, &a.octets()),
        }
    }

    fn attr_fixed<const N: usize>(&mut self, ty: u16, val: &[u8; N]) -> &mut Self {
        // N is 4 or 16 here: always fits a u16.
        let len = (NLA_HDRLEN + N) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(val);
        self.pad();
        self
    }

    /// The finished message with its length field set.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let len = u32::try_from(self.buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink message too long"))?;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        Ok(self.buf)
    }
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// The prefix of `ip/prefix_len` with host bits cleared (the kernel rejects IPv4 routes whose
/// destination has host bits set); an error when the length is too long for the family.
fn prefix_of(ip: &IpAddr, prefix_len: u8) -> io::Result<Prefix> {
    Prefix::new(*ip, prefix_len).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length /{prefix_len} too long for {ip}"),
        )
    })
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = AF_UNSPEC;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} must be 1..={} bytes (IFNAMSIZ)",
                IFNAMSIZ - 1
            ),
        ));
    }
    Ok(())
}

// ---- the client ----

/// What a route request refers to; shared by add/replace/del.
#[derive(Debug, Clone, Copy)]
struct RouteSpec {
    dest: IpAddr,
    prefix_len: u8,
    oif: u32,
    gateway: Option<IpAddr>,
    table: Option<u32>,
}

/// An rtnetlink socket bound in the calling thread's network namespace.
///
/// Methods take `&mut self`: one request is in flight at a time, and
/// replies are matched by sequence number.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Netlink {
    /// Open and bind a `NETLINK_ROUTE` socket.
    pub fn open() -> io::Result<Netlink> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // protocol 0 = NETLINK_ROUTE
        )
        .map_err(|e| ctx(e.into(), "open NETLINK_ROUTE socket"))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|e| ctx(e.into(), "bind NETLINK_ROUTE socket"))?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(RECV_TIMEOUT),
        )
        .map_err(|e| ctx(e.into(), "set netlink receive timeout"))?;
        // Best effort: extended ACK messages and short error echoes.
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `fd` is a valid socket; we pass a pointer to a live
            // c_int and its exact size, which the kernel only reads.
            let _ = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    SOL_NETLINK,
                    opt,
                    (&raw const one).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        // Start from a pid-derived value so two sockets' sequences differ.
        let seq = rustix::process::getpid().as_raw_nonzero().get() as u32;
        Ok(Netlink {
            fd,
            seq: seq.wrapping_mul(65_537),
            buf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send one request and wait for its ACK. Returns a copy of the payload
    /// of the last non-error reply with our sequence number, if any.
    fn request(
        &mut self,
        msg: MsgBuilder,
        seq: u32,
        op: &dyn Fn(BorrowedFd<'_>) -> String,
    ) -> io::Result<Option<Vec<u8>>> {
        let bytes = msg.finish()?;
        let kernel = SocketAddrNetlink::new(0, 0);
        loop {
            match rustix::net::sendto(&self.fd, &bytes, SendFlags::empty(), &kernel) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ctx(e.into(), &format!("{}: send", op(self.fd.as_fd())))),
            }
        }
        let mut reply: Option<Vec<u8>> = None;
        loop {
            let (n, full) =
                match rustix::net::recvfrom(&self.fd, &mut self.buf[..], RecvFlags::TRUNC) {
                    Ok((n, full, addr)) => {
                        // Only accept messages from the kernel (port id 0).
                        let from_kernel = addr
                            .and_then(|a| SocketAddrNetlink::try_from(a).ok())
                            .is_none_or(|a| a.pid() == 0);
                        if !from_kernel {
                            continue;
                        }
                        (n, full)
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{}: no reply from kernel within {RECV_TIMEOUT:?}",
                                op(self.fd.as_fd())
                            ),
                        ));
                    }
                    Err(e) => {
                        return Err(ctx(e.into(), &format!("{}: receive", op(self.fd.as_fd()))));
                    }
                };
            if full > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: reply of {full} bytes truncated to {n}",
                        op(self.fd.as_fd())
                    ),
                ));
            }
            let msgs = parse_messages(&self.buf[..n]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", op(self.fd.as_fd())),
                )
            })?;
            for m in msgs {
                if m.seq != seq {
                    continue; // stale reply to an earlier request
                }
                match m.ty {
                    NLMSG_ERROR => {
                        let err = parse_error(m.payload, m.flags).map_err(|e| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{}: {e}", op(self.fd.as_fd())),
                            )
                        })?;
                        if err.errno == 0 {
                            return Ok(reply);
                        }
                        return Err(NetlinkError {
                            op: op(self.fd.as_fd()),
                            errno: err.errno,
                            ext_msg: err.ext_msg,
                        }
                        .into_io());
                    }
                    NLMSG_NOOP | NLMSG_DONE | NLMSG_OVERRUN => {}
                    _ => reply = Some(m.payload.to_vec()),
                }
            }
        }
    }

    /// Look a link up by name (`RTM_GETLINK`). `Ok(None)` if absent.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        check_ifname(name)?;
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        m.header(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name)?;
        m.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        match self.request(m, seq, &|_| format!("look up link {name}")) {
            Ok(Some(payload)) => Ok(Some(parse_link(&payload)?)),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("look up link {name}: kernel acknowledged without a reply"),
            )),
            Err(e) if os_errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Interface index of `name`, `Ok(None)` if there is no such link.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        Ok(self.link(name)?.map(|l| l.index))
    }

    /// Set or clear `IFF_UP`.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        m.header(&ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP));
        let state = if up { "up" } else { "down" };
        self.request(m, seq, &|fd| format!("set {} {state}", describe(fd, index)))
            .map(drop)
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        m.header(&ifinfomsg(index, 0, 0));
        m.attr_u32(IFLA_MTU, mtu);
        self.request(m, seq, &|fd| {
            format!("set mtu {mtu} on {}", describe(fd, index))
        })
        .map(drop)
    }

    /// Add `addr/prefix_len` to the link. IPv6 addresses get `IFA_F_NODAD`
    /// so they are usable immediately. Fails with `AlreadyExists` if present.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        prefix_of(&addr, prefix_len)?;
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        );
        let nodad = if addr.is_ipv6() { IFA_F_NODAD } else { 0 };
        // struct ifaddrmsg: family, prefixlen, flags, scope, index u32
        let mut h = [0u8; 8];
        h[0] = family(&addr);
        h[1] = prefix_len;
        h[2] = nodad as u8;
        h[3] = RT_SCOPE_UNIVERSE;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        m.header(&h);
        if addr.is_ipv4() {
            m.attr_ip(IFA_LOCAL, addr);
        }
        m.attr_ip(IFA_ADDRESS, addr);
        if nodad != 0 {
            m.attr_u32(IFA_FLAGS, nodad);
        }
        self.request(m, seq, &|fd| {
            format!("add address {addr}/{prefix_len} to {}", describe(fd, index))
        })
        .map(drop)
    }

    /// Remove `addr/prefix_len` from the link (`RTM_DELADDR`). Fails with
    /// `EADDRNOTAVAIL` (see [`os_errno`]) if the link does not have it.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        prefix_of(&addr, prefix_len)?;
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index u32
        let mut h = [0u8; 8];
        h[0] = family(&addr);
        h[1] = prefix_len;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        m.header(&h);
        if addr.is_ipv4() {
            m.attr_ip(IFA_LOCAL, addr);
        }
        m.attr_ip(IFA_ADDRESS, addr);
        self.request(m, seq, &|fd| {
            format!(
                "delete address {addr}/{prefix_len} from {}",
                describe(fd, index)
            )
        })
        .map(drop)
    }

    /// Look up the route the kernel would use for `dst` (`RTM_GETROUTE`,
    /// like `ip route get`). `Ok(None)` if `dst` is unreachable: no route,
    /// or an `unreachable`/`prohibit`/`blackhole`/`throw` route.
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Option<RouteHop>> {
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, seq);
        let mut h = [0u8; 12];
        h[0] = family(&dst);
        h[1] = if dst.is_ipv4() { 32 } else { 128 };
        m.header(&h);
        m.attr_ip(RTA_DST, dst);
        let op = format!("look up route to {dst}");
        match self.request(m, seq, &|_| op.clone()) {
            Ok(Some(payload)) => parse_route_hop(&payload)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{op}: {e}"))),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{op}: kernel acknowledged without a reply"),
            )),
            // ENETUNREACH: no route or `unreachable`; EACCES: `prohibit`;
            // EINVAL: `blackhole` (the request itself is always well formed).
            Err(e)
                if matches!(
                    os_errno(&e),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EACCES | libc::EINVAL)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Delete the link (`RTM_DELLINK`).
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
        m.header(&ifinfomsg(index, 0, 0));
        self.request(m, seq, &|fd| format!("delete link {}", describe(fd, index)))
            .map(drop)
    }

    /// Add a unicast route; `AlreadyExists` if an identical one exists.
    /// Host bits of `dest` beyond `prefix_len` are cleared. `table` defaults
    /// to main (254). Without a gateway the route has link scope.
    pub fn add_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        oif: u32,
        gateway: Option<IpAddr>,
        table: Option<u32>,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dest,
            prefix_len,
            oif,
            gateway,
            table,
        };
        self.route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, "add route", spec)
    }

    /// Add or replace (`NLM_F_REPLACE | NLM_F_CREATE`) a unicast route.
    pub fn replace_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        oif: u32,
        gateway: Option<IpAddr>,
        table: Option<u32>,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dest,
            prefix_len,
            oif,
            gateway,
            table,
        };
        self.route(
            RTM_NEWROUTE,
            NLM_F_REPLACE | NLM_F_CREATE,
            "replace route",
            spec,
        )
    }

    /// Delete a route; `NotFound`-ish error (ESRCH) if it does not exist.
    pub fn del_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        oif: u32,
        gateway: Option<IpAddr>,
        table: Option<u32>,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dest,
            prefix_len,
            oif,
            gateway,
            table,
        };
        self.route(RTM_DELROUTE, 0, "delete route", spec)
    }

    fn route(&mut self, ty: u16, extra: u16, verb: &str, r: RouteSpec) -> io::Result<()> {
        let dest = prefix_of(&r.dest, r.prefix_len)?.addr();
        if let Some(gw) = r.gateway
            && gw.is_ipv4() != r.dest.is_ipv4()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{verb} {}/{}: gateway {gw} is of another address family",
                    r.dest, r.prefix_len
                ),
            ));
        }
        let table = r.table.unwrap_or(RT_TABLE_MAIN);
        let seq = self.next_seq();
        let mut m = MsgBuilder::new(ty, NLM_F_REQUEST | NLM_F_ACK | extra, seq);
        let deleting = ty == RTM_DELROUTE;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags u32
        let mut h = [0u8; 12];
        h[0] = family(&dest);
        h[1] = r.prefix_len;
        h[4] = u8::try_from(table).unwrap_or(RT_TABLE_COMPAT);
        if deleting {
            // Match any protocol/type; scope NOWHERE means "any scope".
            h[6] = RT_SCOPE_NOWHERE;
        } else {
            h[5] = RTPROT_STATIC;
            h[6] = if r.gateway.is_some() {
                RT_SCOPE_UNIVERSE
            } else {
                RT_SCOPE_LINK
            };
            h[7] = RTN_UNICAST;
        }
        m.header(&h);
        m.attr_u32(RTA_TABLE, table);
        if r.prefix_len > 0 {
            m.attr_ip(RTA_DST, dest);
        }
        m.attr_u32(RTA_OIF, r.oif);
        if let Some(gw) = r.gateway {
            m.attr_ip(RTA_GATEWAY, gw);
        }
        self.request(m, seq, &|fd| {
            let mut s = format!("{verb} {dest}/{} dev {}", r.prefix_len, describe(fd, r.oif));
            if let Some(gw) = r.gateway {
                s.push_str(&format!(" via {gw}"));
            }
            if let Some(t) = r.table {
                s.push_str(&format!(" table {t}"));
            }
            s
        })
        .map(drop)
    }
}

/// Name of `index` for error messages, or `ifindex N` if unknown.
fn describe(fd: BorrowedFd<'_>, index: u32) -> String {
    rustix::net::netdevice::index_to_name(fd, index).unwrap_or_else(|_| format!("ifindex {index}"))
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests;
