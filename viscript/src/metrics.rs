//! `viscript serve --metrics IP:PORT`: the components in the Prometheus text exposition format
//! (version 0.0.4) at `GET /metrics`.
//!
//! The HTTP side is deliberately small: std's `TcpListener` on its own thread, one thread per
//! connection and at most [`MAX_CONNECTIONS`] of them (more are closed at once and counted),
//! one request per connection (`Connection: close`), a request head of at most [`MAX_REQUEST`]
//! bytes that must arrive within [`REQUEST_TIMEOUT`] (a silent or trickling client is dropped
//! then). `GET /metrics` is answered 200; another path 404; another method on `/metrics` 405;
//! a request line that is not HTTP/1.x, or bytes that cannot be one, 400; a head over the
//! bound 413. Every answer closes the connection.
//!
//! The numbers come from the supervisor's `list` (asked with [`Handle::call_within`], so a busy
//! supervisor makes a scrape fail, never the other way round) and from `/proc/PID/stat` of each
//! component's main process (CPU time and resident set: two numbers, so no `procfs` crate).

use crate::command::Command;
use crate::control::Active;
use crate::lifecycle::State;
use crate::reply::Component;
use crate::supervisor::Handle;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) read. A scraper sends a few hundred bytes;
/// anything longer is not one and gets 413.
pub const MAX_REQUEST: usize = 8 * 1024;
/// The whole request head must arrive within this, counted from accept: a client that sends
/// nothing, or a byte at a time, holds a connection slot no longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Writing the answer (a few KiB) to a client that does not read is given up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; one scraper needs one, a few leave room for a curl by hand.
/// Each costs a thread for at most REQUEST_TIMEOUT + WRITE_TIMEOUT + the snapshot's bound.
pub const MAX_CONNECTIONS: usize = 4;
/// How long a scrape waits for the supervisor's `list`.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read and thrown away after answering before the close (so that a client still
/// sending is not reset before it reads the answer), at most.
const MAX_DRAIN: usize = 64 * 1024;
/// Sleep after a failed accept (out of descriptors): the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Counters of the endpoint itself, exported with the components.
#[derive(Debug, Default)]
struct Stats {
    /// Connections closed at once because MAX_CONNECTIONS were being served.
    refused: AtomicU64,
}

/// Serves `GET /metrics` on `listener` until it fails; never returns otherwise.
pub fn serve(listener: TcpListener, handle: Handle) {
    let active = Active::default();
    let stats = Arc::new(Stats::default());
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        // Only this thread adds connections, so the count cannot pass the bound between the
        // check and `enter`.
        if active.count() >= MAX_CONNECTIONS {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let counted = active.enter();
        let (h, st) = (handle.clone(), stats.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let _counted = counted;
                // A failed write is the client's problem: nothing to do but close.
                let _ = connection(stream, &h, &st);
            });
        if spawned.is_err() {
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a request asks for, or the status it gets instead.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head is not complete yet (and nothing seen so far is wrong).
    Partial,
    /// `GET /metrics`.
    Metrics,
    /// An error status to answer with.
    Status(u16),
}

/// Judges the bytes read so far. An error is known as soon as the request line is complete
/// (or a byte that cannot be in one arrives); `GET /metrics` waits for the end of the headers.
fn judge(buf: &[u8]) -> Head {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf
            .iter()
            .any(|&b| !(b == b'\r' || (0x20..0x7f).contains(&b)))
        {
            return Head::Status(400);
        }
        return if buf.len() >= MAX_REQUEST {
            Head::Status(413)
        } else {
            Head::Partial
        };
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Head::Status(400);
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Head::Status(400);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method)
        || !target.starts_with('/')
        || !target.bytes().all(|b| (0x21..0x7f).contains(&b))
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Head::Status(400);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (method, path) {
        ("GET", "/metrics") => {}
        // Answered at once; what else the client sends is drained after the answer.
        (_, "/metrics") => return Head::Status(405),
        _ => return Head::Status(404),
    }
    if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
        Head::Metrics
    } else if buf.len() >= MAX_REQUEST {
        Head::Status(413)
    } else {
        Head::Partial
    }
}

/// Reads the head within the deadline. `None`: the client was silent, slow or went away.
fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        // A zero timeout would mean "block for ever".
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let room = MAX_REQUEST - buf.len();
        let want = room.min(chunk.len());
        let n = match stream.read(&mut chunk[..want]) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        buf.extend_from_slice(&chunk[..n]);
        match judge(&buf) {
            Head::Partial => {}
            h => return Some(h),
        }
    }
}

