//! viscript driving real processes through `viscript serve` and one-shot commands.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn id_of(v: &serde_json::Value) -> u64 {
    v["data"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {v}"))
}

#[test]
fn start_ping_ru_sd_kill_restart() {
    let d = Daemon::start("lifecycle", &demo_config(""));
    let apps = d.ok(&["apps"]);
    assert_eq!(apps["data"][0]["name"], "demo");

    let v = d.ok(&["start", "-w", "demo"]);
    let id = id_of(&v);
    assert_eq!(id, 1);
    let pid = v["data"]["pid"].as_u64().unwrap();
    assert!(alive(pid));

    let ping = d.ok(&["ping", "1"]);
    assert!(ping["data"]["rtt_us"].as_f64().unwrap() > 0.0);
    assert!(ping["text"].as_str().unwrap().contains("pong from 1"));

    std::thread::sleep(Duration::from_millis(300));
    let ru = d.ok(&["ru", "1"]);
    assert!(ru["data"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(ru["data"]["threads"].as_u64().unwrap() >= 2);
    assert!(
        ru["data"]["counters"]["ticks"].as_u64().unwrap() >= 1,
        "{ru}"
    );

    // Graceful stop: the demo exits 0 on its own.
    let sd = d.ok(&["sd", "1"]);
    assert!(sd["text"].as_str().unwrap().contains("exit 0"), "{sd}");
    assert!(!alive(pid));
    assert_eq!(d.component(1)["state"], "exited");

    // restart brings the same id back with a new process.
    let r = d.ok(&["restart", "1"]);
    let pid2 = r["data"]["pid"].as_u64().unwrap();
    assert_ne!(pid, pid2);
    assert_eq!(d.component(1)["restarts"], 1);
    assert_eq!(d.component(1)["state"], "ready");

    // restart of a running one.
    let r = d.ok(&["restart", "1"]);
    let pid3 = r["data"]["pid"].as_u64().unwrap();
    assert!(!alive(pid2));
    assert!(alive(pid3));

    let k = d.ok(&["kill", "1"]);
    assert!(k["text"].as_str().unwrap().contains("signal 9"), "{k}");
    assert!(!alive(pid3));
    // Killed on request: not restarted.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.component(1)["state"], "exited");

    // Ids are never reused.
    assert_eq!(id_of(&d.ok(&["start", "-w", "demo"])), 2);
    assert!(d.quit().success());
}

#[test]
fn arguments_arrive_exactly_as_typed() {
    let d = Daemon::start("args", &demo_config("    default_args: [\"--default\"]\n"));
    let v = d.ok(&[
        "start",
        "-w",
        "demo",
        "Hello World",
        "CaseKept",
        "it's",
        "--x=Y",
        "",
    ]);
    let id = id_of(&v);
    let logs = d.logs(id);
    assert!(
        logs.contains(r#"signal-demo args: ["Hello World", "CaseKept", "it's", "--x=Y", ""]"#),
        "{logs}"
    );
    // With no arguments, default_args apply.
    let id2 = id_of(&d.ok(&["start", "-w", "demo"]));
    assert!(d.logs(id2).contains(r#"signal-demo args: ["--default"]"#));
}

#[test]
fn headless_console_works_from_a_pipe_and_stops_children_at_eof() {
    let s = Scratch::new("headless");
    let cfg = s.write("config.yaml", &demo_config(""));
    let mut child = std::process::Command::new(viscript_bin())
        .arg("--headless")
        .arg("--config")
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "apps\nhelp demo\ns -w demo 'Two Words'\nla\nping 1\nbogus\nping 99"
        )
        .unwrap();
        // EOF here: viscript must stop the demo and exit.
    }
    let status =
        wait_timeout(&mut child, Duration::from_secs(15)).expect("headless did not exit at EOF");
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("demo  the demo"), "{stdout}");
    assert!(stdout.contains("demo help text"), "{stdout}");
    assert!(stdout.contains("started demo as 1"), "{stdout}");
    assert!(stdout.contains("'Two Words'"), "{stdout}");
    assert!(stdout.contains("pong from 1"), "{stdout}");
    assert!(stderr.contains("unknown command \"bogus\""), "{stderr}");
    assert!(stderr.contains("no component with id 99"), "{stderr}");
    let pid: u64 = stdout
        .lines()
        .find_map(|l| l.split("(pid ").nth(1))
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(!alive(pid), "child {pid} survived the console");
}

#[test]
fn crash_is_seen_and_restarted_with_backoff() {
    let d = Daemon::start(
        "crash",
        &demo_config("    default_args: [\"--crash-after\", \"0.3\"]\n"),
    );
    let id = id_of(&d.ok(&["start", "-w", "demo"]));
    let c = d.wait_for(id, "two restarts", Duration::from_secs(15), |c| {
        c["restarts"].as_u64() >= Some(2)
    });
    assert_eq!(c["id"], id, "a restart keeps the id");
    let logs = d.logs(id);
    // The panic message never went through the ring, only to stderr: still captured.
    assert!(logs.contains("crashing as asked"), "{logs}");
    assert!(logs.contains("exit 101"), "{logs}");
    assert!(logs.contains("restarting in"), "{logs}");
}

#[test]
fn crash_loop_moves_to_degraded() {
    let d = Daemon::start(
        "loop",
        &demo_config("    default_args: [\"--crash-after\", \"0\"]\n"),
    );
    let id = id_of(&d.ok(&["start", "demo"]));
    let c = d.wait_for(id, "degraded", Duration::from_secs(20), |c| {
        c["state"] == "degraded"
    });
    let restarts = c["restarts"].as_u64().unwrap();
    // start_limit 4: the 4th start in the window trips it.
    assert_eq!(restarts, 3, "{c}");
    std::thread::sleep(Duration::from_millis(1500));
    let c = d.component(id);
    assert_eq!(c["state"], "degraded");
    assert_eq!(
        c["restarts"].as_u64().unwrap(),
        restarts,
        "no restarts while degraded (retry is 60 s away)"
    );
    assert!(d.logs(id).contains("degraded: 4 starts"));
    // An operator restart clears it.
    let (_, v) = d.json(&["sd", &id.to_string()]);
    assert!(v["text"].as_str().unwrap().contains("not running"), "{v}");
    assert_eq!(d.component(id)["state"], "exited");
}

#[test]
fn client_ignoring_shutdown_is_killed_at_the_deadline() {
    let d = Daemon::start(
        "ignore",
        &demo_config("    default_args: [\"--ignore-shutdown\"]\n"),
    );
    let id = id_of(&d.ok(&["start", "-w", "demo"]));
    let t = Instant::now();
    let v = d.ok(&["sd", &id.to_string()]);
    let took = t.elapsed();
    assert!(v["text"].as_str().unwrap().contains("signal 15"), "{v}");
    assert!(
        took >= Duration::from_millis(450),
        "SIGTERM came before the 500 ms grace: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let logs = d.logs(id);
    assert!(logs.contains("ignoring shutdown"), "{logs}");
    assert!(logs.contains("sent SIGTERM"), "{logs}");
}

#[test]
fn app_that_never_registers_is_restarted() {
    let d = Daemon::start(
        "noreg",
        &demo_config("    default_args: [\"--register-after\", \"30\"]\n"),
    );
    let id = id_of(&d.ok(&["start", "demo"]));
    d.wait_for(id, "a restart", Duration::from_secs(10), |c| {
        c["restarts"].as_u64() >= Some(1)
    });
    assert!(d.logs(id).contains("did not register within 2.0s"));
    let (ok, v) = d.json(&["ping", &id.to_string()]);
    assert!(!ok);
    let text = v["text"].as_str().unwrap_or("");
    // Between attempts it is starting, being killed, or waiting out its backoff.
    assert!(
        ["has not registered yet", "is backoff", "is stopping"]
            .iter()
            .any(|w| text.contains(w)),
        "{v}"
    );
}

#[test]
fn sigkill_of_viscript_leaves_no_child_behind() {
    let mut d = Daemon::start("sigkill", &demo_config(""));
    let p1 = d.ok(&["start", "-w", "demo"])["data"]["pid"]
        .as_u64()
        .unwrap();
    let p2 = d.ok(&["start", "-w", "demo", "--ignore-shutdown"])["data"]["pid"]
        .as_u64()
        .unwrap();
    assert!(alive(p1) && alive(p2));
    d.kill9();
    let t = Instant::now();
    while alive(p1) || alive(p2) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "children outlived viscript"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn after_starts_dependencies_first() {
    let extra = format!(
        "  top:\n    path: {}\n    daemon: true\n    after: [demo]\n",
        demo_bin().display()
    );
    let d = Daemon::start("after", &demo_config(&extra));
    let v = d.ok(&["start", "-w", "top"]);
    let list = d.list();
    let demo = list
        .iter()
        .find(|c| c["app"] == "demo")
        .expect("dependency started");
    assert_eq!(demo["state"], "ready");
    assert!(demo["id"].as_u64() < v["data"]["id"].as_u64());
    assert!(d.quit().success());
}

#[test]
fn autostart_and_quit_stops_everything() {
    let cfg = demo_config("    autostart: true\n");
    let d = Daemon::start("autostart", &cfg);
    let c = d.wait_for(1, "autostarted demo", Duration::from_secs(10), |c| {
        c["state"] == "ready"
    });
    let pid = c["pid"].as_u64().unwrap();
    assert!(d.quit().success());
    assert!(!alive(pid));
}

#[test]
fn process_started_elsewhere_can_attach() {
    let d = Daemon::start("attach", &demo_config(""));
    let mut ext = std::process::Command::new(demo_bin())
        .args(["--attach", path_str(&d.socket), "--name", "outside"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = d.wait_for(1, "attached client", Duration::from_secs(10), |c| {
        c["state"] == "ready"
    });
    assert_eq!(c["app"], "outside");
    assert_eq!(c["external"], true);
    assert_eq!(c["pid"].as_u64(), Some(ext.id() as u64));
    d.ok(&["ping", "1"]);
    let v = d.ok(&["sd", "1"]);
    assert!(v["text"].as_str().unwrap().contains("stopped"), "{v}");
    let st = wait_timeout(&mut ext, Duration::from_secs(5)).expect("attached demo did not exit");
    assert!(st.success());
}

#[test]
fn errors_say_what_to_do() {
    let d = Daemon::start(
        "errors",
        &demo_config("    default_args: [\"--register-after\", \"1\"]\n"),
    );
    let (ok, v) = d.json(&["ping", "7"]);
    assert!(!ok);
    assert!(v["text"].as_str().unwrap().contains("`list`"), "{v}");
    let (ok, v) = d.json(&["start", "nosuch"]);
    assert!(!ok);
    assert!(v["text"].as_str().unwrap().contains("try `apps`"), "{v}");
    d.ok(&["start", "demo"]);
    let (ok, v) = d.json(&["ping", "1"]);
    assert!(!ok);
    assert!(
        v["text"].as_str().unwrap().contains("not registered yet"),
        "{v}"
    );
    let out = d.run(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command"));
    // Socket is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Output into a pipe nobody reads (`viscript list | head -0`): quiet, status of the command.
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(viscript_bin())
        .args(["--socket", path_str(&d.socket), "list"])
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // One-shot against nothing.
    let out = std::process::Command::new(viscript_bin())
        .args(["--socket", "/nonexistent/x.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `viscript serve` running?"));
}

#[test]
fn logs_follow_streams_new_lines() {
    let d = Daemon::start(
        "follow",
        &demo_config("    default_args: [\"--log-every\", \"50\"]\n"),
    );
    d.ok(&["start", "-w", "demo"]);
    let mut child = std::process::Command::new(viscript_bin())
        .args([
            "--socket",
            path_str(&d.socket),
            "logs",
            "1",
            "-n",
            "0",
            "-f",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("tick at"))
            .take(3)
            .count()
    });
    let t = Instant::now();
    while !reader.is_finished() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reader.join().unwrap(), 3);
}

#[test]
fn bad_configs_name_file_line_and_column() {
    let s = Scratch::new("badcfg");
    let cases = [
        (
            "apps:\n  node:\n    path: x\n    dameon: true\n",
            "config.yaml:4:5",
            "dameon",
        ),
        (
            "apps:\n  node:\n    path: x\n    daemon: \"yes please\"\n",
            "config.yaml:4:13",
            "daemon",
        ),
        (
            "apps:\n  node:\n    path: x\n  node:\n    path: y\n",
            "config.yaml:4:3",
            "duplicate",
        ),
        (
            "apps:\n  a:\n    path: x\n    after: [b]\n",
            "config.yaml:4",
            "b",
        ),
    ];
    for (text, loc, word) in cases {
        let cfg = s.write("config.yaml", text);
        let out = std::process::Command::new(viscript_bin())
            .args(["--headless", "--config", path_str(&cfg)])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.contains(loc) && err.contains(word),
            "{text:?} gave {err}"
        );
    }
    let out = std::process::Command::new(viscript_bin())
        .args(["--headless", "--config", "/nonexistent/config.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yaml"));
}

#[test]
fn hung_daemon_is_killed_and_restarted() {
    let d = Daemon::start(
        "hung",
        &demo_config("    default_args: [\"--freeze-after\", \"0.3\"]\n"),
    );
    let v = d.ok(&["start", "-w", "demo"]);
    let id = id_of(&v);
    let pid = v["data"]["pid"].as_u64().unwrap();
    // Pings every 200 ms, 3 missed = hung: killed and restarted well within 5 s.
    let c = d.wait_for(id, "restart after hang", Duration::from_secs(8), |c| {
        c["restarts"].as_u64() >= Some(1)
    });
    assert_ne!(c["pid"].as_u64(), Some(pid));
    assert!(!alive(pid));
    let logs = d.logs(id);
    assert!(logs.contains("missed 3 pings"), "{logs}");
}

#[test]
fn quit_stops_dependents_before_their_dependencies() {
    let s = Scratch::new("order");
    let mark = s.dir.join("marks");
    let m = path_str(&mark);
    let extra = format!(
        "    default_args: [\"--mark\", \"{m}\", \"--name\", \"base\"]\n  top:\n    path: {}\n    daemon: true\n    after: [demo]\n    default_args: [\"--mark\", \"{m}\", \"--name\", \"top\"]\n",
        demo_bin().display()
    );
    let d = Daemon::start("order", &demo_config(&extra));
    d.ok(&["start", "-w", "top"]);
    assert!(d.quit().success());
    let marks = std::fs::read_to_string(&mark).unwrap();
    assert_eq!(marks, "top shutdown\nbase shutdown\n");
}

#[test]
fn the_repository_config_yaml_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.yaml");
    let cfg = viscript::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    for app in [
        "signal-demo",
        "skywire-node",
        "skywire-control",
        "messenger",
        "skywire-socks-server",
        "skywire-socks-client",
    ] {
        assert!(cfg.app(app).is_some(), "{app} missing from config.yaml");
    }
}

#[test]
fn logs_level_keeps_the_severe_lines() {
    let d = Daemon::start(
        "level",
        &demo_config("    default_args: [\"--crash-after\", \"0.3\", \"--log-every\", \"50\"]\n"),
    );
    let id = id_of(&d.ok(&["start", "-w", "demo"]));
    let sid = id.to_string();
    d.wait_for(id, "a restart", Duration::from_secs(10), |c| {
        c["restarts"].as_u64() >= Some(1)
    });
    let lines = |level: &str| -> (Vec<String>, Vec<String>) {
        let v = d.ok(&["logs", &sid, "-n", "500", "--level", level]);
        let get = |k: &str| -> Vec<String> {
            v["data"][k]
                .as_array()
                .unwrap_or_else(|| panic!("no {k} in {v}"))
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect()
        };
        (get("lines"), get("levels"))
    };
    // The panic goes to stderr as plain lines: error. Ring ticks and stdout are info.
    let (errors, levels) = lines("error");
    assert!(
        errors.iter().any(|l| l.contains("crashing as asked")),
        "{errors:?}"
    );
    assert!(!errors.iter().any(|l| l.contains("tick at")), "{errors:?}");
    assert!(
        !errors.iter().any(|l| l.contains("registered")),
        "{errors:?}"
    );
    assert!(levels.iter().all(|l| l == "error"), "{levels:?}");
    assert_eq!(errors.len(), levels.len());
    let (warn, _) = lines("WARN");
    assert!(!warn.iter().any(|l| l.contains("tick at")), "{warn:?}");
    let (info, levels) = lines("info");
    assert!(info.iter().any(|l| l.contains("tick at")), "{info:?}");
    assert!(
        info.iter().any(|l| l.contains("signal-demo: registered")),
        "{info:?}"
    );
    assert!(
        info.iter().any(|l| l.contains("crashing as asked")),
        "{info:?}"
    );
    assert!(levels.iter().any(|l| l == "info") && levels.iter().any(|l| l == "error"));
    let all = d.logs(id);
    assert!(all.lines().count() >= info.len());
    // The option's place does not matter, and -n counts the lines that pass.
    let v = d.ok(&["logs", "--level", "error", &sid, "-n", "1"]);
    assert_eq!(v["data"]["lines"].as_array().unwrap().len(), 1, "{v}");
    let (ok, v) = d.json(&["logs", &sid, "--level", "loud"]);
    assert!(!ok);
    assert!(
        v["text"].as_str().unwrap().contains("error, warn, info"),
        "{v}"
    );

    // Following at a level streams only those lines.
    let mut child = std::process::Command::new(viscript_bin())
        .args(["logs", &sid, "-f", "--socket", path_str(&d.socket)])
        .args(["-n", "0", "--level", "error"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            seen.push(l);
            if seen
                .iter()
                .filter(|l| l.contains("crashing as asked"))
                .count()
                >= 2
            {
                break;
            }
        }
        seen
    });
    let t = Instant::now();
    while !reader.is_finished() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap();
    assert!(
        seen.iter()
            .filter(|l| l.contains("crashing as asked"))
            .count()
            >= 2,
        "{seen:?}"
    );
    assert!(!seen.iter().any(|l| l.contains("tick at")), "{seen:?}");
}

#[test]
fn quit_is_answered_before_the_daemon_exits() {
    // The supervisor answers quit as its last act; the daemon must not exit before the
    // connection has written that answer (it used to, now and then, under load).
    for round in 0..3 {
        let d = Daemon::start(&format!("quitreply{round}"), &demo_config(""));
        d.ok(&["start", "-w", "demo"]);
        let out = d.run(&["quit"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("stopped; 1 components ended"), "{text}");
        assert!(d.quit().success());
    }
}

/// The catalogue for the reload test: `keep`, `change` (with `change_args`) and `manual` (not
/// autostarted), plus the `more` YAML; every app runs the demo.
fn reload_config(change_args: &str, more: &str) -> String {
    let demo = demo_bin();
    let app = |name: &str, extra: &str| {
        format!(
            "  {name}:\n    path: {}\n    daemon: true\n{extra}",
            demo.display()
        )
    };
    format!(
        "{FAST_SETTINGS}apps:\n{}{}{}{more}",
        app("keep", "    autostart: true\n"),
        app(
            "change",
            &format!("    autostart: true\n    default_args: [{change_args}]\n")
        ),
        app("manual", ""),
    )
}

fn pid_of(d: &Daemon, id: u64) -> u64 {
    d.component(id)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{id} has no pid: {}", d.component(id)))
}

/// `reload` (and SIGHUP to serve): new autostart apps started, removed ones stopped, changed
/// ones restarted with their new entry, the others untouched (same ids and processes); a
/// broken file changes nothing and says where it is broken.
#[test]
fn reload_applies_what_changed_and_a_broken_file_changes_nothing() {
    let demo = demo_bin();
    let gone = format!(
        "  gone:\n    path: {}\n    daemon: true\n    autostart: true\n",
        demo.display()
    );
    let (d, lines) = Daemon::start_logged("reload", &reload_config("\"--a\"", &gone), &[]);
    let ready = |id: u64| {
        d.wait_for(id, "ready", Duration::from_secs(10), |c| {
            c["state"] == "ready"
        });
    };
    // Autostart in file order: keep 1, change 2, gone 3; manual started by hand with its own
    // arguments as 4.
    for id in 1..=3 {
        ready(id);
    }
    assert_eq!(d.component(2)["args"], serde_json::json!(["--a"]));
    let manual = id_of(&d.ok(&["start", "-w", "manual", "Own Arg"]));
    assert_eq!(manual, 4);
    let (keep_pid, change_pid, manual_pid) = (pid_of(&d, 1), pid_of(&d, 2), pid_of(&d, 4));

    // gone removed, change's arguments changed, fresh added.
    let fresh = format!(
        "  fresh:\n    path: {}\n    daemon: true\n    autostart: true\n",
        demo.display()
    );
    std::fs::write(&d.config, reload_config("\"--b\"", &fresh)).unwrap();
    let out = d.run(&["reload"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reload: {text}");
    for want in [
        "started: fresh (id 5)",
        "stopped: gone (id 3)",
        "restarted: change (id 2)",
        "unchanged: keep, manual",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    ready(5);
    d.wait_for(3, "gone stopped", Duration::from_secs(10), |c| {
        c["state"] == "exited"
    });
    let c = d.wait_for(2, "change restarted", Duration::from_secs(10), |c| {
        c["state"] == "ready" && c["pid"].as_u64() != Some(change_pid)
    });
    assert_eq!(c["args"], serde_json::json!(["--b"]), "{c}");
    assert_eq!(pid_of(&d, 1), keep_pid, "keep was touched");
    assert_eq!(pid_of(&d, 4), manual_pid, "manual was touched");
    assert_eq!(d.component(4)["args"], serde_json::json!(["Own Arg"]));

    // A broken file: refused with its position, nothing stops or starts.
    let broken = reload_config("\"--c\"", "  fresh:\n    path: /x\n    colour: blue\n");
    std::fs::write(&d.config, &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("colour")).unwrap() + 1;
    let out = d.run(&["reload"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken file reloaded: {text}");
    assert!(text.contains("the running config stays"), "{text}");
    assert!(
        text.contains(&format!("config.yaml:{line}:5: ")),
        "no line {line}, column 5 in:\n{text}"
    );
    for (id, pid) in [(1, keep_pid), (4, manual_pid)] {
        assert_eq!(pid_of(&d, id), pid, "{id} touched by a refused reload");
    }
    assert_eq!(d.component(5)["state"], "ready");
    assert_eq!(d.component(2)["args"], serde_json::json!(["--b"]));

    // SIGHUP to serve reloads: fresh removed again is stopped, the daemon lives on.
    std::fs::write(&d.config, reload_config("\"--b\"", "")).unwrap();
    let daemon = rustix::process::Pid::from_raw(d.pid() as i32).unwrap();
    rustix::process::kill_process(daemon, rustix::process::Signal::HUP).unwrap();
    d.wait_for(5, "fresh stopped by SIGHUP", Duration::from_secs(10), |c| {
        c["state"] == "exited"
    });
    let said = lines
        .try_iter()
        .chain(lines.recv_timeout(Duration::from_secs(5)))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(said.contains("viscript: SIGHUP: reloaded"), "{said}");
    assert_eq!(pid_of(&d, 1), keep_pid);
    assert!(d.quit().success());
}
