//! The `skywire-control` command lines the README documents, run literally: the `sh` block of
//! its skywire-control section, with `/tmp/sky` a scratch folder and `<pk-a>`/`<pk-b>` real
//! keys. Plus every subcommand's `--help`, and wrong flags as usage errors (exit 2).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::{KillOnDrop, bin};

const README_DIR: &str = "/tmp/sky";

fn control() -> PathBuf {
    bin("controlplane", "skywire-control")
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("cp-cli-{}-{tag}", std::process::id()));
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

/// The lines of the first `sh` block of the README's skywire-control section.
fn documented_forms() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("\n## skywire-control (controlplane)\n")
        .expect("README has a skywire-control section");
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
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

/// What clap prints for a usage error.
fn is_usage_error(stderr: &str) -> bool {
    stderr.contains("Usage:") || stderr.starts_with("error:")
}

/// Runs `args` and waits for `marker` on stderr (then kills it) or for its exit; returns
/// stderr so far, and the exit status when it exited.
fn run_until(args: &[String], marker: &str, limit: Duration) -> (String, Option<i32>) {
    let mut child = KillOnDrop(
        Command::new(control())
            .args(args)
            .env("SKYWIRE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let err = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    let mut text = String::new();
    while t.elapsed() < limit {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(l) => {
                text.push_str(&l);
                text.push('\n');
                if l.contains(marker) {
                    return (text, None);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = child.0.wait().unwrap();
                return (text, st.code());
            }
        }
    }
    panic!("{args:?}: neither {marker:?} nor an exit within {limit:?}: {text}");
}

#[test]
fn every_documented_form_works_as_written() {
    let s = Scratch::new("forms");
    let dir = s.0.to_str().unwrap().to_string();
    let key = |name: &str| {
        let out = Command::new(control())
            .arg("--key")
            .arg(s.0.join(name))
            .arg("keygen")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("pk "))
            .unwrap()
            .to_string()
    };
    let (pk_a, pk_b) = (key("a.key"), key("b.key"));
    let forms = documented_forms();
    assert!(forms.len() >= 10, "{forms:?}");
    let mut seen = std::collections::BTreeSet::new();
    for line in &forms {
        let mut words: Vec<String> = line
            .split_whitespace()
            .map(|w| {
                w.replace(README_DIR, &dir)
                    .replace("<pk-a>", &pk_a)
                    .replace("<pk-b>", &pk_b)
            })
            .collect();
        assert_eq!(words.remove(0), "skywire-control", "{line}");
        let sub = words
            .iter()
            .enumerate()
            .find(|(i, w)| !w.starts_with('-') && (*i == 0 || words[i - 1] != "--key"))
            .map(|(_, w)| w.clone());
        if words.iter().any(|w| w == "--help") {
            let o = Command::new(control()).args(&words).output().unwrap();
            let want = match &sub {
                Some(s) => format!("Usage: skywire-control {s}"),
                None => "Usage: skywire-control".into(),
            };
            assert!(
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&want),
                "{line}\n{}",
                show(&o)
            );
            seen.insert(format!("{} --help", sub.unwrap_or_default()));
            continue;
        }
        let sub = sub.unwrap_or_else(|| panic!("{line}: no subcommand"));
        match sub.as_str() {
            "keygen" | "show" => {
                let o = Command::new(control()).args(&words).output().unwrap();
                let out = String::from_utf8_lossy(&o.stdout);
                assert!(o.status.success(), "{line}\n{}", show(&o));
                assert!(
                    out.contains("pk ") && out.contains("address fd73:6b79:"),
                    "{line}\n{}",
                    show(&o)
                );
            }
            "init" => {
                let o = Command::new(control()).args(&words).output().unwrap();
                assert!(o.status.success(), "{line}\n{}", show(&o));
                let last = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string();
                assert!(last.len() >= 64, "{line}: printed {last:?}");
                assert!(s.0.join("r1/control.yaml").exists(), "{line}");
            }
            // It loads the config and then looks for its dataplane (30 s): loaded is enough.
            "run" => {
                let (err, exit) =
                    run_until(&words, "controlplane::run: pk ", Duration::from_secs(10));
                assert!(
                    exit.is_none() && !is_usage_error(&err),
                    "{line}: {exit:?} {err}"
                );
            }
            "messenger" => {
                let (err, exit) = run_until(&words, "messenger ", Duration::from_secs(10));
                assert!(
                    exit.is_none() && !is_usage_error(&err),
                    "{line}: {exit:?} {err}"
                );
            }
            other => panic!("{line}: no rule for {other}"),
        }
        seen.insert(sub);
    }
    for want in ["keygen", "show", "init", "run", "messenger"] {
        assert!(seen.contains(want), "the block has no {want} form");
        assert!(
            seen.contains(&format!("{want} --help")),
            "the block has no {want} --help"
        );
    }
}

#[test]
fn every_subcommand_has_help() {
    let o = Command::new(control()).arg("--help").output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let top = String::from_utf8_lossy(&o.stdout).to_string();
    let commands = &top[top.find("Commands:").expect("a Commands: section")..];
    let subs: Vec<&str> = commands
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .collect();
    assert_eq!(
        subs,
        ["keygen", "show", "messenger", "init", "run"],
        "{top}"
    );
    for sub in subs {
        for flag in ["--help", "-h"] {
            let o = Command::new(control()).args([sub, flag]).output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{sub} {flag}\n{}", show(&o));
            assert!(
                out.contains(&format!("Usage: skywire-control {sub}")),
                "{sub}: {out}"
            );
        }
    }
}

#[test]
fn wrong_flags_are_usage_errors_with_exit_2() {
    let s = Scratch::new("wrong");
    let k = s.0.join("k.key");
    let k = k.to_str().unwrap();
    for (args, says) in [
        (vec!["--bogus", "show"], "unexpected argument '--bogus'"),
        (vec!["show", "--bogus"], "unexpected argument '--bogus'"),
        (
            vec!["--key", k, "keygen", "extra"],
            "unexpected argument 'extra'",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec!["run"], "--config"),
        (vec!["run", "--config"], "a value is required"),
        (
            vec!["run", "--config", "/x", "--listen", "1"],
            "unexpected argument",
        ),
        (vec!["messenger"], "--listen"),
        (
            vec!["messenger", "--listen", "nowhere"],
            "invalid value 'nowhere'",
        ),
        (vec!["init"], "--dir"),
        (
            vec!["init", "--dir", k, "--data-port", "70000"],
            "invalid value '70000'",
        ),
        (
            vec!["init", "--dir", k, "--shards", "x"],
            "invalid value 'x'",
        ),
        (
            vec!["init", "--dir", k, "--neighbor", "x"],
            "unexpected argument '--neighbor'",
        ),
        (vec![], "Usage: skywire-control"),
    ] {
        let o = Command::new(control()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{}", show(&o));
        assert!(err.contains(says), "{args:?}: wants {says:?}\n{}", show(&o));
        // clap's shape: what is wrong, then the usage line or where to look.
        assert!(
            err.contains("Usage: skywire-control") || err.contains("try '--help'"),
            "{args:?}: no usage line or pointer to --help\n{}",
            show(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?}\n{}", show(&o));
        assert!(!Path::new(k).exists(), "{args:?} created the key");
    }
}