fn connection(mut stream: TcpStream, h: &Handle, stats: &Stats) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let Some(head) = read_head(&mut stream) else {
        return Ok(());
    };
    let (status, body) = match head {
        Head::Metrics => match snapshot(h) {
            Ok(components) => (200, render(&components, stats, read_usage)),
            Err(e) => (503, format!("{e}\n")),
        },
        Head::Status(s) => (s, format!("{}\n", reason(s))),
        Head::Partial => (400, "Bad Request\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        if status == 200 {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    stream.write_all(out.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    drain(&mut stream);
    Ok(())
}

/// Reads what the client still sends, a bounded amount for a short time, before closing: a
/// close with unread bytes resets the connection, and the client may lose the answer.
fn drain(stream: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut total = 0;
    let mut b = [0u8; 4096];
    while total < MAX_DRAIN {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return;
        }
        match stream.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn snapshot(h: &Handle) -> Result<Vec<Component>, String> {
    let r = h.call_within(Command::List, SNAPSHOT_TIMEOUT);
    if !r.ok {
        return Err(r.text);
    }
    serde_json::from_value(r.data).map_err(|e| format!("bad list from the supervisor: {e}"))
}

/// A process's CPU time (user + system) and resident set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` (utime, stime and rss; the ABI's clock ticks and pages).
fn read_usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(
        &stat,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size(),
    )
}

/// [`read_usage`]'s parser: the fields after the parenthesised command name (which may hold
/// spaces and parentheses) are `state ppid ... utime(14) stime(15) ... rss(24)`.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: usize) -> Option<Usage> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state).
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)?.checked_add(field(15)?)?;
    let rss = field(24)?.checked_mul(page_size as u64)?;
    if ticks_per_second == 0 {
        return None;
    }
    Some(Usage {
        cpu_seconds: ticks as f64 / ticks_per_second as f64,
        rss_bytes: rss,
    })
}

/// Every state a component can be in, for one `viscript_component_state` series each.
const STATES: [State; 8] = [
    State::Waiting,
    State::Starting,
    State::Ready,
    State::Stopping,
    State::Backoff,
    State::Degraded,
    State::Exited,
    State::Failed,
];

