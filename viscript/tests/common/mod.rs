//! Test harness: a scratch folder with a config, a `viscript serve` daemon, and one-shot
//! commands against it. Everything is removed and every process we started is ended on drop.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn viscript_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_viscript"))
}

/// The signal-demo binary beside viscript's, built on demand (it belongs to the signal crate).
pub fn demo_bin() -> PathBuf {
    let p = viscript_bin().with_file_name("signal-demo");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "signal", "--bin", "signal-demo"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok && p.exists(), "cannot build signal-demo");
    }
    p
}

pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "viscript-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Short timings so the tests run fast.
pub const FAST_SETTINGS: &str = "\
settings:
  ping_interval_ms: 200
  ping_failures: 3
  ready_timeout_ms: 2000
  shutdown_grace_ms: 500
  term_grace_ms: 500
  backoff_initial_ms: 100
  backoff_max_ms: 400
  backoff_jitter: 0.1
  start_limit: 4
  start_window_ms: 60000
  degraded_retry_ms: 60000
";

/// A config with the demo app under `demo` plus `extra` YAML appended under apps.
pub fn demo_config(extra: &str) -> String {
    format!(
        "{FAST_SETTINGS}apps:\n  demo:\n    path: {}\n    daemon: true\n    desc: the demo\n    help: demo help text\n{extra}",
        demo_bin().display()
    )
}

pub struct Daemon {
    pub scratch: Scratch,
    pub socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(tag: &str, config_text: &str) -> Daemon {
        Daemon::start_in(Scratch::new(tag), config_text, &[])
    }

    /// Starts the daemon in `scratch` (made by the caller, who may have put a socket there)
    /// with `env` added to its environment.
    pub fn start_in(scratch: Scratch, config_text: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(scratch, config_text, env, &[], None)
    }

    /// Starts the daemon with `extra` arguments after `serve`; its stderr lines go to `lines`
    /// (and on to this process's stderr) while it runs.
    pub fn start_logged(
        tag: &str,
        config_text: &str,
        extra: &[&str],
    ) -> (Daemon, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let d = Daemon::start_with(Scratch::new(tag), config_text, &[], extra, Some(tx));
        (d, rx)
    }

    fn start_with(
        scratch: Scratch,
        config_text: &str,
        env: &[(&str, &str)],
        extra: &[&str],
        lines: Option<std::sync::mpsc::Sender<String>>,
    ) -> Daemon {
        let config = scratch.write("config.yaml", config_text);
        let socket = scratch.dir.join("run").join("viscript.sock");
        let mut child = Command::new(viscript_bin())
            // Not the environment of a service manager running the tests, only what is given.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("serve")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if lines.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        if let (Some(tx), Some(err)) = (lines, child.stderr.take()) {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(err).lines() {
                    let Ok(l) = l else { break };
                    eprintln!("{l}");
                    let _ = tx.send(l);
                }
            });
        }
        let d = Daemon {
            scratch,
            socket,
            config,
            child: Some(child),
        };
        // Until it accepts: the socket file exists a moment before the daemon listens on it
        // (a connect then is refused), which a loaded machine can stretch.
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "daemon did not listen on its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Runs `viscript --json ARGS` and returns (exit success, parsed JSON of the first line).
    pub fn json(&self, args: &[&str]) -> (bool, Value) {
        let out = self.run(&[&["--json"], args].concat());
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or("");
        let v: Value = serde_json::from_str(first).unwrap_or_else(|_| {
            panic!(
                "not JSON from {args:?}: {text:?} / {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    pub fn ok(&self, args: &[&str]) -> Value {
        let (ok, v) = self.json(args);
        assert!(ok, "{args:?} failed: {v}");
        v
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(viscript_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn list(&self) -> Vec<Value> {
        self.ok(&["list"])["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn component(&self, id: u64) -> Value {
        self.list()
            .into_iter()
            .find(|c| c["id"] == id)
            .unwrap_or(Value::Null)
    }

    /// Polls `list` until `pred` holds for component `id`.
    pub fn wait_for(
        &self,
        id: u64,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let t = Instant::now();
        loop {
            let c = self.component(id);
            if pred(&c) {
                return c;
            }
            assert!(
                t.elapsed() < timeout,
                "timed out waiting for {what}; last: {c}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self, id: u64) -> String {
        let v = self.ok(&["logs", &id.to_string(), "-n", "500"]);
        v["data"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asks the daemon to quit and waits for it.
    pub fn quit(mut self) -> std::process::ExitStatus {
        let _ = self.run(&["quit"]);
        let mut child = self.child.take().unwrap();
        wait_timeout(&mut child, Duration::from_secs(15)).expect("daemon did not exit after quit")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new(viscript_bin())
                .arg("--socket")
                .arg(&self.socket)
                .arg("quit")
                .output();
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if start.elapsed() > t {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead for our purposes.
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
