//! The app socket: how apps on this router ask the controlplane for routes.
//!
//! A unix stream socket (0600, only root and the controlplane's own user get in), one request
//! per line, one reply line each: `ok ...` or `err <why>`.
//!
//! ```text
//! whoami                      -> ok <pk> <overlay address>
//! attach <pk> <prefix>...     -> ok         prefixes behind node <pk>: packets for them are routed
//!                                           to <pk>, and packets from <pk> may carry sources in
//!                                           them; held until `detach` or the connection closes
//! detach <pk>                 -> ok
//! route <pk>                  -> ok up | ok pending
//! underlay                    -> ok <ip>... the addresses this router's links and messengers use
//! find <kind>                 -> ok <pk> <port>  a node offering the service (messenger query)
//! service <kind> <port>       -> ok         publish a service in this node's messenger record
//!                                           (held like attachments; `ok unpublished` without
//!                                           a messenger)
//! ```
//!
//! Attachments live exactly as long as the connection that made them: an app that exits or
//! crashes takes its routes with it.
//!
//! Scope: an attachment may not overlap the overlay network nor any other attachment (of
//! another connection, or of this connection to another node), so no app can shadow another's
//! routes (a 0.0.0.0/1 beside a VPN's 0.0.0.0/0); a connection's `attach` to a node replaces
//! its own earlier one to that node. A connection publishes at most
//! [`MAX_SERVICES_PER_CONN`] services (the node's record holds
//! [`MAX_SERVICES`](crate::messenger::record::MAX_SERVICES) in all), each on a port 1-65535.

use crate::accept::{self, Gate, Limits, ListenerStats, Permit};
use crate::identity::{NodeId, OVERLAY_PREFIX};
use netbase::Prefix;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

/// Longest request line.
const MAX_LINE: u64 = 4096;
/// Most prefixes in one `attach`.
pub const MAX_PREFIXES: usize = 64;
/// Most services one app connection publishes (an app publishes one; all are carried in this
/// node's messenger record, which holds `messenger::record::MAX_SERVICES`).
pub const MAX_SERVICES_PER_CONN: usize = 8;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// This node's key and overlay address.
    WhoAmI,
    /// Prefixes behind a node.
    Attach {
        /// The node.
        node: NodeId,
        /// Its prefixes.
        prefixes: Vec<Prefix>,
    },
    /// Drop this connection's attachment to a node.
    Detach {
        /// The node.
        node: NodeId,
    },
    /// Is a route to the node up?
    Route {
        /// The node.
        node: NodeId,
    },
    /// Underlay addresses in use.
    Underlay,
    /// Find a node offering a service (through the messengers).
    Find {
        /// Its kind.
        kind: String,
    },
    /// Publish a service with the messengers.
    Service {
        /// Its kind (e.g. `socks`, `vpn`).
        kind: String,
        /// Its port.
        port: u16,
    },
}

fn overlay_net() -> Prefix {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&OVERLAY_PREFIX);
    // A /32 of an IPv6 address is always a valid prefix.
    Prefix::new(IpAddr::V6(a.into()), 32).expect("/32 fits an IPv6 address")
}

fn service_kind(w: Option<&str>) -> Result<String, String> {
    let kind = w.ok_or("missing service kind")?;
    if kind.len() > 32
        || !kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("service kind {kind:?}: 1-32 of [A-Za-z0-9_-]"));
    }
    Ok(kind.to_string())
}

/// Parses one request line.
pub fn parse(line: &str) -> Result<Request, String> {
    let mut w = line.split_ascii_whitespace();
    let verb = w.next().ok_or("empty request")?;
    let node = |w: &mut std::str::SplitAsciiWhitespace<'_>| -> Result<NodeId, String> {
        let pk = w.next().ok_or("missing public key")?;
        NodeId::from_hex(pk)
    };
    let r = match verb {
        "whoami" => Request::WhoAmI,
        "underlay" => Request::Underlay,
        "route" => Request::Route {
            node: node(&mut w)?,
        },
        "detach" => Request::Detach {
            node: node(&mut w)?,
        },
        "find" => Request::Find {
            kind: service_kind(w.next())?,
        },
        "service" => {
            let kind = service_kind(w.next())?;
            let port = w
                .next()
                .ok_or("missing service port")?
                .parse::<u16>()
                .map_err(|_| "service port must be 0-65535".to_string())?;
            Request::Service { kind, port }
        }
        "attach" => {
            let node = node(&mut w)?;
            let mut prefixes = Vec::new();
            for p in w.by_ref() {
                let p: Prefix = p.parse()?;
                if p.overlaps(&overlay_net()) {
                    return Err(format!(
                        "{p} overlaps the overlay network {}",
                        overlay_net()
                    ));
                }
                if prefixes.len() == MAX_PREFIXES {
                    return Err(format!("more than {MAX_PREFIXES} prefixes"));
                }
                if !prefixes.contains(&p) {
                    prefixes.push(p);
                }
            }
            if prefixes.is_empty() {
                return Err("attach needs at least one prefix".into());
            }
            return Ok(Request::Attach { node, prefixes });
        }
        other => return Err(format!("unknown request {other:?}")),
    };
    match w.next() {
        Some(extra) => Err(format!("unexpected {extra:?} after {verb}")),
        None => Ok(r),
    }
}

