//! `skywire-control messenger --metrics`: a messenger on loopback, a client that registers,
//! looks up, queries and sends what gets rejected, and a scrape (checked by `promtool check
//! metrics` when it is installed) that shows each; a non-loopback address without
//! `--metrics-any` is refused.

#![forbid(unsafe_code)]

use controlplane::identity::{Identity, NodeId};
use controlplane::messenger::net;
use controlplane::messenger::{Msg, Record, Reject, Service};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use testbed::*;

/// The address after `prefix` in the first line of `lines` that has it.
fn logged(lines: &Receiver<String>, prefix: &str) -> SocketAddr {
    let t = Instant::now();
    loop {
        let left = Duration::from_secs(10).saturating_sub(t.elapsed());
        let l = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {prefix:?} line from the messenger"));
        if let Some(i) = l.find(prefix) {
            let rest = &l[i + prefix.len()..];
            let a = rest.split(['/', ' ']).next().unwrap();
            return a.parse().unwrap_or_else(|e| panic!("{a:?} in {l:?}: {e}"));
        }
    }
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

#[test]
fn records_lookups_queries_and_rejections_are_scraped() {
    let dir = scratch(&tag());
    let (pm, _) = keygen(&dir, "m");
    let server_pk = NodeId::from_hex(&pm).unwrap();
    let mut child = Command::new(bin("controlplane", "skywire-control"))
        .arg("--key")
        .arg(dir.join("m.key"))
        .args([
            "messenger",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let _messenger = KillOnDrop(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let listen = logged(&lines, &format!("messenger {pm} on "));
    let metrics = logged(&lines, "metrics on http://");

    let id = Identity::from_seed([7; 32]).unwrap();
    let conn = net::connect(listen, server_pk, &id).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ask = |m: Msg| {
        conn.send(&m.encode()).unwrap();
        Msg::decode(&conn.recv().unwrap()).unwrap()
    };
    let svc = Service {
        kind: "socks".into(),
        port: 8001,
        meta: String::new(),
    };
    let ep: SocketAddr = "192.0.2.1:7100".parse().unwrap();
    let rec = Record::sign(&id, 5, 60_000, vec![ep], vec![svc]).unwrap();
    assert!(matches!(
        ask(Msg::Register(rec)),
        Msg::Registered { seq: 5, .. }
    ));
    assert!(matches!(ask(Msg::Lookup { pk: id.id() }), Msg::Found(_)));
    let nobody = NodeId::from_hex(&"ab".repeat(32)).unwrap();
    assert!(matches!(
        ask(Msg::Lookup { pk: nobody }),
        Msg::NotFound { .. }
    ));
    assert!(matches!(
        ask(Msg::Query {
            kind: "socks".into()
        }),
        Msg::Services { ref records, .. } if records.len() == 1
    ));
    let older = Record::sign(&id, 4, 60_000, vec![ep], vec![]).unwrap();
    assert!(matches!(
        ask(Msg::Register(older)),
        Msg::Error {
            code: Reject::Stale,
            ..
        }
    ));
    conn.send(b"\xff\xfe not a message").unwrap();
    assert!(matches!(
        Msg::decode(&conn.recv().unwrap()).unwrap(),
        Msg::Error {
            code: Reject::Malformed,
            ..
        }
    ));

    let body = scrape(metrics);
    let v = |s: &str| value(&body, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
    assert_eq!(v("skywire_messenger_records"), 1.0);
    assert_eq!(v("skywire_messenger_clients"), 1.0);
    assert_eq!(v("skywire_messenger_registered_total"), 1.0);
    assert_eq!(v("skywire_messenger_requests_total"), 6.0);
    assert_eq!(v("skywire_messenger_lookups_total{result=\"found\"}"), 1.0);
    assert_eq!(
        v("skywire_messenger_lookups_total{result=\"not_found\"}"),
        1.0
    );
    assert_eq!(v("skywire_messenger_queries_total"), 1.0);
    assert_eq!(v("skywire_messenger_rejected_total{reason=\"stale\"}"), 1.0);
    assert_eq!(
        v("skywire_messenger_rejected_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        v("skywire_messenger_rejected_total{reason=\"replay\"}"),
        0.0
    );
    assert_eq!(
        body.matches("skywire_messenger_rejected_total{").count(),
        Reject::ALL.len()
    );
    assert_eq!(
        v("skywire_messenger_listener_events_total{event=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        v("skywire_messenger_metrics_connections_refused_total"),
        0.0
    );
    promtool_check(&body);

    // The client gone, the scrape says so.
    conn.shutdown();
    drop(conn);
    wait_until("the client's disconnect", Duration::from_secs(5), || {
        value(&scrape(metrics), "skywire_messenger_clients") == Some(0.0)
    });
}

#[test]
fn a_non_loopback_metrics_address_needs_metrics_any() {
    let dir = scratch(&tag());
    let key = dir.join("m.key");
    let run = |extra: &[&str]| {
        Command::new(bin("controlplane", "skywire-control"))
            .arg("--key")
            .arg(&key)
            .args(["messenger", "--listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--metrics", "0.0.0.0:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--metrics 0.0.0.0:0: not a loopback address")
            && err.contains("--metrics-any"),
        "{err}"
    );
    assert!(!key.exists(), "started anyway");
    let out = run(&["--metrics-any"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics"));
}
