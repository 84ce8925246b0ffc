//! `skywire-control init`: the files it writes, its refusals and errors, and a mesh built from
//! init alone: three namespaces a - b - c, each running `viscript serve` on the catalogue init
//! wrote, a pinging c's overlay address through b.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testbed::*;

fn control() -> std::path::PathBuf {
    bin("controlplane", "skywire-control")
}

fn init(dir: &Path, args: &[&str]) -> Output {
    Command::new(control())
        .arg("init")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The line init printed last on stdout (`pk@endpoint` or `pk`); panics when it failed.
fn line(out: &Output) -> String {
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last().unwrap_or_default().trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// (pk, overlay address) from `skywire-control --key DIR/node.key show`.
fn show(dir: &Path) -> (String, String) {
    let out = Command::new(control())
        .arg("--key")
        .arg(dir.join("node.key"))
        .arg("show")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("pk "), field("address "))
}

#[test]
fn writes_the_files_refuses_to_overwrite_and_keeps_the_key() {
    let dir = scratch(&tag()).join("r");
    let out = init(&dir, &["--listen", "10.9.0.1:7100", "--shards", "1"]);
    let l = line(&out);
    let (pk, _) = show(&dir);
    assert_eq!(l, format!("{pk}@10.9.0.1:7100"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("node.key")), 0o600);
    let err = stderr(&out);
    for f in ["node.key", "node.yaml", "control.yaml", "config.yaml"] {
        assert!(dir.join(f).exists(), "{f} missing");
        assert!(err.contains(&dir.join(f).display().to_string()), "{err}");
    }
    // The generated control.yaml is what `run` reads.
    let c = controlplane::config::Config::load(&dir.join("control.yaml")).unwrap();
    assert_eq!(c.key, dir.join("node.key"));
    let before = std::fs::read_to_string(dir.join("control.yaml")).unwrap();

    // Again without --force: refused, names the files, changes nothing.
    let out = init(&dir, &["--listen", "10.9.0.1:7200"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("control.yaml") && err.contains("config.yaml") && err.contains("--force"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.join("control.yaml")).unwrap(),
        before
    );

    // --force rewrites the files and keeps the key.
    let out = init(&dir, &["--listen", "10.9.0.1:7200", "--force"]);
    assert_eq!(line(&out), format!("{pk}@10.9.0.1:7200"));
    assert!(stderr(&out).contains("kept"), "{}", stderr(&out));
    // --force-new-key replaces it.
    let out = init(&dir, &["--force", "--force-new-key"]);
    let l = line(&out);
    let (pk2, _) = show(&dir);
    assert_ne!(pk2, pk);
    assert_eq!(l, pk2, "0.0.0.0 listen: the key alone");
    assert!(stderr(&out).contains("@HOST:7100"), "{}", stderr(&out));
    assert_eq!(mode(&dir.join("node.key")), 0o600);
}

#[test]
fn an_invalid_key_or_endpoint_says_which() {
    let base = scratch(&tag());
    let good = Command::new(control())
        .arg("--key")
        .arg(base.join("n.key"))
        .arg("keygen")
        .output()
        .unwrap();
    let pk = String::from_utf8_lossy(&good.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pk ").map(str::to_string))
        .unwrap();
    let m = format!("{pk}@10.0.0.9:7200");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--neighbour".into(), "abc@1.2.3.4:7100".into()],
            "--neighbour \"abc@1.2.3.4:7100\": a public key is 64 hex digits".into(),
        ),
        (
            vec!["--neighbour".into(), format!("{pk}@1.2.3.4")],
            format!("--neighbour \"{pk}@1.2.3.4\": an endpoint is IP:PORT"),
        ),
        (
            vec!["--listen".into(), "0.0.0.0".into()],
            "--listen \"0.0.0.0\": an address is IP:PORT".into(),
        ),
        (
            vec!["--messenger".into(), pk.clone()],
            format!("--messenger \"{pk}\": a messenger is PK@IP:PORT"),
        ),
        (
            vec![
                "--messenger".into(),
                m.replace("10.0.0.9", "messenger.example"),
            ],
            "--messenger \"".into(),
        ),
        (
            vec!["--advertise".into(), "0.0.0.0:7100".into()],
            "--advertise \"0.0.0.0:7100\": 0.0.0.0 cannot be dialled".into(),
        ),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let dir = base.join(format!("r{i}"));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = init(&dir, &a);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want.as_str()),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!dir.exists(), "{args:?}: nothing is written");
    }
    // The global --key does not apply: init's key is DIR/node.key.
    let dir = base.join("key");
    let out = Command::new(control())
        .arg("--key")
        .arg(base.join("other.key"))
        .arg("init")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--key is not used"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists() && !base.join("other.key").exists());
    // The same router as its own neighbour.
    let dir = base.join("self");
    let l = line(&init(&dir, &[]));
    let out = init(
        &dir,
        &["--force", "--neighbour", &format!("{l}@10.0.0.1:7100")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("own key"), "{}", stderr(&out));
}