/// What the socket threads hand the driver.
pub enum Event {
    /// A request from connection `conn`; the reply line goes to `reply`.
    Request {
        /// Connection id.
        conn: u64,
        /// The request.
        req: Request,
        /// Where the reply goes.
        reply: Sender<String>,
    },
    /// Connection `conn` closed: drop its attachments.
    Closed {
        /// Connection id.
        conn: u64,
    },
}

/// Binds the socket at `path` (0600; a stale socket replaced; one a live controlplane serves
/// is refused).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    netbase::private_socket::bind(path, "controlplane")
}

/// Most app connections at once. Each app (VPN, SOCKS, ...) holds one connection for as long
/// as it runs, and each costs a thread and a descriptor; only root and our own user get in,
/// so this bounds a runaway or buggy app rather than a stranger.
pub const MAX_APP_CONNS: usize = 64;

/// The app socket's bounds. Authentication is the peer-credentials check, one system call right
/// after accept, so every connection counts as handshaking only for that moment and the
/// handshake deadline is unused; unix sockets have no source address to cap.
pub const APP_LIMITS: Limits = Limits {
    max_handshaking: MAX_APP_CONNS,
    max_handshaking_per_ip: MAX_APP_CONNS,
    max_conns: MAX_APP_CONNS,
    max_conns_per_ip: MAX_APP_CONNS,
    handshake_deadline: Duration::from_secs(5),
    accept_backoff: accept::ACCEPT_BACKOFF,
};

/// Accepts connections forever, one thread each, within [`APP_LIMITS`]; requests go to
/// `events`, `wake` is rung after each so the driver's loop wakes. Counters: [`serve_with`].
pub fn serve(listener: UnixListener, events: Sender<Event>, wake: Arc<OwnedFd>) {
    serve_with(listener, events, wake, APP_LIMITS, Arc::default());
}

/// [`serve`] within `limits`, counting refusals and failures in `stats`: over
/// [`Limits::max_conns`] a connection is closed at once; accept errors (`EMFILE`, ...) and a
/// thread that cannot be made back off and go on.
pub fn serve_with(
    listener: UnixListener,
    events: Sender<Event>,
    wake: Arc<OwnedFd>,
    limits: Limits,
    stats: Arc<ListenerStats>,
) {
    let ids = AtomicU64::new(1);
    let gate = Gate::new(limits, stats);
    let never = AtomicBool::new(false);
    let conn = move |stream: UnixStream, permit: Permit| {
        let conn = ids.fetch_add(1, Ordering::Relaxed);
        let _ = connection(stream, conn, permit, &events, &wake);
        let _ = events.send(Event::Closed { conn });
        ring(&wake);
    };
    accept::run(&listener, &gate, &never, conn, |job| {
        accept::spawn_thread("app", job)
    });
}

fn ring(wake: &OwnedFd) {
    let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
}

fn connection(
    stream: UnixStream,
    conn: u64,
    mut permit: Permit,
    events: &Sender<Event>,
    wake: &OwnedFd,
) -> io::Result<()> {
    let mut out = &stream;
    let cred = rustix::net::sockopt::socket_peercred(&stream)?;
    if cred.uid != rustix::process::geteuid() && !cred.uid.is_root() {
        ListenerStats::count(&permit.stats().handshake_failed);
        out.write_all(b"err permission denied: not the controlplane's user or root\n")?;
        return Ok(());
    }
    permit.authenticated();
    let mut reader = BufReader::new(&stream);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            out.write_all(format!("err request longer than {MAX_LINE} bytes\n").as_bytes())?;
            return Ok(());
        }
        let reply = match std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_string())
        {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match parse(text) {
                Ok(req) => {
                    let (tx, rx) = channel();
                    if events
                        .send(Event::Request {
                            conn,
                            req,
                            reply: tx,
                        })
                        .is_err()
                    {
                        return Ok(());
                    }
                    ring(wake);
                    rx.recv_timeout(Duration::from_secs(5))
                        .unwrap_or_else(|_| "err controlplane busy".into())
                }
                Err(e) => format!("err {e}"),
            },
            Err(e) => format!("err {e}"),
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\n")?;
    }
}

