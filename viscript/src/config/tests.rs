//! The config loader's tests: accepted files, every error and its position.

use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn file() -> &'static Path {
    Path::new("/etc/vs/config.yaml")
}

fn ok(text: &str) -> Config {
    match Config::parse(text, file()) {
        Ok(c) => c,
        Err(e) => panic!("expected Ok, got:\n{e}"),
    }
}

fn err(text: &str) -> String {
    match Config::parse(text, file()) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in message:\n{msg}");
    }
}

#[test]
fn empty_inputs_are_valid() {
    for text in [
        "",
        "\n",
        "# just a comment\n",
        "apps: {}\n",
        "apps:\n",
        "settings:\napps:\n",
        "---\n",
    ] {
        let c = ok(text);
        assert!(c.apps.is_empty(), "{text:?}");
        assert_eq!(c.settings, Settings::default());
        assert_eq!(c.path, file());
    }
}

#[test]
fn defaults() {
    let s = Settings::default();
    assert_eq!(s.ping_interval, Duration::from_millis(1000));
    assert_eq!(s.ping_failures, 3);
    assert_eq!(s.ready_timeout, Duration::from_secs(10));
    assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    assert_eq!(s.term_grace, Duration::from_secs(2));
    assert_eq!(s.backoff_initial, Duration::from_millis(200));
    assert_eq!(s.backoff_max, Duration::from_secs(30));
    assert_eq!(s.backoff_jitter, 0.2);
    assert_eq!(s.start_limit, 5);
    assert_eq!(s.start_window, Duration::from_secs(60));
    assert_eq!(s.degraded_retry, Duration::from_secs(300));
    assert_eq!(s.log_lines, 2000);
    assert_eq!(s.log_rate, 1000);
    assert_eq!(s.socket, None);

    let c = ok("apps:\n  d:\n    path: bin/d\n    daemon: true\n  t:\n    path: bin/t\n");
    let d = c.app("d").unwrap();
    assert!(d.daemon);
    assert_eq!(d.restart, Restart::OnFailure);
    assert!(d.default_args.is_empty() && d.after.is_empty() && d.env.is_empty());
    assert_eq!(
        (d.desc.as_str(), d.help.as_str(), d.autostart),
        ("", "", false)
    );
    let t = c.app("t").unwrap();
    assert!(!t.daemon);
    assert_eq!(t.restart, Restart::Never);
    assert!(c.app("nope").is_none());
}

#[test]
fn full_example() {
    let c = ok(r#"
settings:
  ping_interval_ms: 500
  ping_failures: 4
  ready_timeout_ms: 1
  shutdown_grace_ms: 2
  term_grace_ms: 3
  backoff_initial_ms: 4
  backoff_max_ms: 5
  backoff_jitter: 0
  start_limit: 6
  start_window_ms: 7
  degraded_retry_ms: 8
  log_lines: 9
  log_rate: 10
  socket: run/vs.sock
apps:
  node:
    path: /usr/bin/node
    default_args: ["Hello World", CaseKept, --x=Y, 'single', "1.10", yes]
    daemon: true
    desc: "text"
    help: |
      [1] first
      [2] second
    autostart: true
    restart: always
    after: [db]
    env: {ZED: last, ALPHA: "1", NUM: 5}
  db:
    path: bin/db
    restart: never
"#);
    let s = &c.settings;
    assert_eq!(s.ping_interval, Duration::from_millis(500));
    assert_eq!(s.ping_failures, 4);
    assert_eq!(s.ready_timeout, Duration::from_millis(1));
    assert_eq!(s.shutdown_grace, Duration::from_millis(2));
    assert_eq!(s.term_grace, Duration::from_millis(3));
    assert_eq!(s.backoff_initial, Duration::from_millis(4));
    assert_eq!(s.backoff_max, Duration::from_millis(5));
    assert_eq!(s.backoff_jitter, 0.0);
    assert_eq!(s.start_limit, 6);
    assert_eq!(s.start_window, Duration::from_millis(7));
    assert_eq!(s.degraded_retry, Duration::from_millis(8));
    assert_eq!(s.log_lines, 9);
    assert_eq!(s.log_rate, 10);
    assert_eq!(s.socket.as_deref(), Some(Path::new("/etc/vs/run/vs.sock")));

    assert_eq!(c.apps.len(), 2);
    assert_eq!(c.apps[0].name, "node");
    assert_eq!(c.apps[1].name, "db");
    let n = &c.apps[0];
    assert_eq!(n.path, PathBuf::from("/usr/bin/node"));
    assert_eq!(
        n.default_args,
        ["Hello World", "CaseKept", "--x=Y", "single", "1.10", "yes"]
    );
    assert!(n.daemon && n.autostart);
    assert_eq!(n.desc, "text");
    assert_eq!(n.help, "[1] first\n[2] second\n");
    assert_eq!(n.restart, Restart::Always);
    assert_eq!(n.after, ["db"]);
    let env: Vec<(&str, &str)> = n
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("ZED", "last"), ("ALPHA", "1"), ("NUM", "5")]);
    assert_eq!(c.apps[1].restart, Restart::Never);
    assert_eq!(c.apps[1].path, PathBuf::from("/etc/vs/bin/db"));
}

