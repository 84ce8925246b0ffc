//! Network-namespace testbed: namespaces joined by veth, nodes started inside, everything
//! removed on drop (also when the test fails).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique tag for names (interface names are limited to 15 bytes).
pub fn tag() -> String {
    format!(
        "t{}{}",
        std::process::id() % 100_000,
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

pub fn node_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skywire-node"))
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
