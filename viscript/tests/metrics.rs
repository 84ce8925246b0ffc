//! `viscript serve --metrics`: the exposition scraped over a plain TcpStream (and checked by
//! `promtool` when it is installed), and the endpoint's bounds: silent and trickling clients
//! dropped at the timeout while others are served, oversized requests, wrong paths and methods,
//! garbage, and the connection limit.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use viscript::metrics::{MAX_CONNECTIONS, MAX_REQUEST, REQUEST_TIMEOUT};

/// The address from the daemon's `viscript: metrics on http://ADDR/metrics` line.
fn metrics_addr(lines: &Receiver<String>) -> SocketAddr {
    let t = Instant::now();
    loop {
        let left = Duration::from_secs(10).saturating_sub(t.elapsed());
        let l = lines
            .recv_timeout(left)
            .expect("no `metrics on` line from the daemon");
        if let Some(rest) = l.strip_prefix("viscript: metrics on http://") {
            return rest.trim_end_matches("/metrics").parse().unwrap();
        }
    }
}

fn start(tag: &str) -> (Daemon, SocketAddr) {
    let (d, lines) = Daemon::start_logged(tag, &demo_config(""), &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&lines);
    (d, addr)
}

/// Sends `request`, reads until the server closes; (status, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
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
    assert!(head.contains("Connection: close"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "{head}");
    (status, body.to_string())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the series spelled exactly `series` (name and labels).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn promtool_check(body: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("note: promtool is not installed; `promtool check metrics` skipped");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
}

#[test]
fn scrape_shows_each_component_and_restarts_after_a_kill() {
    let (d, addr) = start("metrics-scrape");
    let v = d.ok(&["start", "-w", "demo"]);
    let pid = v["data"]["pid"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let body = scrape(addr);
    let l = r#"{app="demo",id="1"}"#;
    let state = |body: &str, s: &str| {
        value(
            body,
            &format!(r#"viscript_component_state{{app="demo",id="1",state="{s}"}}"#),
        )
    };
    assert_eq!(state(&body, "ready"), Some(1.0), "{body}");
    assert_eq!(state(&body, "backoff"), Some(0.0), "{body}");
    assert_eq!(
        value(&body, &format!("viscript_component_restarts_total{l}")),
        Some(0.0)
    );
    let cpu = value(&body, &format!("viscript_component_cpu_seconds_total{l}")).unwrap();
    assert!(cpu >= 0.0, "{body}");
    // The demo's own resident set, as `ru` (its self-report) roughly sees it.
    let rss = value(
        &body,
        &format!("viscript_component_resident_memory_bytes{l}"),
    )
    .unwrap();
    let ru = d.ok(&["ru", "1"])["data"]["rss_bytes"].as_f64().unwrap();
    assert!(
        rss > 0.0 && rss < 4.0 * ru && ru < 4.0 * rss,
        "{rss} vs ru {ru}"
    );
    let up = value(&body, &format!("viscript_component_uptime_seconds{l}")).unwrap();
    assert!((0.2..30.0).contains(&up), "{body}");
    promtool_check(&body);

    // A crash (SIGKILL from outside): restarted once, ready again, counted.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    d.wait_for(1, "the restart", Duration::from_secs(10), |c| {
        c["restarts"] == 1 && c["state"] == "ready"
    });
    let body = scrape(addr);
    assert_eq!(
        value(&body, &format!("viscript_component_restarts_total{l}")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(state(&body, "ready"), Some(1.0), "{body}");
    let up2 = value(&body, &format!("viscript_component_uptime_seconds{l}")).unwrap();
    assert!(up2 < up + 5.0, "uptime of the new process: {up2}");
    promtool_check(&body);

    // Stopped: the state says so and the process series are gone.
    d.ok(&["sd", "1"]);
    let body = scrape(addr);
    assert_eq!(state(&body, "exited"), Some(1.0), "{body}");
    assert_eq!(state(&body, "ready"), Some(0.0), "{body}");
    assert!(
        !body.contains("viscript_component_cpu_seconds_total{"),
        "{body}"
    );
    promtool_check(&body);
}

#[test]
fn silent_and_trickling_clients_are_dropped_while_others_are_served() {
    let (_d, addr) = start("metrics-slow");
    let t = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
    let mut trickle = TcpStream::connect(addr).unwrap();
    let trickler = std::thread::spawn(move || {
        // One byte of a valid request every 200 ms: never a whole head within the timeout.
        for b in b"GET /metrics HTTP/1.1\r\nHost: slow.example\r\n\r\n" {
            if trickle.write_all(&[*b]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    // Served meanwhile.
    std::thread::sleep(Duration::from_millis(200));
    let served = Instant::now();
    scrape(addr);
    assert!(served.elapsed() < Duration::from_secs(1));

    let mut b = [0u8; 16];
    let n = silent.read(&mut b);
    let dropped = t.elapsed();
    assert!(matches!(n, Ok(0)), "{n:?} after {dropped:?}");
    assert!(
        dropped >= REQUEST_TIMEOUT - Duration::from_millis(100)
            && dropped < REQUEST_TIMEOUT + Duration::from_secs(1),
        "silent client dropped after {dropped:?}"
    );
    assert!(
        trickler.join().unwrap(),
        "the trickling client was never dropped"
    );
}

#[test]
fn oversized_wrong_and_garbage_requests_are_refused_and_closed() {
    let (_d, addr) = start("metrics-bad");
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    big.resize(MAX_REQUEST + 1000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exchange(addr, &big).0, 413);
    // One line longer than the bound, no newline at all.
    assert_eq!(exchange(addr, &vec![b'G'; MAX_REQUEST * 2]).0, 413);
    assert_eq!(exchange(addr, b"GET / HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(exchange(addr, b"GET /metrics/x HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(
        exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
        )
        .0,
        405
    );
    assert_eq!(exchange(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00").0, 400);
    assert_eq!(exchange(addr, b"GET /metrics HTTP/9.9\r\n\r\n").0, 400);
    assert_eq!(exchange(addr, b"hello\n").0, 400);
    // Still serving.
    scrape(addr);
}

#[test]
fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let (_d, addr) = start("metrics-limit");
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
    let mut b = [0u8; 16];
    let n = extra.read(&mut b);
    assert!(matches!(n, Ok(0)), "{n:?}");
    assert!(
        t.elapsed() < REQUEST_TIMEOUT / 2,
        "closed after {:?}",
        t.elapsed()
    );
    // Once the held ones time out, scrapes are served again, and the refusal was counted.
    drop(held);
    std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(500));
    let body = scrape(addr);
    let refused = value(&body, "viscript_metrics_connections_refused_total").unwrap();
    assert!(refused >= 1.0, "{body}");
}

#[test]
fn a_non_loopback_address_needs_metrics_any() {
    let out = std::process::Command::new(viscript_bin())
        .args([
            "serve",
            "--config",
            "/nonexistent.yaml",
            "--metrics",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--metrics-any"),
        "{err}"
    );
}