#[test]
fn quoting_and_case_preserved() {
    let c = ok(
        "apps:\n  CaseApp:\n    path: Bin/X\n    default_args: [\"Hello World\", \"CaseKept\", \"--x=Y\"]\n    desc: MiXeD\n",
    );
    let a = c.app("CaseApp").unwrap();
    assert_eq!(a.default_args, ["Hello World", "CaseKept", "--x=Y"]);
    assert_eq!(a.desc, "MiXeD");
    assert_eq!(a.path, PathBuf::from("/etc/vs/Bin/X"));
}

#[test]
fn relative_path_resolution() {
    let c = ok("apps:\n  x:\n    path: bin/x\n  y:\n    path: /opt/y\n  z:\n    path: ../z\n");
    assert_eq!(c.app("x").unwrap().path, PathBuf::from("/etc/vs/bin/x"));
    assert_eq!(c.app("y").unwrap().path, PathBuf::from("/opt/y"));
    assert_eq!(c.app("z").unwrap().path, PathBuf::from("/etc/vs/../z"));
    // A bare file name as config path: relative to the current folder.
    let c = Config::parse("apps:\n  x:\n    path: bin/x\n", Path::new("config.yaml")).unwrap();
    assert_eq!(c.apps[0].path, PathBuf::from("bin/x"));
}

#[test]
fn unknown_keys() {
    let m = err("apps:\n  node:\n    path: x\n    dameon: true\n");
    assert_has(
        &m,
        &[
            "/etc/vs/config.yaml:4:5:",
            "unknown field `dameon` in app `node`",
            "did you mean `daemon`",
            "expected one of: path, default_args",
        ],
    );
    let m = err("settings:\n  ping_interval: 5\n");
    assert_has(
        &m,
        &[
            "config.yaml:2:3:",
            "unknown field `ping_interval` in `settings`",
            "ping_interval_ms",
        ],
    );
    let m = err("apps: {}\nbogus: 1\n");
    assert_has(
        &m,
        &[
            "config.yaml:2:1:",
            "unknown field `bogus` at the top level",
            "settings, apps",
        ],
    );
}

#[test]
fn all_collectable_errors_reported_together() {
    let m = err(
        "bogus: 1\nsettings:\n  log_lines: 0\n  start_limit: 0\n  ping_interval_ms: 0\n  backoff_jitter: 1.5\napps:\n  a:\n    path: x\n    after: [b, ghost]\n    colour: red\n  b:\n    path: y\n    after: [a]\n  bad name:\n    path: z\n",
    );
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines.len(), 9, "{m}");
    assert_has(lines[0], &["config.yaml:1:1:", "bogus"]);
    assert_has(lines[1], &[":3:14:", "`log_lines`"]);
    assert_has(lines[2], &[":4:16:", "`start_limit`"]);
    assert_has(lines[3], &[":5:21:", "`ping_interval_ms`"]);
    assert_has(lines[4], &[":6:19:", "`backoff_jitter`", "1.5"]);
    assert_has(
        lines[5],
        &[":8:3:", "dependency cycle", "`a` -> `b` -> `a`"],
    );
    assert_has(lines[6], &[":10:16:", "unknown app `ghost`"]);
    assert_has(lines[7], &[":11:5:", "unknown field `colour` in app `a`"]);
    assert_has(lines[8], &[":15:3:", "invalid app name `bad name`"]);
    let e = Config::parse("settings: {log_lines: 0, start_limit: 0}\n", file()).unwrap_err();
    assert_eq!(e.diagnostics().len(), 2);
}

