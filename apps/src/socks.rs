//! SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929), sans IO.
//!
//! Every parser takes the bytes received so far and answers `Ok(None)` when more are needed,
//! `Ok(Some((message, used)))` when a whole message is at the front of the buffer, or an
//! [`Error`] naming the reply the server should send. The functions are total: no input makes
//! them panic (a proptest checks it).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte of SOCKS5.
pub const VERSION: u8 = 5;
/// The version byte of the username/password sub-negotiation.
pub const AUTH_VERSION: u8 = 1;

/// Authentication methods (the `METHOD` byte).
pub mod method {
    /// No authentication required.
    pub const NO_AUTH: u8 = 0x00;
    /// Username/password (RFC 1929).
    pub const USER_PASS: u8 = 0x02;
    /// No acceptable methods.
    pub const NONE_ACCEPTABLE: u8 = 0xFF;
}

/// Reply codes (the `REP` byte).
pub mod reply {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0x00;
    /// General SOCKS server failure.
    pub const GENERAL_FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 0x02;
    /// Network unreachable.
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 0x04;
    /// Connection refused.
    pub const CONNECTION_REFUSED: u8 = 0x05;
    /// TTL expired.
    pub const TTL_EXPIRED: u8 = 0x06;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// Address types (the `ATYP` byte).
pub mod atyp {
    /// IPv4 address, 4 bytes.
    pub const IPV4: u8 = 0x01;
    /// Domain name, one length byte then the name.
    pub const DOMAIN: u8 = 0x03;
    /// IPv6 address, 16 bytes.
    pub const IPV6: u8 = 0x04;
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The version byte is not the expected one.
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// A greeting that offers no methods at all.
    #[error("greeting offers no authentication methods")]
    NoMethods,
    /// An address type other than 1, 3 and 4.
    #[error("address type {0} not supported")]
    BadAddressType(u8),
    /// An empty or non-UTF-8 domain name.
    #[error("malformed domain name")]
    BadDomain,
    /// The reserved byte of a request is not zero.
    #[error("reserved byte is {0}, not 0")]
    BadReserved(u8),
}

impl Error {
    /// The `REP` code a server answers a malformed request with.
    pub fn reply_code(&self) -> u8 {
        match self {
            Error::BadAddressType(_) => reply::ADDRESS_TYPE_NOT_SUPPORTED,
            _ => reply::GENERAL_FAILURE,
        }
    }
}

/// The result of a parser: a message and the bytes it used, or `None` (need more bytes).
pub type Parsed<T> = Result<Option<(T, usize)>, Error>;

/// The client's first message: the methods it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Offered methods, in the client's order.
    pub methods: Vec<u8>,
}

impl Greeting {
    /// Whether the client offers `m`.
    pub fn offers(&self, m: u8) -> bool {
        self.methods.contains(&m)
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.methods.len().min(255);
        let mut v = vec![VERSION, n as u8];
        v.extend_from_slice(&self.methods[..n]);
        v
    }
}

/// Parses a greeting: `VER NMETHODS METHODS...`.
pub fn parse_greeting(buf: &[u8]) -> Parsed<Greeting> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(Error::BadVersion(ver));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    if n == 0 {
        return Err(Error::NoMethods);
    }
    let end = 2 + usize::from(n);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    Ok(Some((
        Greeting {
            methods: methods.to_vec(),
        },
        end,
    )))
}

/// The server's method selection: `VER METHOD`.
pub fn method_selection(m: u8) -> [u8; 2] {
    [VERSION, m]
}

/// A username/password request (RFC 1929).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The user name (1..=255 bytes).
    pub user: Vec<u8>,
    /// The password (1..=255 bytes on the wire; empty is tolerated).
    pub pass: Vec<u8>,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("pass", &"<hidden>")
            .finish()
    }
}

impl AuthRequest {
    /// The wire form (fields longer than 255 bytes are cut).
    pub fn encode(&self) -> Vec<u8> {
        let u = &self.user[..self.user.len().min(255)];
        let p = &self.pass[..self.pass.len().min(255)];
        let mut v = vec![AUTH_VERSION, u.len() as u8];
        v.extend_from_slice(u);
        v.push(p.len() as u8);
        v.extend_from_slice(p);
        v
    }
}

