//! End-to-end forwarding in network namespaces this test creates (and always removes): two
//! nodes (a-b) and three (a-r-b, r relays by label), static mode, ping and a TCP transfer with
//! a checksum through sky0, and a flood of malformed UDP while traffic flows.
//! Needs root, iproute2, ping and python3 (installed by scripts/test.sh).

use std::path::Path;
use std::time::Duration;
use testbed::*;

fn node_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_skywire-node"))
}

const FLOOD: &str = r#"
import socket, sys, random, time, struct
rnd = random.Random(1); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host = sys.argv[1]; ports = [int(p) for p in sys.argv[2].split(',')]
deadline = time.time() + float(sys.argv[3]); n = 0
while time.time() < deadline and n < 200000:
    kind = n % 5
    if kind == 0: b = rnd.randbytes(rnd.randrange(0, 40))                       # short
    elif kind == 1: b = bytes([2,0,0,0]) + struct.pack('<I', 1) + rnd.randbytes(100)  # known session, bad tag
    elif kind == 2: b = bytes([2,0,0,0]) + struct.pack('<I', 999) + rnd.randbytes(100) # unknown session
    elif kind == 3: b = bytes([9]) + rnd.randbytes(60)                           # unknown type
    else: b = rnd.randbytes(1400)
    s.sendto(b, (host, ports[n % len(ports)])); n += 1
print(n, flush=True)
"#;

struct Node<'a> {
    ns: &'a str,
    listen: &'a str,
    addrs: &'a [&'a str],
    sessions: Vec<String>,
    rules: Vec<String>,
    routes: Vec<String>,
}

fn session(id: u32, peer_id: u32, peer: &str, tx: u8, rx: u8) -> String {
    format!(
        "  - {{id: {id}, peer_id: {peer_id}, peer: \"{peer}\", peer_shards: 2, tx_key: {}, rx_key: {}}}\n",
        key(tx),
        key(rx)
    )
}

