//! Every reply in one place: each function takes the typed answer ([`crate::reply`]) and
//! produces the [`Reply`] with both its text (for people) and its JSON `data` (for scripts and
//! the GUI), so the two cannot drift apart. The control protocol's envelope is here too.

use crate::command::help_text;
use crate::config::App;
use crate::logbuf::Line;
use crate::reply::{self, AppEntry, AppHelp, Component, Started};
use crate::units::{fmt_bytes, fmt_dur, shell_join};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The answer to a command.
#[derive(Debug)]
pub struct Reply {
    /// Whether the command did what was asked.
    pub ok: bool,
    /// Human-readable text.
    pub text: String,
    /// The same for scripts.
    pub data: Value,
    /// For `logs -f`, `attach` and `start -a`: further lines until the receiver is dropped.
    pub follow: Option<Receiver<String>>,
}

fn data(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Reply {
    /// A successful reply.
    pub fn ok(text: impl Into<String>, data: Value) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
            data,
            follow: None,
        }
    }

    /// A failed reply; its data is `{"error": text}`.
    pub fn err(text: impl Into<String>) -> Reply {
        let text = text.into();
        Reply {
            ok: false,
            data: data(&reply::Error {
                error: text.clone(),
            }),
            text,
            follow: None,
        }
    }

    /// The object the control socket sends: `{"ok", "text", "data", "follow"}`.
    pub fn to_json(&self) -> Value {
        json!({"ok": self.ok, "text": self.text, "data": self.data, "follow": self.follow.is_some()})
    }

    /// The object the console prints with `--json`: `{"ok", "text", "data"}`.
    pub fn to_console_json(&self) -> Value {
        json!({"ok": self.ok, "text": self.text, "data": self.data})
    }
}

/// A failed reply in the protocol's shape, for failures before any supervisor answers.
pub fn error_json(text: impl Into<String>) -> Value {
    let text = text.into();
    json!({"ok": false, "text": text, "data": {"error": text}, "follow": false})
}

/// `apps`: the catalogue of the config at `path`.
pub fn apps(apps: &[App], path: &Path) -> Reply {
    let mut text = String::new();
    let mut list = Vec::new();
    let w = apps.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for a in apps {
        let flags = format!(
            "{}{}",
            if a.daemon { "daemon" } else { "" },
            if a.autostart { " autostart" } else { "" }
        );
        text.push_str(&format!(
            "{:w$}  {}{}\n",
            a.name,
            a.desc.lines().next().unwrap_or(""),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.trim())
            }
        ));
        list.push(data(&AppEntry {
            name: a.name.clone(),
            desc: a.desc.clone(),
            daemon: a.daemon,
            autostart: a.autostart,
            path: a.path.clone(),
            default_args: a.default_args.clone(),
            restart: a.restart.as_str().into(),
            after: a.after.clone(),
        }));
    }
    if apps.is_empty() {
        text = format!("no apps in {}", path.display());
    }
    Reply::ok(text.trim_end().to_string(), Value::Array(list))
}

/// `help`: the command summary.
pub fn help() -> Reply {
    let help = help_text();
    Reply::ok(help.clone(), data(&reply::Help { help }))
}

/// `help APP`.
pub fn app_help(a: &App) -> Reply {
    let text = format!(
        "{}: {}\npath: {}\ndefault args: {:?}\ndaemon: {}  restart: {}  autostart: {}{}\n{}",
        a.name,
        a.desc,
        a.path.display(),
        a.default_args,
        a.daemon,
        a.restart.as_str(),
        a.autostart,
        if a.after.is_empty() {
            String::new()
        } else {
            format!("  after: {}", a.after.join(", "))
        },
        a.help.trim_end()
    );
    Reply::ok(
        text.trim_end().to_string(),
        data(&AppHelp {
            name: a.name.clone(),
            desc: a.desc.clone(),
            help: a.help.clone(),
        }),
    )
}

/// A row of `list` with what only the text shows.
pub struct ListRow {
    /// The row's data.
    pub row: Component,
    /// Exact uptime, for the text.
    pub uptime: Option<Duration>,
    /// The apps it waits for, while `waiting`.
    pub waiting_for: Vec<String>,
}