#[test]
fn wrong_types() {
    let m = err("apps:\n  node:\n    path: x\n    daemon: \"yes please\"\n");
    assert_has(
        &m,
        &["config.yaml:4:13:", "`daemon` in app `node`", "boolean"],
    );
    let m = err("apps:\n  node:\n    path: x\n    default_args: 5\n");
    assert_has(
        &m,
        &["config.yaml:4:19:", "`default_args` in app `node`", "list"],
    );
    let m = err("settings:\n  ping_failures: -1\n");
    assert_has(&m, &["config.yaml:2:18:", "`ping_failures` in `settings`"]);
    let m = err("settings:\n  backoff_jitter: lots\n");
    assert_has(&m, &["config.yaml:2:19:", "`backoff_jitter` in `settings`"]);
    let m = err("apps:\n  node:\n    path: [a]\n");
    assert_has(&m, &["config.yaml:3:", "`path` in app `node`"]);
    let m = err("apps:\n  node:\n    path: x\n    env: [A, B]\n");
    assert_has(&m, &["config.yaml:4:", "`env` in app `node`", "mapping"]);
    let m = err("apps: [a, b]\n");
    assert_has(&m, &["config.yaml:1:", "`apps`", "mapping"]);
    let m = err("just a string\n");
    assert_has(&m, &["config.yaml:1:1:", "top-level", "mapping"]);
    let m = err("apps:\n  node: 5\n");
    assert_has(&m, &["config.yaml:2:", "app `node`", "mapping"]);
    // Strict booleans: YAML 1.1 spellings are rejected.
    let m = err("apps:\n  node:\n    path: x\n    autostart: yes\n");
    assert_has(&m, &["config.yaml:4:16:", "`autostart` in app `node`"]);
}

#[test]
fn duplicate_apps_name_both_lines() {
    let m = err("apps:\n  node:\n    path: x\n  other:\n    path: y\n  node:\n    path: z\n");
    assert_has(
        &m,
        &[
            "config.yaml:6:3:",
            "duplicate app `node`",
            "first defined at line 2, column 3",
        ],
    );
    assert_eq!(m.lines().count(), 1);
}

#[test]
fn other_duplicates() {
    let m = err("apps:\n  node:\n    path: x\n    path: y\n");
    assert_has(
        &m,
        &["config.yaml:4:5:", "duplicate key `path` in app `node`"],
    );
    let m = err("settings:\n  log_rate: 1\n  log_rate: 2\n");
    assert_has(
        &m,
        &["config.yaml:3:3:", "duplicate key `log_rate` in `settings`"],
    );
    let m = err("apps: {}\napps: {}\n");
    assert_has(&m, &["config.yaml:2:1:", "duplicate top-level key `apps`"]);
    let m = err("apps:\n  node:\n    path: x\n    env:\n      A: 1\n      A: 2\n");
    assert_has(
        &m,
        &[
            "config.yaml:6:7:",
            "duplicate key `A` in `env` of app `node`",
        ],
    );
}

#[test]
fn missing_path() {
    let m = err("apps:\n  node:\n    daemon: true\n  empty:\n");
    assert_has(
        &m,
        &["config.yaml:2:3: app `node` is missing required field `path`"],
    );
    assert_has(
        &m,
        &["config.yaml:4:3: app `empty` is missing required field `path`"],
    );
    let m = err("apps:\n  node:\n    path: \"\"\n");
    assert_has(
        &m,
        &[
            "config.yaml:3:11:",
            "`path` of app `node` must not be empty",
        ],
    );
}

#[test]
fn app_names() {
    for bad in ["\"a b\"", "\"x/y\"", "\"ü\"", "\"..\"", "\"\""] {
        let m = err(&format!("apps:\n  {bad}:\n    path: x\n"));
        assert_has(&m, &["config.yaml:2:3:", "app name"]);
    }
    let long = "a".repeat(65);
    let m = err(&format!("apps:\n  {long}:\n    path: x\n"));
    assert_has(&m, &["config.yaml:2:3:", "too long"]);
    let ok_name = format!("{}.-_Z9", "a".repeat(59));
    assert_eq!(
        ok(&format!("apps:\n  {ok_name}:\n    path: x\n")).apps[0].name,
        ok_name
    );
}

#[test]
fn invalid_restart() {
    let m = err("apps:\n  node:\n    path: x\n    restart: sometimes\n");
    assert_has(
        &m,
        &[
            "config.yaml:4:14:",
            "`restart` in app `node`",
            "sometimes",
            "always, on-failure, never",
        ],
    );
}

