//! Network-namespace testbed for end-to-end tests: namespaces joined by veth, processes
//! started inside, everything removed on drop (also when the test fails), and the workspace's
//! binaries found (and built when missing).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique tag for names (interface names are limited to 15 bytes).
pub fn tag() -> String {
    // The whole pid (hex: at most 6 digits for Linux's 2^22 pids) and a separator: "pid 1128,
    // seq 10" and "pid 11281, seq 0" must not both give t112810, nor pids 100000 apart.
    format!(
        "t{:x}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One namespace. Dropping it ends the processes we started in it and deletes it.
pub struct Ns {
    pub name: String,
    children: Vec<Child>,
}

impl Ns {
    pub fn new(name: String) -> Ns {
        let _ = sh(&["ip", "netns", "del", &name]);
        must(&["ip", "netns", "add", &name]);
        must(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns {
            name,
            children: Vec::new(),
        }
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn must(&self, args: &[&str]) {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a long-running process; returns its index for `child`.
    pub fn spawn(&mut self, args: &[&str], log: &Path) -> usize {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        for c in &mut self.children {
            // Our own children, by the handle we hold: SIGTERM first, then SIGKILL.
            if let Ok(None) = c.try_wait() {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(3) {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// Joins two namespaces with a veth pair and addresses them.
pub fn link(a: &Ns, a_if: &str, a_addr: &str, b: &Ns, b_if: &str, b_addr: &str) {
    must(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    must(&["ip", "-n", &a.name, "addr", "add", a_addr, "dev", a_if]);
    must(&["ip", "-n", &b.name, "addr", "add", b_addr, "dev", b_if]);
    must(&["ip", "-n", &a.name, "link", "set", a_if, "up"]);
    must(&["ip", "-n", &b.name, "link", "set", b_if, "up"]);
}

/// A workspace binary (`target/<profile>/NAME` next to the running test), built with
/// `cargo build -p PACKAGE` when it is not there yet.
pub fn bin(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let p = dir.join(name);
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)) && p.exists(), "cannot build {name}");
    }
    p
}

/// Creates `DIR/NAME.key` with `skywire-control keygen`; returns (public key hex, overlay
/// address).
pub fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(bin("controlplane", "skywire-control"))
        .arg("--key")
        .arg(&key)
        .arg("keygen")
        .output()
        .unwrap_or_else(|e| panic!("skywire-control keygen: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("pk "), field("address "))
}

/// Kills a child we started when dropped (and reaps it).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Python programs for a TCP transfer with a checksum: the server prints `BYTES SHA256` of what
/// it received, the client of what it sent.
pub const TCP_SERVER: &str = r#"
import socket, hashlib, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
s.settimeout(30)
c, _ = s.accept(); c.settimeout(30)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"#;

/// See [`TCP_SERVER`].
pub const TCP_CLIENT: &str = r#"
import socket, hashlib, sys, random, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
total = int(sys.argv[3]); rnd = random.Random(7); h = hashlib.sha256()
for attempt in range(100):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); break
    except OSError:
        time.sleep(0.1)
c.settimeout(30)
sent = 0
while sent < total:
    b = rnd.randbytes(min(1 << 16, total - sent))
    c.sendall(b); h.update(b); sent += len(b)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print(sent, h.hexdigest(), flush=True)
"#;

/// Sends `bytes` from `client_ns` to `addr:5001` in `server_ns` over TCP and checks that byte
/// count and SHA-256 match at both ends.
pub fn transfer(server_ns: &Ns, client_ns: &Ns, addr: &str, bytes: usize, dir: &Path) {
    let srv_log = dir.join("srv.out");
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server_ns.name,
            "python3",
            "-c",
            TCP_SERVER,
            addr,
            "5001",
        ])
        .stdout(std::fs::File::create(&srv_log).unwrap())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(300));
    let out = client_ns.exec(&[
        "python3",
        "-c",
        TCP_CLIENT,
        addr,
        "5001",
        &bytes.to_string(),
    ]);
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = server.0.wait().unwrap();
    assert!(st.success());
    let got = std::fs::read_to_string(&srv_log)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(sent, got, "bytes and sha256 differ");
    assert!(sent.starts_with(&bytes.to_string()));
}

/// Pings `addr` from `ns` until it answers (each ping waits 0.2 s for its answer, so the time
/// returned is accurate to about that); panics after `within`. Returns how long it took.
pub fn ping_until(ns: &Ns, addr: &str, within: Duration) -> Duration {
    let t = Instant::now();
    while !ns
        .exec(&["ping", "-c", "1", "-W", "0.2", addr])
        .status
        .success()
    {
        assert!(
            t.elapsed() < within,
            "{addr} unreachable from {} for {within:?}",
            ns.name
        );
    }
    t.elapsed()
}

/// Pings `addr` from `ns` (3 packets) and asserts an answer.
pub fn ping(ns: &Ns, addr: &str) {
    let out = ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", addr]);
    assert!(
        out.status.success(),
        "ping {addr}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("skynode-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits until `cond` holds.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 32-byte key as hex, distinct per `n`.
pub fn key(n: u8) -> String {
    (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(7).wrapping_add(n)))
        .collect()
}

/// Starts a router in `ns`: skywire-node (static config, one shard, unpinned) and
/// skywire-control, with the key `DIR/NAME.key` (see [`keygen`]), the fib ring `DIR/NAME.fib`
/// and the app socket `DIR/NAME.ctl`. `neighbours` are (public key, underlay address) pairs
/// dialled at port 7100 (an empty address: known by key only, found through a messenger);
/// `extra` is appended to the control config. Logs go to
/// `DIR/NAME-node.log` and `DIR/NAME-control.log`.
pub fn start_router(ns: &mut Ns, dir: &Path, name: &str, neighbours: &[(&str, &str)], extra: &str) {
    let nc = dir.join(format!("{name}-node.yaml"));
    std::fs::write(&nc, "node:\n  listen: \"0.0.0.0:7000\"\n  shards: 1\n").unwrap();
    let mut nb = String::new();
    for (pk, ip) in neighbours {
        if ip.is_empty() {
            nb.push_str(&format!("  - {{pk: {pk}}}\n"));
        } else {
            nb.push_str(&format!("  - {{pk: {pk}, endpoint: \"{ip}:7100\"}}\n"));
        }
    }
    let cc = dir.join(format!("{name}-control.yaml"));
    std::fs::write(
        &cc,
        format!(
            "key: {name}.key\nfib_socket: {name}.fib\napp_socket: {name}.ctl\nlisten: \"0.0.0.0:7100\"\ndata_port: 7000\nkeepalive_ms: 100\nneighbours:\n{nb}{extra}"
        ),
    )
    .unwrap();
    start_node(ns, dir, name);
    start_control(ns, dir, name);
}

/// Starts (or starts again) the skywire-control of a router made by [`start_router`]; returns
/// its child index. A restart logs to `DIR/NAME-control.N.log` (N: its child index).
pub fn start_control(ns: &mut Ns, dir: &Path, name: &str) -> usize {
    let cc = dir.join(format!("{name}-control.yaml"));
    let ctl = bin("controlplane", "skywire-control");
    let log = dir.join(format!("{name}-control.log"));
    let log = if log.exists() {
        dir.join(format!("{name}-control.{}.log", ns.children.len()))
    } else {
        log
    };
    ns.spawn(
        &[
            ctl.to_str().unwrap(),
            "run",
            "--config",
            cc.to_str().unwrap(),
        ],
        &log,
    )
}

/// Starts (or starts again) the skywire-node of a router made by [`start_router`]; returns its
/// child index. A restart logs to `DIR/NAME-node.N.log` (N: its child index).
pub fn start_node(ns: &mut Ns, dir: &Path, name: &str) -> usize {
    let nc = dir.join(format!("{name}-node.yaml"));
    let fib = dir.join(format!("{name}.fib"));
    let node = bin("dataplane", "skywire-node");
    let log = dir.join(format!("{name}-node.log"));
    let log = if log.exists() {
        dir.join(format!("{name}-node.{}.log", ns.children.len()))
    } else {
        log
    };
    ns.spawn(
        &[
            node.to_str().unwrap(),
            "--static",
            nc.to_str().unwrap(),
            "--fib-socket",
            fib.to_str().unwrap(),
            "--no-pin",
        ],
        &log,
    )
}

/// Sends SIGKILL to child `i` of `ns` and reaps it.
pub fn kill9(ns: &mut Ns, i: usize) {
    let c = ns.child(i);
    let _ = c.kill();
    let _ = c.wait();
}

/// Sends SIGTERM to child `i` of `ns` and waits up to `within` for it to exit; its status.
pub fn terminate(ns: &mut Ns, i: usize, within: Duration) -> std::process::ExitStatus {
    let pid = ns.child(i).id().to_string();
    must(&["kill", "-TERM", &pid]);
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = ns.child(i).try_wait() {
            return st;
        }
        assert!(
            t.elapsed() < within,
            "pid {pid} did not exit within {within:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three routers in a line, a - b - c: namespaces `{tag}a`, `{tag}b`, `{tag}c` joined by
/// 10.85.1.0/24 (a .1, b .2) and 10.85.2.0/24 (b .1, c .2), keys made in `dir`. Returns the
/// keys (public key, overlay address) and the namespaces; start the routers with
/// [`start_line3`].
pub fn line3(t: &str, dir: &Path) -> (Vec<(String, String)>, Vec<Ns>) {
    let keys: Vec<(String, String)> = ["a", "b", "c"].iter().map(|n| keygen(dir, n)).collect();
    (keys, line3_ns(t))
}

/// The namespaces and veths of a [`line3`] alone (no keys).
pub fn line3_ns(t: &str) -> Vec<Ns> {
    let ns: Vec<Ns> = ["a", "b", "c"]
        .iter()
        .map(|n| Ns::new(format!("{t}{n}")))
        .collect();
    link(
        &ns[0],
        &format!("{t}ab"),
        "10.85.1.1/24",
        &ns[1],
        &format!("{t}ba"),
        "10.85.1.2/24",
    );
    link(
        &ns[1],
        &format!("{t}bc"),
        "10.85.2.1/24",
        &ns[2],
        &format!("{t}cb"),
        "10.85.2.2/24",
    );
    ns
}

/// Starts the routers of a [`line3`], each neighbour dialled on its link; `extra[i]` is appended
/// to router i's control config.
pub fn start_line3(ns: &mut [Ns], dir: &Path, keys: &[(String, String)], extra: [&str; 3]) {
    let neigh: [Vec<(&str, &str)>; 3] = [
        vec![(&keys[1].0, "10.85.1.2")],
        vec![(&keys[0].0, "10.85.1.1"), (&keys[2].0, "10.85.2.2")],
        vec![(&keys[1].0, "10.85.2.1")],
    ];
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        start_router(&mut ns[i], dir, n, &neigh[i], extra[i]);
    }
}

/// The value of the Prometheus series `series` (name and labels, exactly) in `body`.
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Asserts `promtool check metrics` accepts `body` with nothing to say (skipped with a note
/// when promtool is not installed; scripts/test.sh and .ci/run install it).
pub fn promtool_check(body: &str) {
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
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
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

/// How often a [`Sampler`] looks, and the longest it runs (it is stopped before that).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// See [`SAMPLE_EVERY`].
pub const SAMPLE_AT_MOST: Duration = Duration::from_secs(90);

/// Threads, open descriptors and resident memory (KiB) of a process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Use {
    /// Threads.
    pub threads: u64,
    /// Open descriptors.
    pub fds: u64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
}

/// [`Use`] of `pid` now (zeros for a process that is gone).
pub fn usage(pid: u32) -> Use {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Use {
        threads: field("Threads:"),
        fds,
        rss_kib: field("VmRSS:"),
    }
}

/// Samples `pid` until stopped; the highest of each figure.
pub struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Use>,
}

impl Sampler {
    /// Starts sampling `pid` every [`SAMPLE_EVERY`], for [`SAMPLE_AT_MOST`] at the most.
    pub fn start(pid: u32) -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t = Instant::now();
            let mut max = Use::default();
            while !s.load(Ordering::Relaxed) && t.elapsed() < SAMPLE_AT_MOST {
                let u = usage(pid);
                max.threads = max.threads.max(u.threads);
                max.fds = max.fds.max(u.fds);
                max.rss_kib = max.rss_kib.max(u.rss_kib);
                std::thread::sleep(SAMPLE_EVERY);
            }
            max
        });
        Sampler { stop, thread }
    }

    /// Stops; the highest figures seen.
    pub fn finish(self) -> Use {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