/// viscript on `DIR/config.yaml` in `ns`; returns its socket.
fn serve(ns: &mut Ns, dir: &Path) -> std::path::PathBuf {
    let sock = dir.join("v.sock");
    let vis = bin("viscript", "viscript");
    let cfg = dir.join("config.yaml");
    ns.spawn(
        &[
            vis.to_str().unwrap(),
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ],
        &dir.join("viscript.log"),
    );
    sock
}

fn vis(sock: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("viscript", "viscript"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_routers_from_init_alone() {
    for c in ["ip", "ping"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    // The binaries the catalogues start (init's --bin default: skywire-control's folder).
    bin("dataplane", "skywire-node");
    let t = tag();
    let base = scratch(&t);
    let mut ns = line3_ns(&t);
    let dirs: Vec<_> = ["a", "b", "c"].iter().map(|n| base.join(n)).collect();
    // a and c first: their lines for b.
    let la = line(&init(
        &dirs[0],
        &["--listen", "10.85.1.1:7100", "--shards", "1"],
    ));
    let lc = line(&init(
        &dirs[2],
        &["--listen", "10.85.2.2:7100", "--shards", "1"],
    ));
    assert!(la.ends_with("@10.85.1.1:7100") && lc.ends_with("@10.85.2.2:7100"));
    // b on every address, dialling both.
    let lb = line(&init(
        &dirs[1],
        &["--shards", "1", "--neighbour", &la, "--neighbour", &lc],
    ));
    assert_eq!(lb.len(), 64, "b listens on 0.0.0.0: its key alone ({lb})");
    // a dials b at the address it reaches it on; c only waits for b (key alone).
    let b_for_a = format!("{lb}@10.85.1.2:7100");
    let out = init(
        &dirs[0],
        &[
            "--listen",
            "10.85.1.1:7100",
            "--shards",
            "1",
            "--neighbour",
            &b_for_a,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "no --force: refused");
    line(&init(
        &dirs[0],
        &[
            "--listen",
            "10.85.1.1:7100",
            "--shards",
            "1",
            "--neighbour",
            &b_for_a,
            "--force",
        ],
    ));
    let out = init(
        &dirs[2],
        &[
            "--listen",
            "10.85.2.2:7100",
            "--shards",
            "1",
            "--neighbour",
            &lb,
            "--force",
        ],
    );
    line(&out);
    assert!(
        stderr(&out).contains("waits for it to dial"),
        "{}",
        stderr(&out)
    );
    assert_eq!(show(&dirs[0]).0, la.split('@').next().unwrap(), "key kept");

    let socks: Vec<_> = (0..3).map(|i| serve(&mut ns[i], &dirs[i])).collect();
    // The catalogue as viscript sees it.
    wait_until("viscript a", Duration::from_secs(10), || {
        vis(&socks[0], &["apps"]).contains("skywire-vpn-client")
    });
    let (_, c_addr) = show(&dirs[2]);
    let took = ping_until(&ns[0], &c_addr, Duration::from_secs(60));
    eprintln!("a -> c after {took:?}");
    let list = vis(&socks[1], &["list"]);
    assert!(
        list.contains("skywire-node") && list.contains("skywire-control"),
        "{list}"
    );
    let (_, a_addr) = show(&dirs[0]);
    ping(&ns[2], &a_addr);
    for s in &socks {
        vis(s, &["quit"]);
    }
}

/// The `sh` block of the README's "Run a real router" section.
fn readme_block() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text
        .find("\n## Run a real router\n")
        .expect("README has a 'Run a real router' section");
    let rest = &text[start + 1..];
    let section = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3)];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has an sh block");
    block.lines().map(str::to_string).collect()
}

/// `<name>` in `s` replaced by its value.
fn substitute(s: &str, vars: &std::collections::HashMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("<{k}>"), v);
    }
    assert!(!out.contains('<'), "unknown placeholder in {s:?}");
    out
}