fn write_node(dir: &Path, n: &Node<'_>) -> std::path::PathBuf {
    let mut y = format!(
        "node:\n  listen: \"{}\"\n  shards: 2\n  addresses: [{}]\nsessions:\n",
        n.listen,
        n.addrs.join(", ")
    );
    y.extend(n.sessions.iter().map(String::as_str));
    // The route keys of the ends (a relay gets none): routes from fd00::1 seal with 1, the
    // others with 2.
    if !n.routes.is_empty() {
        y.push_str(&format!(
            "route_keys:\n  - {{id: 1, key: {}}}\n  - {{id: 2, key: {}}}\n",
            key(201),
            key(202)
        ));
    }
    y.push_str("rules:\n");
    for r in &n.rules {
        y.push_str(&format!("  - {r}\n"));
    }
    y.push_str(if n.routes.is_empty() {
        "routes: []\n"
    } else {
        "routes:\n"
    });
    for r in &n.routes {
        y.push_str(&format!("  - {r}\n"));
    }
    let p = dir.join(format!("{}.yaml", n.ns));
    std::fs::write(&p, y).unwrap();
    // It holds keys: owner only, or the node refuses it.
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

/// Runs the rest of its arguments as a command in a seccomp sandbox that refuses io_uring
/// (`io_uring_setup` fails with EPERM, as under a container runtime's default profile).
const NO_URING: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class F(ctypes.Structure): _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class P(ctypes.Structure): _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]
NR_IO_URING_SETUP = 425
prog = (F * 4)(F(0x20, 0, 0, 0), F(0x15, 0, 1, NR_IO_URING_SETUP), F(0x06, 0, 0, 0x00050000 | 1), F(0x06, 0, 0, 0x7fff0000))
fp = P(4, prog)
assert libc.prctl(38, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS"
assert libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0, "PR_SET_SECCOMP"
os.execv(sys.argv[1], sys.argv[1:])
"#;

fn start_with(ns: &mut Ns, cfg: &Path, backend: &str, log: &Path, extra: &[&str]) {
    start_wrapped(ns, &[], cfg, backend, log, extra)
}

/// [`start_with`], the node run by the command `wrap` (empty: directly).
fn start_wrapped(
    ns: &mut Ns,
    wrap: &[&str],
    cfg: &Path,
    backend: &str,
    log: &Path,
    extra: &[&str],
) {
    let node = node_bin();
    let fib = cfg.with_extension("fib");
    let mut args = wrap.to_vec();
    args.extend_from_slice(&[
        node.to_str().unwrap(),
        "--static",
        cfg.to_str().unwrap(),
        "--backend",
        backend,
        "--fib-socket",
        fib.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    ns.spawn(&args, log);
    wait_until("sky0 up", Duration::from_secs(10), || {
        ns.exec(&["ip", "link", "show", "sky0"]).status.success()
    });
}

fn two_nodes(backend: &str) {
    two_nodes_with(backend, &["--offload", "off"]);
}

fn two_nodes_with(backend: &str, extra: &[&str]) {
    two_nodes_wrapped(backend, extra, &[]);
}

/// Two nodes, each run by the command `wrap`.
fn two_nodes_wrapped(backend: &str, extra: &[&str], wrap: &[&str]) {
    let refused = !wrap.is_empty();
    if !have("ip") || !have("python3") || !have("ping") {
        panic!("needs iproute2, python3 and ping: run scripts/test.sh (it installs them)");
    }
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
    let na = write_node(
        &dir,
        &Node {
            ns: &a.name,
            listen: "10.77.0.1:7000",
            addrs: &["fd00::1/64", "10.10.0.1/24"],
            sessions: vec![session(1, 1, "10.77.0.2:7000", 1, 2)],
            rules: vec![
                "{session: 1, label: 100, deliver: [fd00::2/128], key: 2}".into(),
                "{session: 1, label: 101, deliver: [10.10.0.2/32], key: 2}".into(),
            ],
            routes: vec![
                "{prefix: fd00::2/128, session: 1, label: 100, key: 1}".into(),
                "{prefix: 10.10.0.2/32, session: 1, label: 101, key: 1}".into(),
            ],
        },
    );
    let nb = write_node(
        &dir,
        &Node {
            ns: &b.name,
            listen: "10.77.0.2:7000",
            addrs: &["fd00::2/64", "10.10.0.2/24"],
            sessions: vec![session(1, 1, "10.77.0.1:7000", 2, 1)],
            rules: vec![
                "{session: 1, label: 100, deliver: [fd00::1/128], key: 1}".into(),
                "{session: 1, label: 101, deliver: [10.10.0.1/32], key: 1}".into(),
            ],
            routes: vec![
                "{prefix: fd00::1/128, session: 1, label: 100, key: 2}".into(),
                "{prefix: 10.10.0.1/32, session: 1, label: 101, key: 2}".into(),
            ],
        },
    );
    start_wrapped(&mut a, wrap, &na, backend, &dir.join("a.log"), extra);
    start_wrapped(&mut b, wrap, &nb, backend, &dir.join("b.log"), extra);
    ping(&a, "fd00::2");
    ping(&a, "10.10.0.2");
    ping(&b, "fd00::1");
    transfer(&b, &a, "fd00::2", 8 << 20, &dir);

    // A flood of malformed frames at both of b's ports while a transfer runs: the transfer
    // completes and b counts the drops.
    let flood = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.name,
            "python3",
            "-c",
            FLOOD,
            "10.77.0.2",
            "7000,7001",
            "3",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut flood = KillOnDrop(flood);
    transfer(&b, &a, "10.10.0.2", 8 << 20, &dir);
    let _ = flood.0.wait();
    // Stopping b prints its counters.
    let pid = b.child(0).id();
    must(&["kill", &pid.to_string()]);
    let st = b.child(0).wait().unwrap();
    assert!(st.success(), "skywire-node did not exit cleanly");
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap();
    let want = if backend == "epoll" || refused {
        "epoll backend"
    } else {
        "io_uring backend"
    };
    assert!(log.contains(want), "not on the {want}: {log}");
    assert_eq!(
        log.contains("io_uring unavailable"),
        refused,
        "the fallback is said exactly when io_uring was refused: {log}"
    );
    assert_eq!(
        log.contains("offloads"),
        !extra.contains(&"off"),
        "offloads on/off not as asked ({extra:?}): {log}"
    );
    for c in ["drop_malformed", "drop_bad_tag", "drop_unknown_session"] {
        let v: u64 = log
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{c}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {c} in log: {log}"));
        assert!(v > 0, "{c} not counted: {log}");
    }
    assert!(
        !b.exec(&["ip", "link", "show", "sky0"]).status.success(),
        "sky0 left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_nodes_epoll() {
    two_nodes("epoll");
}

#[test]
fn two_nodes_uring() {
    two_nodes("uring");
}

/// TUN offloads (TSO super-packets segmented, UDP GSO, receive coalescing): ping, and 8 MiB
/// over IPv6 and IPv4 (the latter under the malformed flood) with their SHA-256 checked.
#[test]
fn two_nodes_offload() {
    two_nodes_with("epoll", &["--offload", "on"]);
}

fn three_nodes(backend: &str) {
    three_nodes_with(backend, &["--offload", "off"]);
}

fn three_nodes_with(backend: &str, extra: &[&str]) {
    let t = tag();
    let dir = scratch(&t);
    let mut a = Ns::new(format!("{t}a"));
    let mut r = Ns::new(format!("{t}r"));
    let mut b = Ns::new(format!("{t}b"));
    link(
        &a,
        &format!("{t}ar"),
        "10.77.1.1/24",
        &r,
        &format!("{t}ra"),
        "10.77.1.2/24",
    );
    link(
        &r,
        &format!("{t}rb"),
        "10.77.2.1/24",
        &b,
        &format!("{t}br"),
        "10.77.2.2/24",
    );
    let na = write_node(
        &dir,
        &Node {
            ns: &a.name,
            listen: "10.77.1.1:7000",
            addrs: &["fd00::1/64"],
            sessions: vec![session(1, 1, "10.77.1.2:7000", 1, 2)],
            rules: vec!["{session: 1, label: 300, deliver: [fd00::3/128], key: 2}".into()],
            routes: vec!["{prefix: fd00::3/128, session: 1, label: 200, key: 1}".into()],
        },
    );
    let nr = write_node(
        &dir,
        &Node {
            ns: &r.name,
            listen: "0.0.0.0:7000",
            addrs: &["fd00::99/128"],
            sessions: vec![
                session(1, 1, "10.77.1.1:7000", 2, 1),
                session(2, 1, "10.77.2.2:7000", 3, 4),
            ],
            rules: vec![
                "{session: 1, label: 200, forward: {session: 2, label: 201}}".into(),
                "{session: 2, label: 301, forward: {session: 1, label: 300}}".into(),
            ],
            routes: vec![],
        },
    );
    let nb = write_node(
        &dir,
        &Node {
            ns: &b.name,
            listen: "10.77.2.2:7000",
            addrs: &["fd00::3/64"],
            sessions: vec![session(1, 2, "10.77.2.1:7000", 4, 3)],
            rules: vec!["{session: 1, label: 201, deliver: [fd00::1/128], key: 1}".into()],
            routes: vec!["{prefix: fd00::1/128, session: 1, label: 301, key: 2}".into()],
        },
    );
    start_with(&mut a, &na, backend, &dir.join("a.log"), extra);
    start_with(&mut r, &nr, backend, &dir.join("r.log"), extra);
    start_with(&mut b, &nb, backend, &dir.join("b.log"), extra);
    ping(&a, "fd00::3");
    transfer(&b, &a, "fd00::3", 8 << 20, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_nodes_relay_epoll() {
    three_nodes("epoll");
}

#[test]
fn three_nodes_relay_offload() {
    three_nodes_with("epoll", &["--offload", "on"]);
}

#[test]
fn three_nodes_relay_uring() {
    three_nodes("uring");
}

#[test]
fn two_nodes_offload_uring() {
    two_nodes_with("uring", &["--offload", "on"]);
}

#[test]
fn three_nodes_relay_offload_uring() {
    three_nodes_with("uring", &["--offload", "on"]);
}

/// `--backend auto` (offloads on, the defaults) where io_uring is refused by a seccomp sandbox:
/// the node says so, falls back to epoll, and traffic flows (ping, two checked transfers).
#[test]
fn two_nodes_fall_back_to_epoll_when_io_uring_is_refused() {
    two_nodes_wrapped("auto", &[], &["python3", "-c", NO_URING]);
}

/// `--backend uring` where io_uring is refused: a clear error, no device left behind.
#[test]
fn backend_uring_refused_is_a_clear_error() {
    let t = tag();
    let dir = scratch(&t);
    let mut a = Ns::new(format!("{t}a"));
    let na = write_node(
        &dir,
        &Node {
            ns: &a.name,
            listen: "127.0.0.1:7000",
            addrs: &["fd00::1/64"],
            sessions: vec![],
            rules: vec![],
            routes: vec![],
        },
    );
    let node = node_bin();
    let log = dir.join("a.log");
    let i = a.spawn(
        &[
            "python3",
            "-c",
            NO_URING,
            node.to_str().unwrap(),
            "--static",
            na.to_str().unwrap(),
            "--backend",
            "uring",
        ],
        &log,
    );
    let st = a.child(i).wait().unwrap();
    assert!(!st.success(), "started without io_uring");
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("--backend uring: io_uring cannot be set up here")
            && out.contains("use --backend epoll or auto"),
        "no clear error: {out}"
    );
    assert!(
        !a.exec(&["ip", "link", "show", "sky0"]).status.success(),
        "sky0 left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds UDP 127.0.0.1:7000 for argv[1] seconds, saying when it has it.
const HOLD_PORT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 7000))
print("holding", flush=True); time.sleep(float(sys.argv[1]))
"#;

/// A restarted node whose port is still held for a moment (a killed io_uring predecessor's
/// ring lets go of its sockets some ms after the process is gone) waits for it and starts;
/// a port someone keeps is a clear error after the wait, with no device left behind.
#[test]
fn a_port_held_a_moment_is_waited_for_and_one_held_on_is_an_error() {
    let t = tag();
    let dir = scratch(&t);
    let node = node_bin();
    for (ns_tag, hold, starts) in [("a", "0.5", true), ("b", "30", false)] {
        let mut ns = Ns::new(format!("{t}{ns_tag}"));
        let cfg = write_node(
            &dir,
            &Node {
                ns: &ns.name,
                listen: "127.0.0.1:7000",
                addrs: &["fd00::1/64"],
                sessions: vec![],
                rules: vec![],
                routes: vec![],
            },
        );
        let held = dir.join(format!("{ns_tag}-hold.log"));
        ns.spawn(&["python3", "-c", HOLD_PORT, hold], &held);
        wait_until("the port held", Duration::from_secs(10), || {
            std::fs::read_to_string(&held).is_ok_and(|s| s.contains("holding"))
        });
        let log = dir.join(format!("{ns_tag}.log"));
        let fib = cfg.with_extension("fib");
        let t0 = std::time::Instant::now();
        let i = ns.spawn(
            &[
                node.to_str().unwrap(),
                "--static",
                cfg.to_str().unwrap(),
                "--fib-socket",
                fib.to_str().unwrap(),
            ],
            &log,
        );
        if starts {
            wait_until("the node up", Duration::from_secs(10), || {
                std::fs::read_to_string(&log).is_ok_and(|s| s.contains("sky0 up"))
            });
            let out = std::fs::read_to_string(&log).unwrap();
            assert!(
                out.contains("bound 127.0.0.1:7000 after waiting"),
                "no word of the wait: {out}"
            );
            assert!(matches!(ns.child(i).try_wait(), Ok(None)), "{out}");
        } else {
            let st = ns.child(i).wait().unwrap();
            let out = std::fs::read_to_string(&log).unwrap();
            assert!(!st.success(), "started on a port in use: {out}");
            assert!(
                t0.elapsed() >= Duration::from_secs(3),
                "gave up after {:?}",
                t0.elapsed()
            );
            assert!(
                out.contains("bind 127.0.0.1:7000: Address already in use"),
                "no clear error: {out}"
            );
            assert!(
                !ns.exec(&["ip", "link", "show", "sky0"]).status.success(),
                "sky0 left behind"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
