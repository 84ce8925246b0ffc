//! The apps' command lines as apps/README.md documents them, run literally: its `sh` block of
//! forms, with the app socket a stand-in that answers every request with an error (so a form
//! that uses it gets exactly as far as asking it), `/tmp/sky` a scratch folder and `<pk>` a
//! key. Plus wrong flags: usage errors with exit 2.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::KillOnDrop;

const README_SOCKET: &str = "/run/skywire/sky0.ctl";
const README_DIR: &str = "/tmp/sky";
/// The stand-in app socket's answer to everything. `no messenger` makes `find` give up at
/// once instead of asking again for 30 s.
const REFUSAL: &str = "no messenger: the cli_forms stand-in answers nothing";
/// A key that parses (what `<pk>` becomes).
const PK: &str = "7e49f0563da33b8856b46ccf6c20067be1aa10b1eb5ea9f905101beb468184cc";

fn app_bin(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "skywire-socks-server" => env!("CARGO_BIN_EXE_skywire-socks-server"),
        "skywire-socks-client" => env!("CARGO_BIN_EXE_skywire-socks-client"),
        "skywire-vpn-server" => env!("CARGO_BIN_EXE_skywire-vpn-server"),
        "skywire-vpn-client" => env!("CARGO_BIN_EXE_skywire-vpn-client"),
        other => panic!("not an app: {other}"),
    })
}

