//! The command lines the README documents, run literally: the `sh` block of its viscript
//! section, with `config.yaml` and `/tmp/viscript.sock` pointed at a scratch folder. Every
//! daemon form (`... &`) is started in turn and every console line is run against it; the
//! headless, GUI and `--help` forms run once each.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use viscript::command::{COMMANDS, tokenize};

const README_CONFIG: &str = "config.yaml";
const README_SOCKET: &str = "/tmp/viscript.sock";

/// The viscript section of the README.
fn readme_section() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("\n## viscript\n")
        .expect("README has a viscript section");
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_string()
}

/// The lines of the section's `sh` block.
fn documented_forms() -> Vec<String> {
    let section = readme_section();
    let start = section.find("```sh\n").expect("a ```sh block of forms") + 6;
    let end = section[start..].find("```").unwrap() + start;
    section[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Kills the daemon if the test ends early.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[derive(Debug, PartialEq)]
enum Kind {
    Daemon,
    Console,
    Headless,
    Gui,
    Help,
}

/// Options that take a value, to find the subcommand word.
const WITH_VALUE: &[&str] = &[
    "--config",
    "-c",
    "--socket",
    "-s",
    "--refresh-ms",
    "--metrics",
];

/// The arguments after `viscript` (placeholders replaced) and what kind of form it is.
fn form(line: &str, config: &Path, socket: &Path) -> (Vec<String>, Kind) {
    let mut words = tokenize(line).unwrap();
    assert_eq!(words.remove(0), "viscript", "{line}");
    let daemon = words.last().map(String::as_str) == Some("&");
    if daemon {
        words.pop();
    }
    for w in &mut words {
        if w == README_CONFIG {
            *w = path_str(config).to_string();
        } else if w == README_SOCKET {
            *w = path_str(socket).to_string();
        }
    }
    let mut word = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if WITH_VALUE.contains(&w) {
            i += 2;
            continue;
        }
        if !w.starts_with('-') {
            word = Some(w);
            break;
        }
        i += 1;
    }
    let kind = if words.iter().any(|w| w == "--help") {
        Kind::Help
    } else if daemon {
        assert_eq!(
            word,
            Some("serve"),
            "{line}: only the daemon runs in the background"
        );
        Kind::Daemon
    } else if words.iter().any(|w| w == "--headless") || word == Some("headless") {
        Kind::Headless
    } else if word.is_none() || word == Some("gui") {
        Kind::Gui
    } else {
        Kind::Console
    };
    (words, kind)
}

fn run(args: &[String], stdin: &str) -> Output {
    let mut child = Command::new(viscript_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(stdin.as_bytes()).unwrap();
    }
    let st = wait_timeout(&mut child, Duration::from_secs(20));
    if st.is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The README's demo app under its name there.
fn readme_config() -> String {
    format!(
        "{FAST_SETTINGS}apps:\n  signal-demo:\n    path: {}\n    daemon: true\n    desc: the demo\n",
        demo_bin().display()
    )
}

#[test]
fn every_documented_form_works_as_written() {
    let s = Scratch::new("forms");
    let config = s.write("config.yaml", &readme_config());
    let socket = s.dir.join("viscript.sock");
    let forms: Vec<(String, Vec<String>, Kind)> = documented_forms()
        .into_iter()
        .map(|l| {
            let (args, kind) = form(&l, &config, &socket);
            (l, args, kind)
        })
        .collect();
    let of = |k: Kind| -> Vec<&(String, Vec<String>, Kind)> {
        forms.iter().filter(|f| f.2 == k).collect()
    };
    let daemons = of(Kind::Daemon);
    let console = of(Kind::Console);
    assert!(daemons.len() >= 3 && console.len() >= 5, "{forms:?}");
    assert!(
        console.last().unwrap().1.last().map(String::as_str) == Some("quit"),
        "the console lines end with quit"
    );
    let (quit, before_quit) = console.split_last().unwrap();
    for (line, args, _) in &daemons {
        let mut d = Guard(
            Command::new(viscript_bin())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while !socket.exists() {
            if let Ok(Some(st)) = d.0.try_wait() {
                panic!("{line}: exited {st}");
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{line}: no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        for (cline, cargs, _) in before_quit {
            let o = run(cargs, "");
            assert!(o.status.success(), "{line}\n  then {cline}\n{}", show(&o));
            if cargs.iter().any(|a| a == "--json") {
                let out = String::from_utf8_lossy(&o.stdout);
                let first = out.lines().next().unwrap_or("");
                assert!(
                    serde_json::from_str::<serde_json::Value>(first).is_ok(),
                    "{cline}: not JSON: {out}"
                );
            }
        }
        // What the start lines typed arrived at the apps unchanged (1: "Hello World", 2: the
        // --log-every one).
        for (id, want) in [
            (1, r#"signal-demo args: ["Hello World"]"#),
            (2, r#"signal-demo args: ["--log-every", "500"]"#),
        ] {
            let t = Instant::now();
            loop {
                let args = [
                    "--socket",
                    path_str(&socket),
                    "logs",
                    &id.to_string(),
                    "-n",
                    "500",
                ];
                let o = run(&args.map(String::from), "");
                let logs = String::from_utf8_lossy(&o.stdout);
                if logs.contains(want) {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(5), "{line}: {id}: {logs}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let o = run(&quit.1, "");
        assert!(
            o.status.success(),
            "{line}\n  then {}\n{}",
            quit.0,
            show(&o)
        );
        let st = wait_timeout(&mut d.0, Duration::from_secs(15));
        assert!(st.is_some_and(|s| s.success()), "{line}: did not quit");
        assert!(!socket.exists(), "{line}: socket left behind");
    }
    for (line, args, _) in of(Kind::Headless) {
        let o = run(args, "apps\nla\n");
        assert!(o.status.success(), "{line}\n{}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("signal-demo"), "{line}\n{}", show(&o));
        if args.contains(&"--json".to_string()) {
            let first = out.lines().next().unwrap_or("");
            assert!(
                serde_json::from_str::<serde_json::Value>(first).is_ok(),
                "{line}: {out}"
            );
        }
    }
    // Without a terminal the GUI forms get as far as asking for one (they parse; the GUI
    // itself runs in tmux in gui_tmux.rs).
    let gui = of(Kind::Gui);
    assert!(gui.len() >= 3);
    for (line, args, _) in gui {
        let o = run(args, "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{line}\n{}", show(&o));
        assert!(err.contains("needs a terminal"), "{line}\n{}", show(&o));
    }
    for (line, args, _) in of(Kind::Help) {
        let o = run(args, "");
        assert!(o.status.success(), "{line}\n{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage: viscript"),
            "{line}"
        );
    }
}

#[test]
fn every_subcommand_has_help_from_the_command_table() {
    let o = run(&["--help".to_string()], "");
    assert!(o.status.success());
    let top = String::from_utf8_lossy(&o.stdout).to_string();
    let commands = &top[top.find("Commands:").expect("a Commands: section")..];
    for m in ["serve", "gui", "headless"] {
        assert!(commands.contains(&format!("\n  {m} ")), "{m}: {top}");
        let o = run(&[m.to_string(), "--help".to_string()], "");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{m}");
        assert!(out.contains(&format!("Usage: viscript {m}")), "{out}");
        assert!(out.contains("--config"), "{out}");
    }
    for c in COMMANDS {
        assert!(
            commands.contains(&format!("\n  {} ", c.name)),
            "{}: {top}",
            c.name
        );
        let names = std::iter::once(c.name).chain(c.short);
        for name in names {
            let o = run(&[name.to_string(), "--help".to_string()], "");
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{name}: {}", show(&o));
            for word in c.help.split_whitespace() {
                assert!(out.contains(word), "{name} --help lacks {word:?}: {out}");
            }
            assert!(out.contains(c.args), "{name}: {out}");
        }
    }
    // An unknown command says what to try, without asking the daemon.
    let o = run(&["frobnicate".to_string()], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("unknown command \"frobnicate\"") && err.contains("viscript --help"),
        "{err}"
    );
}

#[test]
fn readme_command_table_lists_every_command() {
    let section = readme_section();
    for c in COMMANDS {
        let mut cell = format!("| `{}", c.name);
        if let Some(s) = c.short {
            cell.push_str(&format!("\\|{s}"));
        }
        if !c.args.is_empty() {
            cell.push(' ');
            cell.push_str(c.args);
        }
        cell.push_str("` |");
        assert!(section.contains(&cell), "README lacks {cell}");
    }
}
