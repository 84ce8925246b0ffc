//! A small HTTP/1.x server of one document, `GET /metrics` (the Prometheus text exposition),
//! hostile-proof: std's `TcpListener` on the caller's thread, one thread per connection and at
//! most [`MAX_CONNECTIONS`] of them (more are closed at once and counted in [`Stats`]), one
//! request per connection (`Connection: close`), a request head of at most [`MAX_REQUEST`]
//! bytes that must arrive within [`REQUEST_TIMEOUT`] (a silent or trickling client is dropped
//! then). `GET /metrics` is answered 200 with what the caller's closure renders (503 with its
//! error text); another path 404; another method on `/metrics` 405; a request line that is not
//! HTTP/1.x, or bytes that cannot be one, 400; a head over the bound 413. Every answer closes
//! the connection. No async runtime. [`check_addr`] is the rule of where it may listen
//! (loopback unless the operator allows more), shared by every daemon that serves it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
/// Bytes read and thrown away after answering before the close (so that a client still
/// sending is not reset before it reads the answer), at most.
const MAX_DRAIN: usize = 64 * 1024;
/// Sleep after a failed accept (out of descriptors): the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Whether `addr` may serve the metrics: a loopback address always, any other only when the
/// operator asked for it (`any`), since the endpoint has no authentication. The error names
/// the setting as `key` (`--metrics`, `metrics`) and how to allow it as `allow` (`--metrics-any`).
pub fn check_addr(addr: SocketAddr, any: bool, key: &str, allow: &str) -> Result<(), String> {
    if any || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "{key} {addr}: not a loopback address; the metrics have no authentication, so anyone \
         reaching {addr} would read them. Use 127.0.0.1:PORT (or [::1]:PORT), or add {allow} to \
         serve them there anyway"
    ))
}

/// Counters of the endpoint itself, for the body to export.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections closed at once because MAX_CONNECTIONS were being served.
    pub refused: AtomicU64,
}

/// Connections being served; only the accept loop adds to it.
#[derive(Debug, Default, Clone)]
struct Active(Arc<AtomicUsize>);

/// Counts one connection for as long as it lives.
struct Counted(Active);

impl Drop for Counted {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Active {
    fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::AcqRel);
        Counted(self.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `GET /metrics` on `listener` until it fails; never returns otherwise. `render` makes
/// the body of a 200 (given the endpoint's own counters), or an error text answered with 503.
pub fn serve<F>(listener: TcpListener, render: F)
where
    F: Fn(&Stats) -> Result<String, String> + Send + Sync + 'static,
{
    let render = Arc::new(render);
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
        let (r, st) = (render.clone(), stats.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let _counted = counted;
                // A failed write is the client's problem: nothing to do but close.
                let _ = connection(stream, &*r, &st);
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

fn connection(
    mut stream: TcpStream,
    render: &dyn Fn(&Stats) -> Result<String, String>,
    stats: &Stats,
) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let Some(head) = read_head(&mut stream) else {
        return Ok(());
    };
    let (status, body) = match head {
        Head::Metrics => match render(stats) {
            Ok(body) => (200, body),
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
    fn only_loopback_unless_allowed() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        for ok in ["127.0.0.1:9101", "127.3.4.5:0", "[::1]:9101"] {
            assert_eq!(
                check_addr(a(ok), false, "--metrics", "--metrics-any"),
                Ok(())
            );
        }
        for far in [
            "0.0.0.0:9101",
            "192.0.2.1:1",
            "[::]:9101",
            "[2001:db8::1]:1",
        ] {
            let e = check_addr(a(far), false, "metrics", "`metrics_any: true`").unwrap_err();
            assert!(
                e.starts_with(&format!("metrics {far}: not a loopback address"))
                    && e.contains("`metrics_any: true`"),
                "{e}"
            );
            assert_eq!(check_addr(a(far), true, "metrics", "metrics_any"), Ok(()));
        }
    }
}
