//! sd_notify: telling systemd (a `Type=notify` service manager) that `viscript serve` is up,
//! what it is doing, that its loop still turns, and that it is stopping.
//!
//! The protocol is one datagram per message to the unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace), each a set of `KEY=value` lines. Nothing
//! here is fatal: without `NOTIFY_SOCKET` the [`Notifier`] is never made, and a failed send is
//! logged once and otherwise ignored.
//!
//! [`Plan`] is the pure part (what to send when) and is driven by the supervisor's loop, so a
//! wedged loop stops the watchdog pings.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The variables systemd sets for the main process; children must not see them.
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// STATUS= is sent at most this often (changes in between are sent when it has passed).
pub const STATUS_EVERY: Duration = Duration::from_millis(250);

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A socket file.
    Path(PathBuf),
    /// An abstract-namespace name (without the leading `@`).
    Abstract(Vec<u8>),
}

impl Addr {
    /// Parses `NOTIFY_SOCKET`; `None` when it is empty or not a unix socket name.
    pub fn parse(v: &str) -> Option<Addr> {
        if let Some(name) = v.strip_prefix('@') {
            return (!name.is_empty()).then(|| Addr::Abstract(name.as_bytes().to_vec()));
        }
        v.starts_with('/').then(|| Addr::Path(PathBuf::from(v)))
    }
}

/// The half period at which `WATCHDOG=1` is sent, when systemd asked for it: `WATCHDOG_USEC`
/// is set and positive, and `WATCHDOG_PID` is unset or `me`.
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid
        && p.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A connection to the service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: Addr,
    /// A send already failed (and was logged).
    failed: bool,
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for us.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; `None` when `NOTIFY_SOCKET` is
    /// unset (or unusable, which is logged).
    pub fn from_env() -> Option<Notifier> {
        let v = std::env::var("NOTIFY_SOCKET").ok()?;
        let Some(addr) = Addr::parse(&v) else {
            eprintln!("viscript: NOTIFY_SOCKET={v:?} is not a unix socket; not notifying");
            return None;
        };
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog = watchdog_period(usec.as_deref(), pid.as_deref(), std::process::id());
        match Notifier::new(addr, watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("viscript: sd_notify socket: {e}; not notifying");
                None
            }
        }
    }

    /// A notifier sending to `addr` (the socket is close-on-exec: children do not get it).
    pub fn new(addr: Addr, watchdog: Option<Duration>) -> io::Result<Notifier> {
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
            failed: false,
            watchdog,
        })
    }

    fn try_send(&self, msg: &str) -> io::Result<()> {
        let n = match &self.addr {
            Addr::Path(p) => self.sock.send_to(msg.as_bytes(), p)?,
            Addr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.sock.send_to_addr(msg.as_bytes(), &a)?
            }
        };
        if n != msg.len() {
            return Err(io::Error::other("short datagram"));
        }
        Ok(())
    }

    /// Sends one message; the first failure is logged, none is fatal.
    pub fn send(&mut self, msg: &str) {
        if let Err(e) = self.try_send(msg)
            && !self.failed
        {
            self.failed = true;
            eprintln!(
                "viscript: sd_notify to {:?} failed: {e} (logged once)",
                self.addr
            );
        }
    }
}

/// What to send when: readiness (once), status changes (rate-limited), watchdog pings and
/// stopping. Pure: the supervisor gives it the time and the current summary.
#[derive(Debug)]
pub struct Plan {
    /// READY=1 went out.
    pub ready_sent: bool,
    /// READY=1 is sent at this time at the latest, even if not everything came up.
    pub ready_by: Instant,
    /// STOPPING=1 went out.
    pub stopping_sent: bool,
    /// READY=1 went out before every autostart app was up (and they still are not).
    late: bool,
    /// A status change waits for [`STATUS_EVERY`].
    pending: bool,
    last_status: String,
    status_at: Option<Instant>,
    watchdog: Option<(Duration, Instant)>,
}