/// Parses `VER ULEN UNAME PLEN PASSWD`.
pub fn parse_auth(buf: &[u8]) -> Parsed<AuthRequest> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != AUTH_VERSION {
        return Err(Error::BadVersion(ver));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    let uend = 2 + usize::from(ulen);
    let Some(user) = buf.get(2..uend) else {
        return Ok(None);
    };
    let Some(&plen) = buf.get(uend) else {
        return Ok(None);
    };
    let pend = uend + 1 + usize::from(plen);
    let Some(pass) = buf.get(uend + 1..pend) else {
        return Ok(None);
    };
    Ok(Some((
        AuthRequest {
            user: user.to_vec(),
            pass: pass.to_vec(),
        },
        pend,
    )))
}

/// The sub-negotiation status: `VER STATUS` (0 = success).
pub fn auth_status(ok: bool) -> [u8; 2] {
    [AUTH_VERSION, if ok { 0x00 } else { 0x01 }]
}

/// The request's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// CONNECT (1).
    Connect,
    /// BIND (2).
    Bind,
    /// UDP ASSOCIATE (3).
    UdpAssociate,
    /// Anything else.
    Other(u8),
}

impl Command {
    /// From the `CMD` byte.
    pub fn from_byte(b: u8) -> Command {
        match b {
            1 => Command::Connect,
            2 => Command::Bind,
            3 => Command::UdpAssociate,
            x => Command::Other(x),
        }
    }

    /// The `CMD` byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Command::Connect => 1,
            Command::Bind => 2,
            Command::UdpAssociate => 3,
            Command::Other(x) => x,
        }
    }
}

/// A destination: an address or a name, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP address and port (ATYP 1 or 4).
    Ip(SocketAddr),
    /// A domain name (ATYP 3, 1..=255 bytes of UTF-8) and port.
    Domain(String, u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ip(a) => write!(f, "{a}"),
            Target::Domain(d, p) => write!(f, "{d}:{p}"),
        }
    }
}

impl Target {
    /// `ATYP ADDR PORT` (a domain longer than 255 bytes is cut).
    pub fn encode_into(&self, v: &mut Vec<u8>) {
        match self {
            Target::Ip(SocketAddr::V4(a)) => {
                v.push(atyp::IPV4);
                v.extend_from_slice(&a.ip().octets());
                v.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Ip(SocketAddr::V6(a)) => {
                v.push(atyp::IPV6);
                v.extend_from_slice(&a.ip().octets());
                v.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Domain(d, p) => {
                let b = &d.as_bytes()[..d.len().min(255)];
                v.push(atyp::DOMAIN);
                v.push(b.len() as u8);
                v.extend_from_slice(b);
                v.extend_from_slice(&p.to_be_bytes());
            }
        }
    }
}

/// Parses `ATYP ADDR PORT` at the front of `buf`.
pub fn parse_target(buf: &[u8]) -> Parsed<Target> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    let port_at = |i: usize| -> Option<u16> {
        let b = buf.get(i..i + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    match t {
        atyp::IPV4 => {
            let (Some(a), Some(p)) = (buf.get(1..5), port_at(5)) else {
                return Ok(None);
            };
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(Some((Target::Ip(SocketAddr::new(ip.into(), p)), 7)))
        }
        atyp::IPV6 => {
            let (Some(a), Some(p)) = (buf.get(1..17), port_at(17)) else {
                return Ok(None);
            };
            let mut o = [0u8; 16];
            o.copy_from_slice(a);
            let ip = Ipv6Addr::from(o);
            Ok(Some((Target::Ip(SocketAddr::new(ip.into(), p)), 19)))
        }
        atyp::DOMAIN => {
            let Some(&n) = buf.get(1) else {
                return Ok(None);
            };
            if n == 0 {
                return Err(Error::BadDomain);
            }
            let end = 2 + usize::from(n);
            let (Some(name), Some(p)) = (buf.get(2..end), port_at(end)) else {
                return Ok(None);
            };
            let name = std::str::from_utf8(name).map_err(|_| Error::BadDomain)?;
            Ok(Some((Target::Domain(name.to_owned(), p), end + 2)))
        }
        other => Err(Error::BadAddressType(other)),
    }
}

/// A request: `VER CMD RSV ATYP DST.ADDR DST.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the client asks for.
    pub command: Command,
    /// Where to.
    pub target: Target,
}

impl Request {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![VERSION, self.command.to_byte(), 0];
        self.target.encode_into(&mut v);
        v
    }
}

/// Parses a request. Unknown commands are returned (as [`Command::Other`]) so the server can
/// answer 0x07 after reading the whole message; unknown address types are an error (their
/// length is unknown), answered with 0x08.
pub fn parse_request(buf: &[u8]) -> Parsed<Request> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(Error::BadVersion(ver));
    }
    let (Some(&cmd), Some(&rsv)) = (buf.get(1), buf.get(2)) else {
        return Ok(None);
    };
    if rsv != 0 {
        return Err(Error::BadReserved(rsv));
    }
    let rest = buf.get(3..).unwrap_or(&[]);
    match parse_target(rest)? {
        None => Ok(None),
        Some((target, used)) => Ok(Some((
            Request {
                command: Command::from_byte(cmd),
                target,
            },
            3 + used,
        ))),
    }
}

