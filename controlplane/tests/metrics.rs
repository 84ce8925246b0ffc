//! skywire-control's `metrics:` endpoint, scraped over TCP from inside the router's namespace
//! (and checked by `promtool check metrics` when it is installed): a line of three routers, a
//! route from a to c carrying pings, and the series that show it; a silent client does not
//! stop the endpoint or the router; a non-loopback address without `metrics_any` is refused.

#![forbid(unsafe_code)]

use netbase::metrics_http::{MAX_CONNECTIONS, REQUEST_TIMEOUT};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use testbed::*;

/// Connects to `addr` from inside the namespace `ns` (a thread enters it; the socket stays in
/// it).
pub fn connect_in(ns: &str, addr: &str) -> TcpStream {
    let path = format!("/run/netns/{ns}");
    let a = addr.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        TcpStream::connect(&a)
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("connect {addr} in {ns}: {e}"))
}

/// `GET /metrics` at `addr` in `ns`; (status, body).
pub fn scrape(ns: &str, addr: &str) -> (u16, String) {
    let mut s = connect_in(ns, addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
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
    (status, body.to_string())
}

const METRICS: &str = "127.0.0.1:9101";

#[test]
fn a_routers_links_routes_and_drops_are_scraped() {
    for c in ["ip", "ping"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    start_line3(
        &mut ns,
        &dir,
        &keys,
        [&format!("metrics: \"{METRICS}\"\n"), "", ""],
    );
    let a = ns[0].name.clone();
    let (b_pk, c_addr) = (&keys[1].0, &keys[2].1);
    ping_until(&ns[0], c_addr, Duration::from_secs(20));
    ping(&ns[0], c_addr);

    // The dataplane's counters reach the snapshot within a second or two.
    let route = format!("skywire_control_route_packets_total{{prefix=\"{c_addr}/128\"}}");
    let mut body = String::new();
    wait_until(
        "the route's packets in a scrape",
        Duration::from_secs(10),
        || {
            let (status, b) = scrape(&a, METRICS);
            body = b;
            status == 200 && value(&body, &route).is_some_and(|v| v >= 3.0)
        },
    );
    let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
    assert_eq!(
        v(&format!("skywire_control_link_up{{peer=\"{b_pk}\"}}")),
        1.0
    );
    let rtt = v(&format!(
        "skywire_control_link_rtt_seconds{{peer=\"{b_pk}\"}}"
    ));
    assert!(rtt > 0.0 && rtt < 1.0, "rtt {rtt}");
    let tx = v(&format!(
        "skywire_control_link_bytes_total{{peer=\"{b_pk}\",direction=\"tx\"}}"
    ));
    assert!(tx > 0.0, "{body}");
    assert_eq!(v("skywire_control_links"), 1.0);
    assert!(v("skywire_control_links_up_total") >= 1.0);
    assert!(v("skywire_control_setups_started_total") >= 1.0);
    assert!(v("skywire_control_routes{role=\"primary\",state=\"up\"}") >= 1.0);
    assert_eq!(
        v("skywire_control_routes{role=\"backup\",state=\"pending\"}"),
        0.0
    );
    assert!(
        v(&format!(
            "skywire_control_route_bytes_total{{prefix=\"{c_addr}/128\"}}"
        )) > 0.0
    );
    assert_eq!(v("skywire_control_routes_omitted"), 0.0);
    assert_eq!(v("skywire_control_dataplane_up"), 1.0);
    // The dataplane's drop reasons, all of them, from the fib ring's counters.
    for reason in ["bad_tag", "replay", "no_rule", "unknown_session"] {
        v(&format!(
            "skywire_control_dataplane_drops_total{{reason=\"{reason}\"}}"
        ));
    }
    assert!(v("skywire_control_dataplane_tun_rx_packets_total") >= 3.0);
    v("skywire_control_listener_events_total{listener=\"link_listener\",event=\"accepted\"}");
    v("skywire_control_listener_events_total{listener=\"app_socket\",event=\"refused_total\"}");
    assert_eq!(v("skywire_control_metrics_connections_refused_total"), 0.0);
    assert!(!body.contains(" untyped"), "{body}");
    promtool_check(&body);

    // Clients that connect and say nothing hold every connection slot: the router goes on
    // (pings through it, snapshots published) and the endpoint answers again after the head
    // timeout.
    let up = v("skywire_control_uptime_seconds");
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| connect_in(&a, METRICS))
        .collect();
    let t0 = Instant::now();
    ping(&ns[0], c_addr);
    std::thread::sleep((REQUEST_TIMEOUT + Duration::from_millis(500)).saturating_sub(t0.elapsed()));
    let asked = Instant::now();
    let (status, body) = scrape(&a, METRICS);
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let up2 = value(&body, "skywire_control_uptime_seconds").unwrap();
    assert!(up2 >= up + 1.0, "uptime {up} then {up2}: no new snapshot");
    drop(held);
    promtool_check(&body);
}

#[test]
fn a_non_loopback_metrics_address_needs_metrics_any() {
    let t = tag();
    let dir = scratch(&t);
    let cfg = dir.join("control.yaml");
    std::fs::write(
        &cfg,
        "key: n.key\nlisten: \"127.0.0.1:7100\"\ndata_port: 7000\nmetrics: \"0.0.0.0:9101\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("controlplane", "skywire-control"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("metrics 0.0.0.0:9101: not a loopback address")
            && err.contains("metrics_any: true"),
        "{err}"
    );
    // Nothing was started: no key made.
    assert!(!dir.join("n.key").exists());
}