const APPS: [&str; 4] = [
    "skywire-socks-server",
    "skywire-socks-client",
    "skywire-vpn-server",
    "skywire-vpn-client",
];

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("apps-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An app socket that answers every request line with `err REFUSAL`; counts the requests.
fn stand_in_app_socket(path: &Path) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let l = UnixListener::bind(path).unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = asked.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let a = a.clone();
            std::thread::spawn(move || {
                let mut w = &c;
                for line in BufReader::new(&c).lines() {
                    if line.is_err() {
                        return;
                    }
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if w.write_all(format!("err {REFUSAL}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    asked
}

/// The lines of the README's `sh` block of forms.
fn documented_forms() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("\n## Command lines\n")
        .expect("a Command lines section");
    let section = &text[start..];
    let b = section.find("```sh\n").expect("a ```sh block of forms") + 6;
    let e = section[b..].find("```").unwrap() + b;
    section[b..e]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn is_usage_error(stderr: &str) -> bool {
    stderr.contains("Usage:") || stderr.starts_with("error:")
}

/// Runs an app that should serve: waits for its `listening on` line on stdout, then it is
/// killed. Returns the line, or panics with what it said when it exited instead.
fn serves(bin: &Path, args: &[String], line: &str) -> String {
    let mut g = KillOnDrop(
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let out = g.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("listening on") => return l,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let mut err = String::new();
                if let Some(mut e) = g.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("{line}: exited {:?} without serving: {err}", g.0.wait());
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{line}: not serving");
    }
}

#[test]
fn every_documented_form_works_as_written() {
    let s = Scratch::new("forms");
    let socket = s.0.join("sky0.ctl");
    let asked = stand_in_app_socket(&socket);
    let dir = s.0.to_str().unwrap();
    let forms = documented_forms();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for line in &forms {
        let mut words: Vec<String> = line
            .split_whitespace()
            .map(|w| {
                w.replace(README_SOCKET, socket.to_str().unwrap())
                    .replace(README_DIR, dir)
                    .replace("<pk>", PK)
            })
            .collect();
        let name = APPS
            .into_iter()
            .find(|a| *a == words[0])
            .unwrap_or_else(|| panic!("{line}: not an app"));
        *seen.entry(name).or_default() += 1;
        words.remove(0);
        let bin = app_bin(name);
        if words.iter().any(|w| w == "--help") {
            let o = Command::new(&bin).args(&words).output().unwrap();
            assert!(
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains(&format!("Usage: {name}")),
                "{line}\n{}",
                show(&o)
            );
            continue;
        }
        let uses_socket = line.contains(README_SOCKET);
        if words.iter().any(|w| w == "--cleanup") {
            // Nothing to undo in a fresh state folder: exit 0, the folder made 0700.
            let o = Command::new(&bin).args(&words).output().unwrap();
            assert!(o.status.success(), "{line}\n{}", show(&o));
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.0.join("state"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{line}");
        } else if uses_socket {
            // It parsed, then asked the app socket, and says what the socket answered.
            let before = asked.load(std::sync::atomic::Ordering::SeqCst);
            let o = Command::new(&bin).args(&words).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.code() == Some(2) && err.contains(REFUSAL) && !is_usage_error(&err),
                "{line}\n{}",
                show(&o)
            );
            assert!(
                asked.load(std::sync::atomic::Ordering::SeqCst) > before,
                "{line}"
            );
        } else {
            serves(&bin, &words, line);
        }
    }
    for a in APPS {
        // At least one real form besides --help.
        assert!(
            seen.get(a).copied().unwrap_or(0) >= 2,
            "no forms of {a}: {seen:?}"
        );
    }
}

#[test]
fn wrong_flags_are_usage_errors_with_exit_2() {
    let s = Scratch::new("wrong");
    let state = s.0.join("state");
    let st = state.to_str().unwrap();
    let sock = s.0.join("none.ctl");
    let sock = sock.to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "skywire-socks-server",
            &["n", sock, "8001", "--allow-all", "--bogus"],
            "'--bogus'",
        ),
        (
            "skywire-socks-server",
            &["--bogus", "n", sock, "8001"],
            "'--bogus'",
        ),
        ("skywire-socks-server", &["n", sock], "<PORT>"),
        (
            "skywire-socks-server",
            &["n", sock, "70000", "--allow-all"],
            "'70000'",
        ),
        (
            "skywire-socks-server",
            &["n", sock, "1", "--allow-all", "--user", "u"],
            "--pass",
        ),
        (
            "skywire-socks-server",
            &["n", sock, "1", "--allow-all", "--max-conns", "x"],
            "'x'",
        ),
        (
            "skywire-socks-client",
            &["n", sock, "9001", "--bogus"],
            "'--bogus'",
        ),
        (
            "skywire-socks-client",
            &["n", sock, "9001", "--server-pk", PK],
            "--server-port",
        ),
        (
            "skywire-socks-client",
            &[
                "n",
                sock,
                "9001",
                "--server",
                "[::1]:1",
                "--server-pk",
                PK,
                "--server-port",
                "1",
            ],
            "cannot be used with",
        ),
        (
            "skywire-socks-client",
            &["n", sock, "9001", "--server", "nowhere"],
            "'nowhere'",
        ),
        (
            "skywire-vpn-server",
            &[
                "n",
                sock,
                "8100",
                "--allow-all",
                "--state-dir",
                st,
                "--bogus",
            ],
            "'--bogus'",
        ),
        (
            "skywire-vpn-server",
            &["n", sock, "--state-dir", st],
            "<PORT>",
        ),
        (
            "skywire-vpn-client",
            &["n", sock, "--state-dir", st, "--bogus"],
            "'--bogus'",
        ),
        (
            "skywire-vpn-client",
            &["n", sock, "--state-dir", st, "--server-port", "x"],
            "'x'",
        ),
        ("skywire-vpn-client", &["--state-dir", st], "<NAME>"),
    ];
    for (app, args, says) in cases {
        let o = Command::new(app_bin(app)).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{app} {args:?}\n{}", show(&o));
        assert!(
            err.starts_with("error:") && err.contains(says),
            "{app} {args:?}: wants {says:?}\n{}",
            show(&o)
        );
        assert!(
            err.contains(&format!("Usage: {app}")) || err.contains("try '--help'"),
            "{app} {args:?}: no usage line or pointer to --help\n{}",
            show(&o)
        );
        // Refused before anything was done.
        assert!(!state.exists(), "{app} {args:?} made the state folder");
    }
}