/// `list`.
pub fn list(rows: &[ListRow]) -> Reply {
    let mut lines = vec![format!(
        "{:>4}  {:<20} {:>7}  {:<9} {:>8} {:>4}  {}",
        "ID", "NAME", "PID", "STATE", "UPTIME", "RST", "ARGS"
    )];
    for r in rows {
        let c = &r.row;
        let mut state = c.state.clone();
        if c.state == "waiting" {
            state = format!("waiting for {}", r.waiting_for.join(","));
        }
        lines.push(format!(
            "{:>4}  {:<20} {:>7}  {:<9} {:>8} {:>4}  {}",
            c.id,
            c.app,
            c.pid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            state,
            r.uptime.map(fmt_dur).unwrap_or_else(|| "-".into()),
            c.restarts,
            shell_join(&c.args)
        ));
    }
    let text = if rows.is_empty() {
        "nothing running; `apps` lists what can be started".to_string()
    } else {
        lines.join("\n")
    };
    Reply::ok(
        text,
        Value::Array(rows.iter().map(|r| data(&r.row)).collect()),
    )
}

/// `start` without waiting: started, or queued behind `waiting_for`.
pub fn started(s: &Started, waiting_for: &[String]) -> Reply {
    Reply::ok(
        match s.pid {
            Some(pid) => format!("started {} as {} (pid {pid})", s.app, s.id),
            None => format!(
                "{} is {}, waiting for {}",
                s.app,
                s.id,
                waiting_for.join(", ")
            ),
        },
        data(&s),
    )
}

/// `start -w` or `restart`: it registered.
pub fn ready(s: &Started) -> Reply {
    Reply::ok(
        format!(
            "started {} as {} (pid {}), registered in {:.1} ms",
            s.app,
            s.id,
            s.pid.unwrap_or(0),
            s.ready_ms.unwrap_or(0.0)
        ),
        data(&s),
    )
}

/// `ping`.
pub fn pong(id: u64, rtt: Duration) -> Reply {
    let rtt_us = rtt.as_secs_f64() * 1e6;
    Reply::ok(
        format!("pong from {id} in {rtt_us:.1} us"),
        data(&reply::Pong { id, rtt_us }),
    )
}

/// `ru`: the component's usage report (counters in the order it sent them).
pub fn usage(id: u64, u: &signal::Usage) -> Reply {
    let mut text = format!(
        "cpu {:.1}%  rss {}  threads {}  uptime {}",
        u.cpu_percent,
        fmt_bytes(u.rss_bytes),
        u.threads,
        fmt_dur(Duration::from_millis(u.uptime_ms))
    );
    for (k, v) in &u.counters {
        text.push_str(&format!("\n  {k} {v}"));
    }
    Reply::ok(
        text,
        data(&reply::Usage {
            id,
            cpu_percent: u.cpu_percent,
            rss_bytes: u.rss_bytes,
            threads: u.threads,
            uptime_ms: u.uptime_ms,
            counters: u.counters.iter().cloned().collect(),
        }),
    )
}

/// `sd` or `kill` of a component that is not running (`was` before, `state` now).
pub fn not_running(id: u64, app: &str, was: &str, state: &str) -> Reply {
    Reply::ok(
        format!("{id} ({app}) is not running ({was})"),
        data(&reply::NotRunning {
            id,
            state: state.into(),
        }),
    )
}

/// `sd` or `kill`: it ended.
pub fn stopped(id: u64, app: &str, exit: &str) -> Reply {
    Reply::ok(
        format!("{id} ({app}) stopped: {exit}"),
        data(&reply::Stopped {
            id,
            exit: exit.into(),
        }),
    )
}

/// `logs`: lines, oldest first.
pub fn logs(id: u64, lines: &[&Line]) -> Reply {
    let levels = lines
        .iter()
        .map(|l| l.severity.name().to_string())
        .collect();
    let lines: Vec<String> = lines.iter().map(|l| l.render()).collect();
    Reply::ok(lines.join("\n"), data(&reply::Logs { id, lines, levels }))
}

/// `attach`.
pub fn attached(id: u64, app: &str) -> Reply {
    Reply::ok(
        format!("attached to {id} ({app}); press Enter to detach"),
        data(&reply::Attached { id }),
    )
}

/// `routes` / `peers`: the component's answer as it sent it.
pub fn inspect(id: u64, text: String) -> Reply {
    Reply::ok(text.clone(), data(&reply::Inspect { id, text }))
}

