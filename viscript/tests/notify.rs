//! `viscript serve` under a service manager: sd_notify messages to a NOTIFY_SOCKET listener
//! (a socket file and an abstract `@name`), no running systemd needed.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// One datagram and when it arrived.
struct Note {
    at: Instant,
    text: String,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    fn status(&self) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix("STATUS="))
    }
}

/// Reads datagrams on a thread (so a test can block on `viscript list` meanwhile).
fn listen(sock: UnixDatagram) -> Receiver<Note> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let note = Note {
                at: Instant::now(),
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if tx.send(note).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects notes until one satisfies `pred` (returned last), failing after `timeout`.
fn until(
    rx: &Receiver<Note>,
    seen: &mut Vec<Note>,
    timeout: Duration,
    pred: impl Fn(&Note) -> bool,
) {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => {
                let hit = pred(&n);
                seen.push(n);
                if hit {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "timed out; notes so far: {:?}",
                seen.iter().map(|n| &n.text).collect::<Vec<_>>()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!("listener ended"),
        }
    }
}

/// Two autostart demo daemons (the second `after` the first) and `/usr/bin/env` as a one-shot
/// app that is started by hand; the config tries to hand it NOTIFY_SOCKET.
fn config() -> String {
    let demo = demo_bin();
    format!(
        "{FAST_SETTINGS}apps:
  demo:
    path: {demo}
    daemon: true
    autostart: true
  demo2:
    path: {demo}
    daemon: true
    autostart: true
    after: [demo]
  env:
    path: /usr/bin/env
    daemon: false
    restart: never
    env: {{NOTIFY_SOCKET: /nonexistent, HELLO: there}}
",
        demo = demo.display()
    )
}

fn states(d: &Daemon) -> Vec<(String, String)> {
    d.list()
        .iter()
        .map(|c| {
            (
                c["app"].as_str().unwrap_or("").to_string(),
                c["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn ready_after_autostart_status_watchdog_stopping_and_children_do_not_see_it() {
    let s = Scratch::new("notify");
    let path = s.dir.join("notify.sock");
    let rx = listen(UnixDatagram::bind(&path).unwrap());
    let d = Daemon::start_in(
        s,
        &config(),
        &[
            ("NOTIFY_SOCKET", path_str(&path)),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    until(&rx, &mut seen, Duration::from_secs(10), |n| {
        n.has("READY=1")
    });
    // At the moment READY arrives both autostart daemons are registered.
    let st = states(&d);
    assert!(
        st.contains(&("demo".into(), "ready".into()))
            && st.contains(&("demo2".into(), "ready".into())),
        "{st:?}"
    );
    let ready = seen.last().unwrap();
    assert_eq!(
        ready.status(),
        Some("2 components: 2 ready"),
        "{}",
        ready.text
    );
    for n in &seen[..seen.len() - 1] {
        assert!(!n.has("READY=1"));
        if let Some(s) = n.status() {
            assert!(s.starts_with("starting; "), "{s}");
        }
    }
    assert!(
        seen.iter()
            .any(|n| n.status().is_some_and(|s| s.contains("starting ("))),
        "a status before READY names what is starting"
    );

    // The child's environment: no NOTIFY_SOCKET (even from the config), no WATCHDOG_*.
    let v = d.ok(&["start", "env"]);
    let id = v["data"]["id"].as_u64().unwrap();
    d.wait_for(id, "env to exit", Duration::from_secs(5), |c| {
        c["state"] == "exited"
    });
    let logs = d.logs(id);
    assert!(logs.contains("HELLO=there"), "{logs}");
    assert!(!logs.contains("NOTIFY_SOCKET"), "{logs}");
    assert!(!logs.contains("WATCHDOG_"), "{logs}");
    until(&rx, &mut seen, Duration::from_secs(5), |n| {
        n.status() == Some("3 components: 2 ready, 1 exited (env)")
    });

    // Watchdog pings at WATCHDOG_USEC/2 = 200 ms, from the start.
    let t = Instant::now();
    until(&rx, &mut seen, Duration::from_secs(5), |_| {
        t.elapsed() > Duration::from_millis(1500)
    });
    let pings: Vec<Instant> = seen
        .iter()
        .filter(|n| n.has("WATCHDOG=1"))
        .map(|n| n.at)
        .collect();
    assert!(pings.len() >= 5, "{} pings", pings.len());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean >= Duration::from_millis(150) && mean <= Duration::from_millis(350),
        "mean gap {mean:?} ({gaps:?})"
    );

    // STATUS at most every 250 ms unless it comes with READY or STOPPING.
    let mut last: Option<Instant> = None;
    for n in seen.iter().filter(|n| n.status().is_some()) {
        if let Some(l) = last
            && !n.has("READY=1")
            && !n.has("STOPPING=1")
        {
            assert!(
                n.at - l >= Duration::from_millis(200),
                "status too soon: {}",
                n.text
            );
        }
        last = Some(n.at);
    }

    assert!(d.quit().success());
    until(&rx, &mut seen, Duration::from_secs(5), |n| {
        n.has("STOPPING=1")
    });
    let stop = seen.last().unwrap();
    assert!(
        stop.status().unwrap_or("").starts_with("stopping; "),
        "{}",
        stop.text
    );
    assert_eq!(seen.iter().filter(|n| n.has("READY=1")).count(), 1);
}

#[test]
fn abstract_socket_and_a_watchdog_for_another_pid() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("viscript-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = listen(UnixDatagram::bind_addr(&addr).unwrap());
    let env = format!("@{name}");
    let d = Daemon::start_in(
        Scratch::new("notify-abstract"),
        &config(),
        // WATCHDOG_PID names another process: no pings for us.
        &[
            ("NOTIFY_SOCKET", &env),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let mut seen = Vec::new();
    until(&rx, &mut seen, Duration::from_secs(10), |n| {
        n.has("READY=1")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.quit().success());
    until(&rx, &mut seen, Duration::from_secs(5), |n| {
        n.has("STOPPING=1")
    });
    assert!(!seen.iter().any(|n| n.has("WATCHDOG=1")));
}

#[test]
fn ready_after_the_bound_when_an_autostart_app_does_not_come_up() {
    let s = Scratch::new("notify-late");
    let path = s.dir.join("notify.sock");
    let rx = listen(UnixDatagram::bind(&path).unwrap());
    // `sleep` never registers: after ready_timeout (2 s) READY goes out anyway, naming it.
    let cfg = format!(
        "{}  sleeper:\n    path: /bin/sleep\n    daemon: true\n    autostart: true\n    default_args: [\"100\"]\n",
        demo_config("").replace(
            "    help: demo help text\n",
            "    help: demo help text\n    autostart: true\n"
        )
    );
    let t = Instant::now();
    let d = Daemon::start_in(s, &cfg, &[("NOTIFY_SOCKET", path_str(&path))]);
    let mut seen = Vec::new();
    until(&rx, &mut seen, Duration::from_secs(10), |n| {
        n.has("READY=1")
    });
    let took = seen.last().unwrap().at - t;
    assert!(took >= Duration::from_millis(1900), "READY after {took:?}");
    let status = seen.last().unwrap().status().unwrap_or("").to_string();
    assert!(status.starts_with("not up in time: sleeper; "), "{status}");
    assert!(states(&d).contains(&("demo".into(), "ready".into())));
    drop(d);
}
