//! Programming nodes through the fib ring (no static tables): sessions, rules and routes
//! committed at run time make traffic flow; a bad commit is refused whole; counters are read;
//! a packet for an unknown destination is punted, and injected back once its route exists.

use dataplane::fib::Prefix;
use dataplane::fibproto::{FibMsg, Key, RuleAction};
use dataplane::fibring::FibClient;
use dataplane::wire::Cipher;
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::*;

fn node_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_skywire-node"))
}

fn bare_node(dir: &Path, name: &str, listen: &str, addr: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!("node:\n  listen: \"{listen}\"\n  shards: 2\n  addresses: [{addr}]\n"),
    )
    .unwrap();
    p
}

fn key(n: u8) -> [u8; 32] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(13).wrapping_add(n))
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn connect(path: &Path) -> FibClient {
    let t = Instant::now();
    loop {
        match FibClient::connect(path) {
            Ok(c) => return c,
            Err(e) if t.elapsed() > Duration::from_secs(10) => {
                panic!("fib connect {}: {e}", path.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn program_punt_and_inject_through_the_fib_ring() {
    let t = tag();
    let dir = scratch(&t);
    let mut a = Ns::new(format!("{t}a"));
    let mut b = Ns::new(format!("{t}b"));
    link(
        &a,
        &format!("{t}va"),
        "10.77.0.1/24",
        &b,
        &format!("{t}vb"),
        "10.77.0.2/24",
    );
    let node = node_bin();
    for (ns, name, listen, addr) in [
        (&mut a, "a", "10.77.0.1:7000", "fd00::1/64"),
        (&mut b, "b", "10.77.0.2:7000", "fd00::2/64"),
    ] {
        let cfg = bare_node(&dir, name, listen, addr);
        let fib = dir.join(format!("{name}.fib"));
        ns.spawn(
            &[
                node.to_str().unwrap(),
                "--static",
                cfg.to_str().unwrap(),
                "--fib-socket",
                fib.to_str().unwrap(),
            ],
            &dir.join(format!("{name}.log")),
        );
    }
    let mut fa = connect(&dir.join("a.fib"));
    let mut fb = connect(&dir.join("b.fib"));
    let session = |id, peer: &str, tx, rx| FibMsg::AddSession {
        id,
        peer_id: 1,
        peer: peer.parse().unwrap(),
        peer_shards: 2,
        cipher: Cipher::ChaCha20Poly1305,
        tx_key: Key(key(tx)),
        rx_key: Key(key(rx)),
        liveness: None,
    };
    // Route keys: a's routes seal with 11 (b opens with it), b's with 12.
    let route_key = |id, n| FibMsg::AddRouteKey {
        id,
        cipher: Cipher::ChaCha20Poly1305,
        key: Key(key(n)),
    };
    // b: complete. a: session and rule, but no route to fd00::2 yet.
    fb.send(&session(1, "10.77.0.1:7000", 2, 1)).unwrap();
    fb.send(&route_key(1, 11)).unwrap();
    fb.send(&route_key(2, 12)).unwrap();
    fb.send(&FibMsg::AddRule {
        session: 1,
        label: 9,
        action: RuleAction::Deliver {
            sources: vec![p("fd00::1/128")],
            key: 1,
        },
    })
    .unwrap();
    fb.send(&FibMsg::AddRoute {
        prefix: p("fd00::1/128"),
        session: 1,
        label: 9,
        key: 2,
        keepalive: true,
    })
    .unwrap();
    fb.commit(Duration::from_secs(5)).unwrap();
    fa.send(&session(1, "10.77.0.2:7000", 1, 2)).unwrap();
    fa.send(&route_key(7, 11)).unwrap();
    fa.send(&route_key(8, 12)).unwrap();
    fa.send(&FibMsg::AddRule {
        session: 1,
        label: 9,
        action: RuleAction::Deliver {
            sources: vec![p("fd00::2/128")],
            key: 8,
        },
    })
    .unwrap();
    fa.commit(Duration::from_secs(5)).unwrap();

    // A commit that names an unknown session is refused and changes nothing.
    fa.send(&FibMsg::AddRoute {
        prefix: p("fd00::77/128"),
        session: 42,
        label: 3,
        key: 7,
        keepalive: false,
    })
    .unwrap();
    let err = fa.commit(Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("unknown session 42"), "{err}");
    // So is one on the label liveness probes use.
    fa.send(&FibMsg::AddRoute {
        prefix: p("fd00::77/128"),
        session: 1,
        label: dataplane::wire::LABEL_PROBE,
        key: 1,
        keepalive: false,
    })
    .unwrap();
    let err = fa.commit(Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string().contains("reserved for liveness probes"),
        "{err}"
    );
    // So is one that names an unknown route key.
    fa.send(&FibMsg::AddRoute {
        prefix: p("fd00::77/128"),
        session: 1,
        label: 3,
        key: 99,
        keepalive: false,
    })
    .unwrap();
    let err = fa.commit(Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("unknown route key 99"), "{err}");

    // A ping with no route yet: a punts the echo request.
    let ping = std::process::Command::new("ip")
        .args([
            "netns", "exec", &a.name, "ping", "-c", "1", "-W", "8", "fd00::2",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ping = scopeguard(ping);
    let punted = loop {
        match fa.recv(Duration::from_secs(5)).unwrap() {
            Some(FibMsg::Punt { dst, packet })
                if dst == "fd00::2".parse::<std::net::IpAddr>().unwrap() =>
            {
                break packet;
            }
            Some(_) => continue,
            None => panic!("no punt for fd00::2"),
        }
    };
    assert_eq!(punted[0] >> 4, 6);
    // Route up, then the queued packet goes: the ping gets its answer.
    fa.send(&FibMsg::AddRoute {
        prefix: p("fd00::2/128"),
        session: 1,
        label: 9,
        key: 7,
        keepalive: true,
    })
    .unwrap();
    fa.commit(Duration::from_secs(5)).unwrap();
    fa.send(&FibMsg::Inject { packet: punted }).unwrap();
    let st = wait_child(&mut ping.0, Duration::from_secs(10));
    assert!(st.success(), "the injected echo request was not answered");

    // And ordinary traffic flows.
    let out = a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "fd00::2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    match fa.counters(Duration::from_secs(5)).unwrap() {
        FibMsg::Counters {
            sessions,
            routes,
            drops,
            ..
        } => {
            let s1 = sessions
                .iter()
                .find(|(id, _)| *id == 1)
                .expect("session 1")
                .1;
            assert!(s1.tx_pkts >= 3 && s1.rx_pkts >= 3, "{s1:?}");
            assert!(
                routes
                    .iter()
                    .any(|(pf, tr)| *pf == p("fd00::2/128") && tr.tx_pkts >= 2)
            );
            assert!(drops.iter().any(|(n, v)| n == "drop_no_rule" && *v >= 1));
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard(c: std::process::Child) -> Guard {
    Guard(c)
}

fn wait_child(c: &mut std::process::Child, t: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < t, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_routes_expire_unless_kept_alive_and_a_crash_leaves_no_device() {
    let t = tag();
    let dir = scratch(&t);
    let mut a = Ns::new(format!("{t}i"));
    let cfg = dir.join("a.yaml");
    let k = "00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9";
    std::fs::write(
        &cfg,
        format!(
            "node:\n  listen: \"127.0.0.1:7000\"\n  shards: 1\n  route_idle_secs: 1\n  addresses: [fd00::1/64]\nsessions:\n  - {{id: 1, peer_id: 1, peer: \"127.0.0.1:7100\", tx_key: {k}, rx_key: {k}}}\nroute_keys:\n  - {{id: 1, key: {k}}}\nrules: []\nroutes:\n  - {{prefix: fd00::2/128, session: 1, label: 3, key: 1, keepalive: true}}\n  - {{prefix: fd00::3/128, session: 1, label: 2, key: 1}}\n"
        ),
    )
    .unwrap();
    // It holds keys: owner only, or the node refuses it.
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let fib = dir.join("a.fib");
    let node = node_bin();
    let i = a.spawn(
        &[
            node.to_str().unwrap(),
            "--static",
            cfg.to_str().unwrap(),
            "--fib-socket",
            fib.to_str().unwrap(),
        ],
        &dir.join("a.log"),
    );
    let mut fa = connect(&fib);
    let routes = |fa: &mut FibClient| match fa.counters(Duration::from_secs(5)).unwrap() {
        FibMsg::Counters { routes, .. } => routes.into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(routes(&mut fa).len(), 2);
    wait_until("idle route expiry", Duration::from_secs(10), || {
        routes(&mut fa) == vec![p("fd00::2/128")]
    });
    // SIGKILL: no chance to clean up, yet the kernel removes the (non-persistent) device.
    assert!(a.exec(&["ip", "link", "show", "sky0"]).status.success());
    let _ = a.child(i).kill();
    let _ = a.child(i).wait();
    wait_until("sky0 gone after a crash", Duration::from_secs(5), || {
        !a.exec(&["ip", "link", "show", "sky0"]).status.success()
    });
    let _ = std::fs::remove_dir_all(&dir);
}