/// `quit`: `n` components ended, or not all did.
pub fn quit(all_down: bool, n: usize) -> Reply {
    Reply::ok(
        if all_down {
            format!("stopped; {n} components ended")
        } else {
            "stopped; some processes did not exit".into()
        },
        data(&reply::Quit { stopped: all_down }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logbuf::Source;
    use crate::loglevel::Level;

    /// The data objects are exactly what the supervisor sent before the typed replies: these
    /// are the `json!` literals it used.
    #[test]
    fn wire_json_is_unchanged() {
        let s = Started {
            id: 3,
            app: "demo".into(),
            pid: Some(42),
            ready_ms: None,
        };
        assert_eq!(
            started(&s, &[]).data,
            json!({"id": 3, "app": "demo", "pid": 42})
        );
        let r = ready(&Started {
            ready_ms: Some(1.5),
            ..s.clone()
        });
        assert_eq!(
            r.data,
            json!({"id": 3, "app": "demo", "pid": 42, "ready_ms": 1.5})
        );
        assert_eq!(r.text, "started demo as 3 (pid 42), registered in 1.5 ms");
        let waiting = Started { pid: None, ..s };
        assert_eq!(
            started(&waiting, &["a".into(), "b".into()]).text,
            "demo is 3, waiting for a, b"
        );
        assert_eq!(
            pong(3, Duration::from_micros(12)).data,
            json!({"id": 3, "rtt_us": 12.0})
        );
        let u = signal::Usage {
            cpu_percent: 12.5,
            rss_bytes: 2048,
            threads: 2,
            uptime_ms: 1500,
            counters: vec![("z".into(), 1), ("a".into(), 2)],
        };
        let r = usage(3, &u);
        assert_eq!(
            r.data,
            json!({"id": 3, "cpu_percent": 12.5, "rss_bytes": 2048, "threads": 2,
                "uptime_ms": 1500, "counters": {"z": 1, "a": 2}})
        );
        assert_eq!(
            r.text,
            "cpu 12.5%  rss 2.0 KiB  threads 2  uptime 1.5s\n  z 1\n  a 2"
        );
        assert_eq!(Reply::err("nope").data, json!({"error": "nope"}));
        assert_eq!(
            not_running(3, "demo", "backoff", "exited").data,
            json!({"id": 3, "state": "exited"})
        );
        assert_eq!(
            stopped(3, "demo", "exit 0").data,
            json!({"id": 3, "exit": "exit 0"})
        );
        let line = Line {
            at: std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(3_723_004),
            source: Source::Stderr,
            level: None,
            text: "x".into(),
            severity: Level::Error,
        };
        assert_eq!(
            logs(3, &[&line]).data,
            json!({"id": 3, "lines": ["01:02:03.004 err x"], "levels": ["error"]})
        );
        assert_eq!(attached(3, "demo").data, json!({"id": 3}));
        assert_eq!(inspect(3, "t".into()).data, json!({"id": 3, "text": "t"}));
        assert_eq!(quit(true, 2).data, json!({"stopped": true}));
        assert_eq!(help().data, json!({"help": help_text()}));
        let row = Component {
            id: 1,
            app: "demo".into(),
            pid: None,
            state: "waiting".into(),
            args: vec!["a b".into()],
            uptime_ms: None,
            restarts: 2,
            kind: String::new(),
            version: String::new(),
            external: false,
            last_exit: Some("exit 1".into()),
            ping_rtt_us: None,
            heartbeat: None,
            log_suppressed: 0,
        };
        let r = list(&[ListRow {
            row: row.clone(),
            uptime: None,
            waiting_for: vec!["dns".into()],
        }]);
        assert_eq!(
            r.data,
            json!([{
                "id": 1, "app": "demo", "pid": null, "state": "waiting", "args": ["a b"],
                "uptime_ms": null, "restarts": 2,
                "kind": "", "version": "", "external": false,
                "last_exit": "exit 1",
                "ping_rtt_us": null,
                "heartbeat": null,
                "log_suppressed": 0,
            }])
        );
        assert!(
            r.text.ends_with("waiting for dns        -    2  'a b'"),
            "{}",
            r.text
        );
        // The GUI reads back what was sent.
        let back: Vec<Component> = serde_json::from_value(r.data).unwrap();
        assert_eq!(back, [row]);
    }
}
