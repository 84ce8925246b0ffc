//! `viscript serve --metrics IP:PORT`: the components in the Prometheus text exposition format
//! (version 0.0.4) at `GET /metrics`.
//!
//! The HTTP side is [`netbase::metrics_http`] (bounded connections, request head and time;
//! 200/404/405/400/413/503, `Connection: close`).
//!
//! The numbers come from the supervisor's `list` (asked with [`Handle::call_within`], so a busy
//! supervisor makes a scrape fail, never the other way round) and from `/proc/PID/stat` of each
//! component's main process (CPU time and resident set: two numbers, so no `procfs` crate).

use crate::command::Command;
use crate::lifecycle::State;
use crate::reply::Component;
use crate::supervisor::Handle;
use netbase::metrics_http::{self, Stats};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use netbase::metrics_http::{MAX_CONNECTIONS, MAX_REQUEST, REQUEST_TIMEOUT};

/// How long a scrape waits for the supervisor's `list`.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` until it fails; never returns otherwise.
pub fn serve(listener: TcpListener, handle: Handle) {
    metrics_http::serve(listener, move |stats| {
        snapshot(&handle).map(|components| render(&components, stats, read_usage))
    });
}

fn snapshot(h: &Handle) -> Result<Vec<Component>, String> {
    let r = h.call_within(Command::List, SNAPSHOT_TIMEOUT);
    if !r.ok {
        return Err(r.text);
    }
    serde_json::from_value(r.data).map_err(|e| format!("bad list from the supervisor: {e}"))
}

/// A process's CPU time (user + system) and resident set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` (utime, stime and rss; the ABI's clock ticks and pages).
fn read_usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(
        &stat,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size(),
    )
}

/// [`read_usage`]'s parser: the fields after the parenthesised command name (which may hold
/// spaces and parentheses) are `state ppid ... utime(14) stime(15) ... rss(24)`.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: usize) -> Option<Usage> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state).
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)?.checked_add(field(15)?)?;
    let rss = field(24)?.checked_mul(page_size as u64)?;
    if ticks_per_second == 0 {
        return None;
    }
    Some(Usage {
        cpu_seconds: ticks as f64 / ticks_per_second as f64,
        rss_bytes: rss,
    })
}

/// Every state a component can be in, for one `viscript_component_state` series each.
const STATES: [State; 8] = [
    State::Waiting,
    State::Starting,
    State::Ready,
    State::Stopping,
    State::Backoff,
    State::Degraded,
    State::Exited,
    State::Failed,
];

/// A label value, escaped as the exposition format wants (app names are `[A-Za-z0-9._-]`
/// already; this keeps the output valid whatever they become).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for `components`, with `usage` reading a running component's process.
fn render(components: &[Component], stats: &Stats, usage: impl Fn(u32) -> Option<Usage>) -> String {
    let mut o = String::new();
    let usages: Vec<Option<Usage>> = components.iter().map(|c| c.pid.and_then(&usage)).collect();
    let labels = |c: &Component| format!("app=\"{}\",id=\"{}\"", label(&c.app), c.id);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "viscript_component_state",
        "gauge",
        "1 for the state the component is in, 0 for the others.",
    );
    for c in components {
        for s in STATES {
            let on = u8::from(c.state == s.name());
            let _ = writeln!(
                o,
                "viscript_component_state{{{},state=\"{}\"}} {on}",
                labels(c),
                s.name()
            );
        }
    }
    family(
        &mut o,
        "viscript_component_restarts_total",
        "counter",
        "Restarts of the component since viscript created it.",
    );
    for c in components {
        let _ = writeln!(
            o,
            "viscript_component_restarts_total{{{}}} {}",
            labels(c),
            c.restarts
        );
    }
    family(
        &mut o,
        "viscript_component_cpu_seconds_total",
        "counter",
        "User and system CPU time of the component's current process (while it runs).",
    );
    for (c, u) in components.iter().zip(&usages) {
        if let Some(u) = u {
            let _ = writeln!(
                o,
                "viscript_component_cpu_seconds_total{{{}}} {}",
                labels(c),
                u.cpu_seconds
            );
        }
    }
    family(
        &mut o,
        "viscript_component_resident_memory_bytes",
        "gauge",
        "Resident set of the component's current process (while it runs).",
    );
    for (c, u) in components.iter().zip(&usages) {
        if let Some(u) = u {
            let _ = writeln!(
                o,
                "viscript_component_resident_memory_bytes{{{}}} {}",
                labels(c),
                u.rss_bytes
            );
        }
    }
    family(
        &mut o,
        "viscript_component_uptime_seconds",
        "gauge",
        "Time since the component's current process started (while it runs).",
    );
    for c in components {
        if let Some(ms) = c.uptime_ms {
            let _ = writeln!(
                o,
                "viscript_component_uptime_seconds{{{}}} {}",
                labels(c),
                ms as f64 / 1000.0
            );
        }
    }
    family(
        &mut o,
        "viscript_metrics_connections_refused_total",
        "counter",
        "Connections to this endpoint closed unanswered: too many at once.",
    );
    let _ = writeln!(
        o,
        "viscript_metrics_connections_refused_total {}",
        stats.refused.load(Ordering::Relaxed)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        // A command name with spaces and a parenthesis; utime 250, stime 50, rss 100 pages.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1000 4096000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0";
        assert_eq!(
            parse_stat(stat, 100, 4096),
            Some(Usage {
                cpu_seconds: 3.0,
                rss_bytes: 409_600
            })
        );
        assert_eq!(parse_stat("42 (x) S 1 2", 100, 4096), None);
        assert_eq!(parse_stat("garbage", 100, 4096), None);
        assert_eq!(parse_stat(stat, 0, 4096), None);
        let own = read_usage(std::process::id()).unwrap();
        assert!(own.rss_bytes > 0);
    }

    #[test]
    fn exposition() {
        let c = |id, app: &str, state: &str, pid, restarts, uptime_ms| Component {
            id,
            app: app.into(),
            state: state.into(),
            pid,
            restarts,
            uptime_ms,
            ..Component::default()
        };
        let comps = [
            c(1, "demo", "ready", Some(7), 2, Some(1500)),
            c(2, "a\"b", "exited", None, 0, None),
        ];
        let stats = Stats::default();
        stats.refused.store(3, Ordering::Relaxed);
        let text = render(&comps, &stats, |pid| {
            (pid == 7).then_some(Usage {
                cpu_seconds: 0.25,
                rss_bytes: 8192,
            })
        });
        for want in [
            "# TYPE viscript_component_state gauge",
            "viscript_component_state{app=\"demo\",id=\"1\",state=\"ready\"} 1",
            "viscript_component_state{app=\"demo\",id=\"1\",state=\"backoff\"} 0",
            "viscript_component_state{app=\"a\\\"b\",id=\"2\",state=\"exited\"} 1",
            "# TYPE viscript_component_restarts_total counter",
            "viscript_component_restarts_total{app=\"demo\",id=\"1\"} 2",
            "viscript_component_cpu_seconds_total{app=\"demo\",id=\"1\"} 0.25",
            "viscript_component_resident_memory_bytes{app=\"demo\",id=\"1\"} 8192",
            "viscript_component_uptime_seconds{app=\"demo\",id=\"1\"} 1.5",
            "viscript_metrics_connections_refused_total 3",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} not in\n{text}");
        }
        // A component without a process has no usage series.
        assert!(!text.contains("cpu_seconds_total{app=\"a"));
        assert!(!text.contains("uptime_seconds{app=\"a"));
        assert_eq!(text.matches("state=\"").count(), 16);
    }
}