/// A reply: `VER REP RSV ATYP BND.ADDR BND.PORT`. Without a bound address, 0.0.0.0:0.
pub fn build_reply(rep: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or_else(|| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
    let mut v = vec![VERSION, rep, 0];
    Target::Ip(bound).encode_into(&mut v);
    v
}

/// Parses a reply (for clients and tests): the `REP` code and the bound address.
pub fn parse_reply(buf: &[u8]) -> Parsed<(u8, Target)> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(Error::BadVersion(ver));
    }
    let Some(&rep) = buf.get(1) else {
        return Ok(None);
    };
    let rest = buf.get(3..).unwrap_or(&[]);
    match parse_target(rest)? {
        None => Ok(None),
        Some((t, used)) => Ok(Some(((rep, t), 3 + used))),
    }
}

/// A UDP ASSOCIATE datagram (RFC 1928 section 7): `RSV(2) FRAG ATYP ADDR PORT DATA`.
/// Returns the fragment number, the target and where the data starts. A datagram is whole or
/// it is malformed: an incomplete header is an error.
pub fn parse_udp(datagram: &[u8]) -> Result<(u8, Target, usize), UdpError> {
    let (Some(rsv), Some(&frag)) = (datagram.get(..2), datagram.get(2)) else {
        return Err(UdpError::Short);
    };
    if rsv != [0, 0] {
        return Err(UdpError::Reserved);
    }
    match parse_target(&datagram[3..]) {
        Ok(Some((t, used))) => Ok((frag, t, 3 + used)),
        Ok(None) => Err(UdpError::Short),
        Err(e) => Err(UdpError::Target(e)),
    }
}

/// Writes the UDP ASSOCIATE header for data from (or to) `addr` into `v` (FRAG 0).
pub fn udp_header_into(addr: SocketAddr, v: &mut Vec<u8>) {
    v.extend_from_slice(&[0, 0, 0]);
    Target::Ip(addr).encode_into(v);
}

