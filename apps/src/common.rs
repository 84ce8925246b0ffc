//! What both apps share: counters, the viscript lifecycle, the bounded accept loop and the
//! parsing of addresses and keys.

use controlplane::identity::{Identity, NodeId};
use signal::{Client, Session};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNS: u64 = 1024;
/// Stack of a connection thread (the handshake and one relay direction).
const CONN_STACK: usize = 256 * 1024;

/// The counters both apps report through `ru`.
#[derive(Clone)]
pub struct Stats {
    /// Connections accepted (served or not).
    pub connections_total: Arc<AtomicU64>,
    /// Connections being handled now.
    pub active: Arc<AtomicU64>,
    /// Connections turned away (ruleset, authentication, capacity).
    pub refused: Arc<AtomicU64>,
    /// Connections that failed (upstream unreachable, handshake errors).
    pub failed: Arc<AtomicU64>,
    /// Destinations the server's filter refused (CONNECT requests and UDP datagrams; the
    /// socks client never counts any).
    pub refused_dst: Arc<AtomicU64>,
    /// Bytes from the local client towards the remote side.
    pub bytes_up: Arc<AtomicU64>,
    /// Bytes from the remote side towards the local client.
    pub bytes_down: Arc<AtomicU64>,
}

impl Stats {
    /// Counters registered with the session, or private ones when running standalone.
    pub fn new(session: Option<&Session>) -> Stats {
        let c = |name: &str| counter(session, name);
        Stats {
            connections_total: c("connections_total"),
            active: c("active"),
            refused: c("refused"),
            failed: c("failed"),
            refused_dst: c("refused_dst"),
            bytes_up: c("bytes_up"),
            bytes_down: c("bytes_down"),
        }
    }
}

/// A counter reported through viscript's `ru`, or a private one when running standalone.
pub fn counter(session: Option<&Session>, name: &str) -> Arc<AtomicU64> {
    match session {
        Some(s) => s.counter(name),
        None => Arc::new(AtomicU64::new(0)),
    }
}

/// Registers with viscript when started by it. `Ok(None)` when standalone.
pub fn register(kind: &str) -> Result<Option<Session>, String> {
    match Client::from_env() {
        Ok(Some(c)) => c
            .register(kind, env!("CARGO_PKG_VERSION"))
            .map(Some)
            .map_err(|e| format!("cannot register with viscript: {e}")),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot connect to viscript: {e}")),
    }
}

/// Prints a line and flushes (viscript captures stdout through a pipe).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Accepts connections forever, each on its own thread running `handle`, at most `max` at a
/// time: over the cap a connection is closed at once and counted as refused.
pub fn accept_loop<F>(listener: TcpListener, max: u64, stats: Stats, handle: F)
where
    F: Fn(TcpStream, &Stats) + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        stats.connections_total.fetch_add(1, Ordering::Relaxed);
        if stats.active.load(Ordering::Relaxed) >= max {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        let st = stats.clone();
        let h = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                h(stream, &st);
                st.active.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
            stats.active.fetch_sub(1, Ordering::Relaxed);
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `accept_loop` on a thread, then waits: for viscript's shutdown (acknowledged; returns
/// exit status 0), for the loss of viscript (status 1), or forever when standalone.
pub fn run<F>(
    session: Option<Session>,
    listener: TcpListener,
    max: u64,
    stats: Stats,
    handle: F,
) -> i32
where
    F: Fn(TcpStream, &Stats) + Send + Sync + 'static,
{
    let Some(session) = session else {
        accept_loop(listener, max, stats, handle);
        return 0;
    };
    let spawned = std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(listener, max, stats, handle));
    if let Err(e) = spawned {
        tracing::error!("cannot start the accept thread: {e}");
        return 1;
    }
    loop {
        if session
            .wait_shutdown(Some(Duration::from_millis(500)))
            .is_some()
        {
            session.ack_shutdown();
            say("shutting down");
            return 0;
        }
        if session.lost() {
            tracing::warn!("lost viscript; exiting");
            return 1;
        }
    }
}

/// `ADDR:PORT`, or a bare `ADDR` that takes `port`.
pub fn parse_listen(s: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("{s:?} is neither ADDR:PORT nor an IP address"))
}

/// The overlay address of the public key (64 hex digits).
pub fn overlay_of_pk(hex: &str) -> Result<std::net::Ipv6Addr, String> {
    NodeId::from_hex(hex).map(|id| id.overlay_addr())
}

/// This node's overlay address, from skywire-control's key file. Never creates the file.
pub fn own_overlay(key: &Path) -> Result<std::net::Ipv6Addr, String> {
    if !key.exists() {
        return Err(format!(
            "{}: no key file (create it with `skywire-control --key {} keygen`, or give --listen)",
            key.display(),
            key.display()
        ));
    }
    let (ident, _) = Identity::load_or_create(key).map_err(|e| e.to_string())?;
    Ok(ident.id().overlay_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:5", 9),
            Ok("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(parse_listen("::1", 9), Ok("[::1]:9".parse().unwrap()));
        assert_eq!(parse_listen("[::1]", 9), Ok("[::1]:9".parse().unwrap()));
        assert!(parse_listen("nope", 9).is_err());
    }

    #[test]
    fn overlay_from_key() {
        let a = overlay_of_pk(&"ab".repeat(32)).unwrap();
        assert_eq!(a.octets()[..4], controlplane::identity::OVERLAY_PREFIX);
        assert!(overlay_of_pk("zz").is_err());
    }
}