/// What the supervisor knows this turn.
pub struct Now<'a> {
    /// The time.
    pub now: Instant,
    /// Every autostart component is up.
    pub all_up: bool,
    /// The autostart apps that are not up (for the timeout's STATUS).
    pub not_up: &'a [String],
    /// The one-line summary ([`summary`]).
    pub summary: &'a str,
    /// `quit` is under way.
    pub stopping: bool,
}

impl Plan {
    /// A plan starting at `now`: READY=1 at the latest at `ready_by`; watchdog pings every
    /// `watchdog` (the first one at once).
    pub fn new(now: Instant, ready_by: Instant, watchdog: Option<Duration>) -> Plan {
        Plan {
            ready_sent: false,
            ready_by,
            stopping_sent: false,
            late: false,
            pending: false,
            last_status: String::new(),
            status_at: None,
            watchdog: watchdog.map(|p| (p, now)),
        }
    }

    /// The STATUS= text for this turn.
    fn text(&self, s: &Now<'_>) -> String {
        if s.stopping {
            format!("stopping; {}", s.summary)
        } else if !self.ready_sent {
            format!("starting; {}", s.summary)
        } else if self.late {
            format!("not up in time: {}; {}", s.not_up.join(", "), s.summary)
        } else {
            s.summary.to_string()
        }
    }