/// Matches an output line of the README (`pre<name>post`) against `out`; learns or checks
/// `name`.
fn expect(pattern: &str, out: &str, vars: &mut std::collections::HashMap<String, String>) {
    let (pre, rest) = pattern.split_once('<').unwrap_or((pattern, ""));
    let (name, post) = rest.split_once('>').unwrap_or(("", rest));
    let got = out
        .lines()
        .find(|l| l.starts_with(pre) && l.ends_with(post) && l.len() > pre.len() + post.len())
        .unwrap_or_else(|| panic!("no line like {pattern:?} in {out:?}"));
    if name.is_empty() {
        return;
    }
    let value = got[pre.len()..got.len() - post.len()].to_string();
    if let Some(v) = vars.get(name) {
        assert_eq!(v, &value, "{name} changed");
    } else {
        vars.insert(name.to_string(), value);
    }
}

#[test]
fn the_readme_two_host_router_block_works_literally() {
    for c in ["ip", "ping"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    bin("dataplane", "skywire-node");
    let lines = readme_block();
    assert!(lines.iter().any(|l| l.contains("skywire-control init")));
    let t = tag();
    let base = scratch(&t);
    let mut ns = [Ns::new(format!("{t}A")), Ns::new(format!("{t}B"))];
    link(
        &ns[0],
        &format!("{t}AB"),
        "192.0.2.1/24",
        &ns[1],
        &format!("{t}BA"),
        "192.0.2.2/24",
    );
    let dirs = [base.join("A"), base.join("B")];
    let mut vars = std::collections::HashMap::new();
    let mut last = String::new();
    let mut socks = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let host = match line.get(..3) {
            Some("A# ") => 0,
            Some("B# ") => 1,
            _ => {
                if !line.trim().is_empty() {
                    expect(line, &last, &mut vars);
                }
                continue;
            }
        };
        let cmd =
            substitute(&line[3..], &vars).replace("/var/lib/skywire", dirs[host].to_str().unwrap());
        let mut words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        match words[0].as_str() {
            "skywire-control" => words[0] = control().display().to_string(),
            "viscript" => words[0] = bin("viscript", "viscript").display().to_string(),
            _ => {}
        }
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        if w.last() == Some(&"&") {
            let log = base.join(format!("line{n}.log"));
            ns[host].spawn(&w[..w.len() - 1], &log);
            socks.push(dirs[host].join("viscript.sock"));
            continue;
        }
        // Daemons and routes take a moment: a failing command is retried (bounded).
        let t0 = std::time::Instant::now();
        let out = loop {
            let out = ns[host].exec(&w);
            if out.status.success() || t0.elapsed() > Duration::from_secs(60) {
                break out;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert!(
            out.status.success(),
            "{line}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if w.get(1) == Some(&"--config") && w.get(3) == Some(&"list") {
            assert!(
                last.contains("skywire-node") && last.contains("skywire-control"),
                "{last}"
            );
        }
    }
    assert!(vars.contains_key("address-b") && socks.len() == 2);
    for s in &socks {
        vis(s, &["quit"]);
    }
}