#[test]
fn after_errors() {
    let m = err("apps:\n  a:\n    path: x\n    after: [web]\n  web1:\n    path: y\n");
    assert_has(
        &m,
        &[
            "config.yaml:4:13:",
            "app `a` lists unknown app `web` in `after`",
            "did you mean `web1`",
        ],
    );
    let m = err("apps:\n  a:\n    path: x\n    after: [a]\n");
    assert_has(&m, &["config.yaml:2:3:", "dependency cycle", "`a` -> `a`"]);
    let m = err(
        "apps:\n  z:\n    path: x\n  a:\n    path: x\n    after: [c]\n  b:\n    path: x\n    after: [a]\n  c:\n    path: x\n    after: [b, z]\n",
    );
    assert_has(&m, &["config.yaml:4:3:", "`a` -> `c` -> `b` -> `a`"]);
    assert_eq!(m.lines().count(), 1, "{m}");
}

#[test]
fn settings_ranges() {
    for (text, needle) in [
        ("backoff_jitter: -0.1", "backoff_jitter"),
        ("backoff_jitter: 1.01", "backoff_jitter"),
        ("backoff_jitter: .nan", "backoff_jitter"),
        ("ping_interval_ms: 0", "ping_interval_ms"),
        ("start_limit: 0", "start_limit"),
        ("log_lines: 0", "log_lines"),
    ] {
        let m = err(&format!("settings:\n  {text}\n"));
        assert_has(&m, &["config.yaml:2:", needle]);
    }
    let c = ok("settings:\n  backoff_jitter: 1\n  socket: /run/v.sock\n");
    assert_eq!(c.settings.backoff_jitter, 1.0);
    assert_eq!(c.settings.socket, Some(PathBuf::from("/run/v.sock")));
}

#[test]
fn env_and_nul_checks() {
    let m = err("apps:\n  a:\n    path: x\n    env: {\"A=B\": 1}\n");
    assert_has(
        &m,
        &["config.yaml:4:11:", "environment variable name `A=B`"],
    );
    let m = err("apps:\n  a:\n    path: \"x\\0y\"\n    default_args: [\"\\0\"]\n");
    assert_has(
        &m,
        &[
            "`path` of app `a` must not contain NUL",
            "`default_args` of app `a`",
        ],
    );
}

#[test]
fn syntax_error_has_position() {
    let m = err("apps:\n  a:\n    path: [x\n");
    assert!(m.starts_with("/etc/vs/config.yaml:"), "{m}");
    let m = err("apps: {}\n---\napps: {}\n");
    assert_has(&m, &["config.yaml:3:1:", "multiple"]);
    let m = err("apps:\n  a:\n    path: x\n   bad: indent\n");
    assert_has(&m, &["config.yaml:4:4: YAML syntax error:"]);
}

#[test]
fn control_chars_are_escaped() {
    let m = err("\"bo\\ngus\": 1\n");
    assert_eq!(m.lines().count(), 1, "{m}");
    assert_has(&m, &["bo\\ngus"]);
}

#[test]
fn start_and_stop_order() {
    let c = ok(
        "apps:\n  web:\n    path: w\n    after: [api, db]\n  api:\n    path: a\n    after: [db]\n  tool:\n    path: t\n  db:\n    path: d\n",
    );
    let names = |v: Vec<&App>| v.into_iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(c.start_order()), ["tool", "db", "api", "web"]);
    assert_eq!(names(c.stop_order()), ["web", "api", "db", "tool"]);
    // Duplicate `after` entries are folded.
    let c = ok("apps:\n  a:\n    path: x\n    after: [b, b]\n  b:\n    path: y\n");
    assert_eq!(c.apps[0].after, ["b"]);
    assert_eq!(names(c.start_order()), ["b", "a"]);
    // A cycle introduced after validation must not panic or drop apps.
    let mut c = c;
    c.apps[1].after.push("a".into());
    assert_eq!(names(c.start_order()), ["a", "b"]);
}

#[test]
fn anchors_and_merge_keys_work() {
    let c = ok(
        "apps:\n  a: &base\n    path: x\n    env: {A: 1}\n  b:\n    <<: *base\n    daemon: true\n",
    );
    let b = c.app("b").unwrap();
    assert_eq!(b.path, PathBuf::from("/etc/vs/x"));
    assert!(b.daemon);
    assert_eq!(b.env, [("A".to_string(), "1".to_string())]);
}

