//! `metrics_http::serve` on a real listener (127.0.0.1:0): the answers to good, wrong and
//! garbage requests, a silent client dropped at the head timeout while another is served, and
//! connections over the limit closed at once and counted.

#![forbid(unsafe_code)]

use netbase::metrics_http::{self, MAX_CONNECTIONS, REQUEST_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A server whose body is `up 1` and the refusals it counted; `fail`: its render errs instead.
fn start(fail: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        metrics_http::serve(l, move |stats| {
            if fail {
                return Err("no snapshot yet".into());
            }
            Ok(format!(
                "up 1\nrefused {}\n",
                stats.refused.load(Ordering::Relaxed)
            ))
        })
    });
    addr
}

/// Sends `request`, reads until the server closes; (status, head, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "{head}");
    (status, head.to_string(), body.to_string())
}

const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn get_metrics_is_the_body_other_requests_get_their_status() {
    let addr = start(false);
    let (status, head, body) = exchange(addr, GET);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(body, "up 1\nrefused 0\n");
    // A query string is the same document; HTTP/1.0 too.
    assert_eq!(exchange(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").0, 200);
    let (status, _, body) = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (404, "Not Found\n"));
    let (status, head, _) = exchange(addr, b"PUT /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    for garbage in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00"[..],
        b"hello\n",
        b"GET /metrics HTTP/3\r\n\r\n",
    ] {
        assert_eq!(exchange(addr, garbage).0, 400, "{garbage:?}");
    }
    assert_eq!(exchange(addr, &vec![b'a'; 20_000]).0, 413);
    // Still serving after all that.
    assert_eq!(exchange(addr, GET).0, 200);
}

#[test]
fn a_render_error_is_a_503_with_its_text() {
    let addr = start(true);
    let (status, _, body) = exchange(addr, GET);
    assert_eq!((status, body.as_str()), (503, "no snapshot yet\n"));
}

#[test]
fn a_silent_client_is_dropped_at_the_timeout_while_another_is_served() {
    let addr = start(false);
    let t = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let served = Instant::now();
    assert_eq!(exchange(addr, GET).0, 200);
    assert!(
        served.elapsed() < Duration::from_secs(1),
        "{:?}",
        served.elapsed()
    );
    let mut b = [0u8; 16];
    let n = silent.read(&mut b);
    let dropped = t.elapsed();
    assert!(matches!(n, Ok(0)), "{n:?} after {dropped:?}");
    assert!(
        dropped >= REQUEST_TIMEOUT - Duration::from_millis(100)
            && dropped < REQUEST_TIMEOUT + Duration::from_secs(1),
        "silent client dropped after {dropped:?}"
    );
}

#[test]
fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let addr = start(false);
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Let the accept loop take them all.
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..2 {
        let t = Instant::now();
        let mut extra = TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
        // A request is sent, and still nothing comes back but the close.
        let _ = extra.write_all(GET);
        let mut b = [0u8; 16];
        let n = extra.read(&mut b);
        assert!(
            matches!(n, Ok(0)) || n.is_err(),
            "over the limit, answered: {n:?}"
        );
        assert!(
            t.elapsed() < REQUEST_TIMEOUT / 2,
            "closed after {:?}",
            t.elapsed()
        );
    }
    // Once the held ones are gone (closed by us; the server sees their EOF at once), scrapes are
    // served again and both refusals were counted.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = exchange(addr, GET);
    assert_eq!((status, body.as_str()), (200, "up 1\nrefused 2\n"));
}