/// Why a UDP ASSOCIATE datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// Shorter than its header.
    #[error("datagram shorter than its header")]
    Short,
    /// The reserved bytes are not zero.
    #[error("reserved bytes are not zero")]
    Reserved,
    /// A bad address.
    #[error("{0}")]
    Target(Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn udp_datagrams() {
        let a: SocketAddr = "10.1.2.3:53".parse().unwrap();
        let mut v = Vec::new();
        udp_header_into(a, &mut v);
        v.extend_from_slice(b"query");
        let (frag, t, at) = parse_udp(&v).unwrap();
        assert_eq!((frag, t, &v[at..]), (0, Target::Ip(a), &b"query"[..]));
        let mut d = vec![0, 0, 0, atyp::DOMAIN, 3];
        d.extend_from_slice(b"dns\x00\x35x");
        let (_, t, at) = parse_udp(&d).unwrap();
        assert_eq!((t, &d[at..]), (Target::Domain("dns".into(), 53), &b"x"[..]));
        assert_eq!(parse_udp(&[0, 0]), Err(UdpError::Short));
        assert_eq!(
            parse_udp(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 1]),
            Err(UdpError::Reserved)
        );
        assert_eq!(parse_udp(&[0, 0, 0, 1, 1, 2]), Err(UdpError::Short));
        assert!(matches!(
            parse_udp(&[0, 0, 0, 9, 1]),
            Err(UdpError::Target(_))
        ));
    }

    proptest! {
        #[test]
        fn udp_parser_is_total(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((_, _, at)) = parse_udp(&d) {
                prop_assert!(at <= d.len());
            }
        }
    }

    #[test]
    fn greeting_parses_incrementally() {
        let g = [5, 2, 0, 2, 99];
        for i in 0..4 {
            assert_eq!(parse_greeting(&g[..i]), Ok(None));
        }
        let (gr, used) = parse_greeting(&g).unwrap().unwrap();
        assert_eq!(used, 4);
        assert_eq!(gr.methods, vec![0, 2]);
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(Error::BadVersion(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(Error::NoMethods));
    }

    #[test]
    fn requests_of_each_address_type() {
        let r = [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        let (req, used) = parse_request(&r).unwrap().unwrap();
        assert_eq!(used, 10);
        assert_eq!(req.command, Command::Connect);
        assert_eq!(req.target, Target::Ip("127.0.0.1:8080".parse().unwrap()));
        let mut r6 = vec![5, 1, 0, 4];
        r6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        r6.extend_from_slice(&[0, 80]);
        let (req, _) = parse_request(&r6).unwrap().unwrap();
        assert_eq!(req.target, Target::Ip("[::1]:80".parse().unwrap()));
        let mut rd = vec![5, 1, 0, 3, 9];
        rd.extend_from_slice(b"localhost");
        rd.extend_from_slice(&[0, 80]);
        let (req, used) = parse_request(&rd).unwrap().unwrap();
        assert_eq!(used, rd.len());
        assert_eq!(req.target, Target::Domain("localhost".into(), 80));
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 1, 2]),
            Err(Error::BadAddressType(9))
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 9]).unwrap_err().reply_code(),
            reply::ADDRESS_TYPE_NOT_SUPPORTED
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(Error::BadDomain)
        );
        let (req, _) = parse_request(&[5, 2, 0, 1, 1, 2, 3, 4, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(req.command, Command::Bind);
    }

    #[test]
    fn auth_and_replies() {
        let a = AuthRequest {
            user: b"bob".to_vec(),
            pass: b"secret".to_vec(),
        };
        let w = a.encode();
        assert_eq!(parse_auth(&w), Ok(Some((a.clone(), w.len()))));
        assert!(!format!("{a:?}").contains("secret"));
        assert_eq!(parse_auth(&w[..w.len() - 1]), Ok(None));
        let rep = build_reply(reply::SUCCEEDED, Some("[::1]:9".parse().unwrap()));
        let ((code, t), used) = parse_reply(&rep).unwrap().unwrap();
        assert_eq!((code, used), (0, rep.len()));
        assert_eq!(t, Target::Ip("[::1]:9".parse().unwrap()));
        assert_eq!(build_reply(7, None), vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(a, p)| Target::Ip(SocketAddr::new(Ipv4Addr::from(a).into(), p))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(a, p)| Target::Ip(SocketAddr::new(Ipv6Addr::from(a).into(), p))),
            ("[a-z0-9.-]{1,255}", any::<u16>()).prop_map(|(d, p)| Target::Domain(d, p)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_greeting(&buf);
            let _ = parse_auth(&buf);
            let _ = parse_request(&buf);
            let _ = parse_reply(&buf);
            let _ = parse_target(&buf);
            // Whatever parses used no more bytes than it had.
            if let Ok(Some((_, n))) = parse_request(&buf) { prop_assert!(n <= buf.len()); }
            if let Ok(Some((_, n))) = parse_greeting(&buf) { prop_assert!(n <= buf.len()); }
            if let Ok(Some((_, n))) = parse_auth(&buf) { prop_assert!(n <= buf.len()); }
        }

        #[test]
        fn valid_requests_round_trip(cmd in any::<u8>(), t in target(),
                                     tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let req = Request { command: Command::from_byte(cmd), target: t };
            let mut w = req.encode();
            let n = w.len();
            // Every strict prefix asks for more bytes.
            for i in 0..n {
                prop_assert_eq!(parse_request(&w[..i]), Ok(None));
            }
            w.extend_from_slice(&tail);
            prop_assert_eq!(parse_request(&w), Ok(Some((req, n))));
        }

        #[test]
        fn greetings_and_auth_round_trip(m in proptest::collection::vec(any::<u8>(), 1..256),
                                         u in proptest::collection::vec(any::<u8>(), 1..256),
                                         p in proptest::collection::vec(any::<u8>(), 0..256)) {
            let g = Greeting { methods: m };
            let w = g.encode();
            prop_assert_eq!(parse_greeting(&w), Ok(Some((g, w.len()))));
            let a = AuthRequest { user: u, pass: p };
            let w = a.encode();
            prop_assert_eq!(parse_auth(&w), Ok(Some((a, w.len()))));
        }

        #[test]
        fn replies_round_trip(rep in any::<u8>(), t in target()) {
            if let Target::Ip(a) = t {
                let w = build_reply(rep, Some(a));
                prop_assert_eq!(parse_reply(&w), Ok(Some(((rep, Target::Ip(a)), w.len()))));
            }
        }
    }
}