/// A label value, escaped as the exposition format wants (app names are `[A-Za-z0-9._-]`
/// already; this keeps the output valid whatever they become).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for `components`, with `usage` reading a running component's process.
fn render(components: &[Component], stats: &Stats, usage: impl Fn(u32) -> Option<Usage>) -> String {
    let mut o = String::new();
    let usages: Vec<Option<Usage>> = components.iter().map(|c| c.pid.and_then(&usage)).collect();
    let labels = |c: &Component| format!("app=\"{}\",id=\"{}\"", label(&c.app), c.id);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "viscript_component_state",
        "gauge",
        "1 for the state the component is in, 0 for the others.",
    );
    for c in components {
        for s in STATES {
            let on = u8::from(c.state == s.name());
            let _ = writeln!(
                o,
                "viscript_component_state{{{},state=\"{}\"}} {on}",
                labels(c),
                s.name()
            );
        }
    }
    family(
        &mut o,
        "viscript_component_restarts_total",
        "counter",
        "Restarts of the component since viscript created it.",
    );
    for c in components {
        let _ = writeln!(
            o,
            "viscript_component_restarts_total{{{}}} {}",
            labels(c),
            c.restarts
        );
    }
    family(
        &mut o,
        "viscript_component_cpu_seconds_total",
        "counter",
        "User and system CPU time of the component's current process (while it runs).",
    );
    for (c, u) in components.iter().zip(&usages) {
        if let Some(u) = u {
            let _ = writeln!(
                o,
                "viscript_component_cpu_seconds_total{{{}}} {}",
                labels(c),
                u.cpu_seconds
            );
        }
    }
    family(
        &mut o,
        "viscript_component_resident_memory_bytes",
        "gauge",
        "Resident set of the component's current process (while it runs).",
    );
    for (c, u) in components.iter().zip(&usages) {
        if let Some(u) = u {
            let _ = writeln!(
                o,
                "viscript_component_resident_memory_bytes{{{}}} {}",
                labels(c),
                u.rss_bytes
            );
        }
    }
    family(
        &mut o,
        "viscript_component_uptime_seconds",
        "gauge",
        "Time since the component's current process started (while it runs).",
    );
    for c in components {
        if let Some(ms) = c.uptime_ms {
            let _ = writeln!(
                o,
                "viscript_component_uptime_seconds{{{}}} {}",
                labels(c),
                ms as f64 / 1000.0
            );
        }
    }
    family(
        &mut o,
        "viscript_metrics_connections_refused_total",
        "counter",
        "Connections to this endpoint closed unanswered: too many at once.",
    );
    let _ = writeln!(
        o,
        "viscript_metrics_connections_refused_total {}",
        stats.refused.load(Ordering::Relaxed)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Metrics
        );
        assert_eq!(judge(b"GET /metrics?x=1 HTTP/1.0\n\n"), Head::Metrics);
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Head::Partial
        );
        assert_eq!(judge(b"GET /metr"), Head::Partial);
        assert_eq!(judge(b""), Head::Partial);
        assert_eq!(judge(b"GET / HTTP/1.1\r\n\r\n"), Head::Status(404));
        assert_eq!(judge(b"GET /x HTTP/1.1\r\n"), Head::Status(404));
        assert_eq!(judge(b"GET /metricsx HTTP/1.1\r\n\r\n"), Head::Status(404));
        assert_eq!(judge(b"POST /metrics HTTP/1.1\r\n\r\n"), Head::Status(405));
        assert_eq!(judge(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Head::Status(405));
        for bad in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"G\xc3\xa9T /metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(judge(bad), Head::Status(400), "{bad:?}");
        }
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST, b'a');
        assert_eq!(judge(&big), Head::Status(413));
        assert_eq!(judge(&big[..MAX_REQUEST - 1]), Head::Partial);
        assert_eq!(judge(&vec![b'G'; MAX_REQUEST]), Head::Status(413));
    }

    #[test]
    fn stat_fields() {
        // A command name with spaces and a parenthesis; utime 250, stime 50, rss 100 pages.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1000 4096000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0";
        assert_eq!(
            parse_stat(stat, 100, 4096),
            Some(Usage {
                cpu_seconds: 3.0,
                rss_bytes: 409_600
            })
        );
        assert_eq!(parse_stat("42 (x) S 1 2", 100, 4096), None);
        assert_eq!(parse_stat("garbage", 100, 4096), None);
        assert_eq!(parse_stat(stat, 0, 4096), None);
        let own = read_usage(std::process::id()).unwrap();
        assert!(own.rss_bytes > 0);
    }

    #[test]
    fn exposition() {
        let c = |id, app: &str, state: &str, pid, restarts, uptime_ms| Component {
            id,
            app: app.into(),
            state: state.into(),
            pid,
            restarts,
            uptime_ms,
            ..Component::default()
        };
        let comps = [
            c(1, "demo", "ready", Some(7), 2, Some(1500)),
            c(2, "a\"b", "exited", None, 0, None),
        ];
        let stats = Stats::default();
        stats.refused.store(3, Ordering::Relaxed);
        let text = render(&comps, &stats, |pid| {
            (pid == 7).then_some(Usage {
                cpu_seconds: 0.25,
                rss_bytes: 8192,
            })
        });
        for want in [
            "# TYPE viscript_component_state gauge",
            "viscript_component_state{app=\"demo\",id=\"1\",state=\"ready\"} 1",
            "viscript_component_state{app=\"demo\",id=\"1\",state=\"backoff\"} 0",
            "viscript_component_state{app=\"a\\\"b\",id=\"2\",state=\"exited\"} 1",
            "# TYPE viscript_component_restarts_total counter",
            "viscript_component_restarts_total{app=\"demo\",id=\"1\"} 2",
            "viscript_component_cpu_seconds_total{app=\"demo\",id=\"1\"} 0.25",
            "viscript_component_resident_memory_bytes{app=\"demo\",id=\"1\"} 8192",
            "viscript_component_uptime_seconds{app=\"demo\",id=\"1\"} 1.5",
            "viscript_metrics_connections_refused_total 3",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} not in\n{text}");
        }
        // A component without a process has no usage series.
        assert!(!text.contains("cpu_seconds_total{app=\"a"));
        assert!(!text.contains("uptime_seconds{app=\"a"));
        assert_eq!(text.matches("state=\"").count(), 16);
    }
}