#[test]
fn load_errors() {
    let dir = std::env::temp_dir().join(format!("viscript-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.yaml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert_has(&e.to_string(), &["missing.yaml", "No such file"]);

    let e = Config::load(&dir).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");

    let bin = dir.join("bin.yaml");
    std::fs::write(&bin, b"apps:\n  a\xff:\n").unwrap();
    let e = Config::load(&bin).unwrap_err();
    assert_has(&e.to_string(), &["bin.yaml:2:4:", "UTF-8"]);

    let good = dir.join("good.yaml");
    std::fs::write(&good, "apps:\n  a:\n    path: bin/a\n").unwrap();
    let c = Config::load(&good).unwrap();
    assert_eq!(c.apps[0].path, dir.join("bin/a"));
    assert_eq!(c.path, good);

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apps:\n  a:\n    pth: x\n").unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_has(
        &e.to_string(),
        &[&format!("{}:3:5:", bad.display()), "`pth`"],
    );

    std::fs::remove_dir_all(&dir).unwrap();
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_never_panics() {
    let seeds = [
        "settings:\n  ping_interval_ms: 1000\n  backoff_jitter: 0.2\n  socket: /run/x.sock\napps:\n  node:\n    path: bin/node\n    default_args: [\"a b\", c]\n    daemon: true\n    help: |\n      [1] x\n    restart: on-failure\n    after: [db]\n    env: {A: b}\n  db:\n    path: /bin/db\n",
        "apps:\n  a: &x\n    path: p\n  b:\n    <<: *x\n    after: [a]\n",
        "apps: {a: {path: x, after: [b]}, b: {path: y, after: [a]}}\n",
    ];
    let alphabet: &[&str] = &[
        ":",
        " ",
        "\n",
        "-",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "'",
        "&a",
        "*a",
        "<<",
        "!!str",
        "!x",
        "#",
        "|",
        ">",
        "?",
        ",",
        "\t",
        "apps",
        "settings",
        "path",
        "after",
        "0",
        "-1",
        "1e999",
        "~",
        "\u{feff}",
        "é",
        "\\",
        "%YAML 1.2\n",
        "---",
        "...",
        "  ",
        "\0",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = (0usize, 0usize);
    for round in 0..600 {
        let mut s: String = seeds[round % seeds.len()].to_string();
        for _ in 0..=rng.below(6) {
            let mut at = rng.below(s.len() + 1);
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            match rng.below(3) {
                0 => s.insert_str(at, alphabet[rng.below(alphabet.len())]),
                1 => {
                    let mut end = (at + rng.below(8)).min(s.len());
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.replace_range(at..end, "");
                }
                _ => {
                    let piece = s[at..].chars().take(rng.below(30)).collect::<String>();
                    s.insert_str(at, &piece);
                }
            }
        }
        if round % 7 == 0 {
            // Pure noise.
            s = (0..rng.below(80))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
        }
        match Config::parse(&s, file()) {
            Ok(c) => {
                outcomes.0 += 1;
                let _ = c.start_order();
            }
            Err(e) => {
                outcomes.1 += 1;
                let text = e.to_string();
                assert!(!text.is_empty());
                if let ConfigError::Invalid(d) = &e {
                    assert!(!d.is_empty());
                }
            }
        }
    }
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

#[test]
fn deep_nesting_is_rejected_not_crashing() {
    let deep = format!(
        "apps:\n  a:\n    path: x\n    junk: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let m = err(&deep);
    assert!(m.contains("config.yaml"), "{m}");
}

#[test]
fn changes_name_the_added_removed_changed_and_same_apps() {
    let old = ok("apps:\n  a:\n    path: /bin/a\n  b:\n    path: /bin/b\n  c:\n    path: /bin/c\n");
    let new = ok(
        "settings:\n  ping_interval_ms: 500\napps:\n  c:\n    path: /bin/c\n  b:\n    path: /bin/b\n    autostart: true\n  d:\n    path: /bin/d\n",
    );
    let c = Changes::between(&old, &new);
    assert_eq!(c.added, ["d"]);
    assert_eq!(c.removed, ["a"]);
    assert_eq!(c.changed, ["b"]);
    assert_eq!(c.same, ["c"]);
    assert!(c.settings);
    let none = Changes::between(&old, &old);
    assert!(none.added.is_empty() && none.removed.is_empty() && none.changed.is_empty());
    assert_eq!(none.same, ["a", "b", "c"]);
    assert!(!none.settings);
}