/// A client of the app socket (what apps use).
pub struct AppClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AppClient {
    /// Connects to the controlplane's app socket.
    pub fn connect(path: &Path) -> Result<AppClient, String> {
        let s = UnixStream::connect(path).map_err(|e| {
            format!(
                "controlplane app socket {}: {e} (is skywire-control running?)",
                path.display()
            )
        })?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let writer = s.try_clone().map_err(|e| format!("app socket: {e}"))?;
        Ok(AppClient {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends one request; returns the text after `ok`, or the error after `err`.
    pub fn call(&mut self, line: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("app socket: {e}"))?;
        let mut reply = String::new();
        (&mut self.reader)
            .take(MAX_LINE)
            .read_line(&mut reply)
            .map_err(|e| format!("app socket: {e}"))?;
        let reply = reply.trim_end();
        if reply.is_empty() {
            return Err("app socket: controlplane closed the connection".into());
        }
        match reply.split_once(' ').unwrap_or((reply, "")) {
            ("ok", rest) => Ok(rest.to_string()),
            ("err", why) => Err(why.to_string()),
            _ => Err(format!("app socket: unexpected reply {reply:?}")),
        }
    }

    /// Whether the controlplane is still there (the connection is open). Non-blocking.
    pub fn alive(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut fds = [PollFd::new(&self.writer, PollFlags::IN)];
        match poll(&mut fds, Some(&rustix::time::Timespec::default())) {
            Ok(0) => true,
            Ok(_) => {
                // Readable with nothing asked: EOF (or a stray line, which is a protocol error).
                let mut b = [0u8; 1];
                matches!(rustix::net::recv(&self.writer, &mut b, rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT), Ok((n, _)) if n > 0)
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests() {
        let pk = "ab".repeat(32);
        let node = NodeId::from_hex(&pk).unwrap();
        assert_eq!(parse("whoami\n"), Ok(Request::WhoAmI));
        assert_eq!(
            parse(&format!("attach {pk} 0.0.0.0/1 128.0.0.0/1 0.0.0.0/1")),
            Ok(Request::Attach {
                node,
                prefixes: vec!["0.0.0.0/1".parse().unwrap(), "128.0.0.0/1".parse().unwrap()]
            })
        );
        assert_eq!(parse(&format!("route {pk}")), Ok(Request::Route { node }));
        assert_eq!(
            parse("service socks 8001"),
            Ok(Request::Service {
                kind: "socks".into(),
                port: 8001
            })
        );
        for (bad, why) in [
            ("", "empty"),
            ("frobnicate", "unknown request"),
            ("route", "missing public key"),
            ("route 12", "hex"),
            (&format!("attach {pk}") as &str, "at least one prefix"),
            (&format!("attach {pk} 10.0.0.0/33"), "longer than"),
            (&format!("attach {pk} fd73:6b79::/48"), "overlay"),
            (&format!("attach {pk} ::/0"), "overlay"),
            (&format!("route {pk} extra"), "unexpected"),
            ("service", "missing service kind"),
            ("find", "missing service kind"),
            ("find a b", "unexpected"),
            ("service so/cks 1", "service kind"),
            ("service socks 70000", "port"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn over_the_connection_cap_is_closed_at_once_and_counted() {
        let dir = std::env::temp_dir().join(format!("skywire-appsock-{}", std::process::id()));
        let path = dir.join("app.sock");
        let l = bind(&path).unwrap();
        let (tx, rx) = channel();
        let stats = Arc::new(ListenerStats::default());
        let limits = Limits {
            max_conns: 2,
            accept_backoff: Duration::from_millis(10),
            ..APP_LIMITS
        };
        let st = stats.clone();
        let wake = crate::links::wake_fd().unwrap();
        std::thread::spawn(move || serve_with(l, tx, wake, limits, st));
        let call = |c: &mut AppClient| {
            let t = std::thread::scope(|sc| {
                let h = sc.spawn(|| c.call("whoami"));
                match rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(Event::Request { reply, .. }) => reply.send("ok me".into()).unwrap(),
                    _ => panic!("no request"),
                }
                h.join().unwrap()
            });
            assert_eq!(t, Ok("me".into()));
        };
        let mut a = AppClient::connect(&path).unwrap();
        let mut b = AppClient::connect(&path).unwrap();
        call(&mut a);
        call(&mut b);
        // The third is closed without a reply, and counted.
        let mut c = AppClient::connect(&path).unwrap();
        let e = c.call("whoami").unwrap_err();
        assert!(
            ["closed", "Broken pipe", "reset"]
                .iter()
                .any(|w| e.contains(w)),
            "{e}"
        );
        assert_eq!(stats.snapshot().refused_total, 1);
        // With one gone, a new app gets in.
        drop(a);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Event::Closed { .. })
        ));
        let mut d = AppClient::connect(&path).unwrap();
        call(&mut d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn any_line_parses_or_errs(line in ".{0,300}") {
            let _ = parse(&line);
        }

        #[test]
        fn attach_roundtrip(ps in proptest::collection::vec((any::<u32>(), 0u8..=32), 1..10)) {
            let pk = "cd".repeat(32);
            let text: Vec<String> = ps.iter().map(|(a, l)| format!("{}/{l}", std::net::Ipv4Addr::from(*a))).collect();
            let r = parse(&format!("attach {pk} {}", text.join(" "))).unwrap();
            let Request::Attach { prefixes, .. } = r else { panic!("{r:?}") };
            for (a, l) in ps {
                let p = Prefix::new(IpAddr::V4(a.into()), l).unwrap();
                prop_assert!(prefixes.contains(&p));
            }
        }
    }
}