    /// The message to send this turn, if any.
    pub fn step(&mut self, s: &Now<'_>) -> Option<String> {
        let mut lines: Vec<String> = Vec::new();
        // READY= and STOPPING= carry their STATUS= at once; other changes are rate-limited.
        let mut urgent = false;
        if !self.ready_sent && !s.stopping && (s.all_up || s.now >= self.ready_by) {
            self.ready_sent = true;
            self.late = !s.all_up;
            lines.push("READY=1".into());
            urgent = true;
        }
        if self.late && s.all_up {
            self.late = false;
        }
        if s.stopping && !self.stopping_sent {
            self.stopping_sent = true;
            lines.push("STOPPING=1".into());
            urgent = true;
        }
        let text = self.text(s);
        let due = urgent || self.status_at.is_none_or(|t| s.now >= t + STATUS_EVERY);
        let differs = text != self.last_status;
        self.pending = differs && !due;
        if differs && due {
            lines.push(format!("STATUS={text}"));
            self.last_status = text;
            self.status_at = Some(s.now);
        }
        if let Some((period, next)) = &mut self.watchdog
            && s.now >= *next
        {
            lines.push("WATCHDOG=1".into());
            *next = s.now + *period;
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// The next time [`Plan::step`] may have something to send.
    pub fn deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
        if !self.ready_sent {
            min(self.ready_by);
        }
        if self.pending
            && let Some(t) = self.status_at
        {
            min(t + STATUS_EVERY);
        }
        if let Some((_, next)) = self.watchdog {
            min(next);
        }
        d
    }

    /// The last STATUS= text sent.
    pub fn last_status(&self) -> &str {
        &self.last_status
    }
}

/// The one-line summary of the components: `6 components: 5 ready, 1 backoff (vpn-client)`.
/// `states` are (app name, state name) pairs; states other than ready name their apps.
pub fn summary<'a>(states: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut n = 0;
    for (app, state) in states {
        n += 1;
        match groups.iter_mut().find(|(s, _)| *s == state) {
            Some((_, apps)) => apps.push(app),
            None => groups.push((state, vec![app])),
        }
    }
    let order = |s: &str| {
        [
            "ready", "starting", "waiting", "backoff", "degraded", "stopping", "failed", "exited",
        ]
        .iter()
        .position(|x| *x == s)
        .unwrap_or(99)
    };
    groups.sort_by_key(|(s, _)| order(s));
    let noun = if n == 1 { "component" } else { "components" };
    if groups.is_empty() {
        return format!("0 {noun}");
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(state, apps)| {
            if *state == "ready" {
                format!("{} ready", apps.len())
            } else {
                let mut names = apps.clone();
                names.sort_unstable();
                names.dedup();
                format!("{} {state} ({})", apps.len(), names.join(", "))
            }
        })
        .collect();
    format!("{n} {noun}: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Addr::parse("/run/systemd/notify"),
            Some(Addr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(Addr::parse("@x/y"), Some(Addr::Abstract(b"x/y".to_vec())));
        assert_eq!(Addr::parse("@"), None);
        assert_eq!(Addr::parse(""), None);
        assert_eq!(Addr::parse("relative"), None);
    }

    #[test]
    fn watchdog_needs_usec_and_our_pid() {
        let p = |u, pid| watchdog_period(u, pid, 42);
        assert_eq!(p(Some("10000000"), None), Some(Duration::from_secs(5)));
        assert_eq!(
            p(Some("10000000"), Some("42")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(p(Some("10000000"), Some("43")), None);
        assert_eq!(p(Some("0"), None), None);
        assert_eq!(p(Some("x"), None), None);
        assert_eq!(p(None, Some("42")), None);
    }

    #[test]
    fn summaries() {
        assert_eq!(summary([]), "0 components");
        assert_eq!(summary([("a", "ready")]), "1 component: 1 ready");
        assert_eq!(
            summary([
                ("vpn-client", "backoff"),
                ("a", "ready"),
                ("b", "ready"),
                ("c", "starting"),
                ("d", "starting"),
            ]),
            "5 components: 2 ready, 2 starting (c, d), 1 backoff (vpn-client)"
        );
    }

    fn at<'a>(now: Instant, all_up: bool, summary: &'a str, stopping: bool) -> Now<'a> {
        Now {
            now,
            all_up,
            not_up: &[],
            summary,
            stopping,
        }
    }

    #[test]
    fn ready_once_status_rate_limited_watchdog_stopping() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Plan::new(t0, ms(10_000), Some(Duration::from_millis(500)));
        assert_eq!(
            p.step(&at(t0, false, "1 component: 1 starting (a)", false))
                .as_deref(),
            Some("STATUS=starting; 1 component: 1 starting (a)\nWATCHDOG=1")
        );
        // Nothing new.
        assert_eq!(
            p.step(&at(ms(10), false, "1 component: 1 starting (a)", false)),
            None
        );
        // Ready at once, even within the status interval.
        assert_eq!(
            p.step(&at(ms(20), true, "1 component: 1 ready", false))
                .as_deref(),
            Some("READY=1\nSTATUS=1 component: 1 ready")
        );
        // A change within STATUS_EVERY waits.
        let s = "1 component: 1 backoff (a)";
        assert_eq!(p.step(&at(ms(100), true, s, false)), None);
        assert_eq!(p.deadline(), Some(ms(20) + STATUS_EVERY));
        assert_eq!(
            p.step(&at(ms(300), true, s, false)).as_deref(),
            Some("STATUS=1 component: 1 backoff (a)")
        );
        assert_eq!(
            p.step(&at(ms(500), true, s, false)).as_deref(),
            Some("WATCHDOG=1")
        );
        // Stopping: at once, with its status; READY never again.
        assert_eq!(
            p.step(&at(ms(600), true, s, true)).as_deref(),
            Some("STOPPING=1\nSTATUS=stopping; 1 component: 1 backoff (a)")
        );
        assert_eq!(p.step(&at(ms(700), true, s, true)), None);
    }

    #[test]
    fn ready_after_the_bound_names_what_did_not_come_up() {
        let t0 = Instant::now();
        let mut p = Plan::new(t0, t0 + Duration::from_secs(1), None);
        let not_up = ["vpn".to_string()];
        let s = "2 components: 1 ready, 1 backoff (vpn)";
        let mut n = Now {
            now: t0,
            all_up: false,
            not_up: &not_up,
            summary: s,
            stopping: false,
        };
        assert_eq!(
            p.step(&n).as_deref(),
            Some("STATUS=starting; 2 components: 1 ready, 1 backoff (vpn)")
        );
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(1)));
        n.now = t0 + Duration::from_secs(1);
        assert_eq!(
            p.step(&n).as_deref(),
            Some("READY=1\nSTATUS=not up in time: vpn; 2 components: 1 ready, 1 backoff (vpn)")
        );
        assert!(p.ready_sent);
        assert_eq!(p.deadline(), None);
    }
}
