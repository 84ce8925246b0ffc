//! The GUI's state and its two pure functions: [`App::handle_key`] (what a key does) and
//! [`App::render`] (what the screen shows). Nothing here touches the terminal or the supervisor,
//! so both are tested with plain values and ratatui's `TestBackend`. Keys are in `keys.rs`, the
//! drawing in `view.rs`.

use crate::loglevel::Level;
use crate::reply::{self, Envelope};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Table, TableState, Wrap,
};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

mod keys;
mod view;

pub use super::complete::{Completion, complete};
pub use super::format::{fmt_bytes, fmt_rate, fmt_si, fmt_uptime, sparkline};

/// Rates kept per counter for the sparklines.
const HISTORY: usize = 64;
/// Command lines remembered.
const MAX_HISTORY: usize = 200;
/// Log lines fetched for the selected component (the pane scrolls through them).
pub const LOG_FETCH: usize = 300;

/// What the log pane follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// The component.
    pub id: u64,
    /// `logs --level` of the fetch.
    pub min: Option<Level>,
}

/// A line of the log pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// As the daemon rendered it (control characters replaced).
    pub text: String,
    /// Its severity, when the daemon says (it colours the line).
    pub level: Option<Level>,
}

/// An app from config.yaml.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppInfo {
    /// Its name.
    pub name: String,
    /// One-line description.
    pub desc: String,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// A row of `list`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Component {
    /// Sequence id.
    pub id: u64,
    /// App name.
    pub app: String,
    /// Process id while it runs.
    pub pid: Option<u64>,
    /// State name (`ready`, `exited`, ...).
    pub state: String,
    /// Time since it started.
    pub uptime_ms: Option<u64>,
    /// Restarts so far.
    pub restarts: u64,
    /// Arguments it was started with.
    pub args: Vec<String>,
    /// How it last exited.
    pub last_exit: Option<String>,
    /// Last ping round trip.
    pub ping_rtt_us: Option<u64>,
}

/// A component's `ru` answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// CPU use in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Thread count.
    pub threads: u64,
    /// The component's own counters.
    pub counters: BTreeMap<String, u64>,
}

/// Per-second rates of a component's counters, from consecutive `ru` answers.
#[derive(Debug, Default)]
struct Rates {
    last: Option<(Instant, BTreeMap<String, u64>)>,
    now: BTreeMap<String, f64>,
    history: BTreeMap<String, VecDeque<f64>>,
}

impl Rates {
    fn update(&mut self, at: Instant, counters: &BTreeMap<String, u64>) {
        if let Some((t0, prev)) = &self.last {
            let dt = at.saturating_duration_since(*t0).as_secs_f64();
            if dt < 0.05 {
                return;
            }
            self.now.clear();
            for (k, v) in counters {
                // A counter that went down belongs to a new process: no rate this time.
                let Some(p) = prev.get(k).filter(|p| *p <= v) else {
                    continue;
                };
                let r = (v - p) as f64 / dt;
                self.now.insert(k.clone(), r);
                let h = self.history.entry(k.clone()).or_default();
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(r);
            }
        }
        self.last = Some((at, counters.clone()));
    }

    /// Rates, largest first.
    fn top(&self) -> Vec<(&str, f64)> {
        let mut v: Vec<(&str, f64)> = self.now.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// What one refresh brought: `list`, `ru` of the ready components, the selected component's
/// logs and (now and then) `apps`, each as the reply object of the control protocol.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the answers were taken.
    pub at: Instant,
    /// The `list` reply.
    pub list: Value,
    /// `ru` replies by component id.
    pub usage: Vec<(u64, Value)>,
    /// The `logs ID -n N [--level L]` reply for the followed component.
    pub logs: Option<(u64, Value)>,
    /// The `apps` reply, when fetched.
    pub apps: Option<Value>,
}

/// Which pane has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The running components.
    Components,
    /// The selected component's output.
    Logs,
    /// The app catalogue.
    Apps,
}

/// A popup with text (help of an app, multi-line command output).
#[derive(Debug, Clone, PartialEq)]
pub struct Popup {
    /// Its title.
    pub title: String,
    /// Its lines.
    pub lines: Vec<String>,
    /// First line shown.
    pub scroll: usize,
}

/// What the keys do right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Moving around, one-key actions.
    Normal,
    /// Typing a console command after `:`.
    Command,
    /// Typing a filter after `/`.
    Filter,
    /// The key help.
    Help(usize),
    /// Live details of a component.
    Details(u64),
    /// Text from a command.
    Output(Popup),
}

/// Where a command's answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    /// The status line (first line of the text).
    Status,
    /// A popup with this title when the text has several lines, else the status line.
    Auto(String),
    /// Always a popup with this title.
    Popup(String),
}

/// What the caller should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the GUI.
    Quit,
    /// Clear the screen and draw everything again.
    Clear,
    /// Run a console command and hand the reply to [`App::apply_reply`].
    Run {
        /// The command's tokens.
        tokens: Vec<String>,
        /// Where its answer goes.
        show: Show,
    },
}

/// A status-line message.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The text (one line).
    pub text: String,
    /// Whether it is an error.
    pub error: bool,
}

/// The whole GUI state.
#[derive(Debug)]
pub struct App {
    /// Title-bar description of the source.
    pub source: String,
    /// Whether quitting stops the components.
    pub embedded: bool,
    /// Refresh period, for the title bar.
    pub refresh: Duration,
    /// The app catalogue.
    pub apps: Vec<AppInfo>,
    /// Components as last listed.
    pub components: Vec<Component>,
    usage: BTreeMap<u64, Usage>,
    rates: BTreeMap<u64, Rates>,
    /// Selected component id.
    pub selected: Option<u64>,
    /// Selected app (index into `apps`).
    pub app_sel: usize,
    /// Component name filter (substring).
    pub filter: String,
    /// The focused pane.
    pub focus: Pane,
    /// Key mode.
    pub mode: Mode,
    /// Log lines of `log_id` that pass `log_min`.
    pub log_lines: Vec<LogLine>,
    /// Every log line fetched.
    log_all: Vec<LogLine>,
    /// The log pane shows lines of this severity or more (`logs ID -f --level L`).
    pub log_min: Option<Level>,
    /// Whose lines `log_lines` are.
    pub log_id: Option<u64>,
    /// Lines scrolled up from the end of the log.
    pub log_scroll: usize,
    /// The command line being typed.
    pub input: String,
    /// Cursor position in `input`, in chars.
    pub cursor: usize,
    /// Earlier command lines, oldest first.
    pub history: Vec<String>,
    hist_pos: Option<usize>,
    draft: String,
    /// The status line.
    pub status: Option<Status>,
    /// Why the last refresh failed.
    pub conn_error: Option<String>,
    /// Commands sent and not answered yet.
    pub pending: usize,
    /// Select this component once it is listed (after `start`).
    pending_select: Option<u64>,
    refreshed: bool,
}

fn clean(s: &str) -> String {
    // Terminal control characters in component output must not reach the terminal.
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// The reply object, typed ([`Envelope::from_value`]).
fn envelope(v: &Value) -> Envelope {
    Envelope::from_value(v)
}

/// The entries of a reply whose data is a list; an entry that does not read is taken as the
/// default one.
fn rows<T: Default + for<'de> serde::Deserialize<'de>>(e: &Envelope) -> Option<Vec<T>> {
    let list = e.data.as_array()?;
    Some(
        list.iter()
            .map(|v| T::deserialize(v).unwrap_or_default())
            .collect(),
    )
}

fn state_style(state: &str) -> Style {
    match state {
        "ready" => Style::new().fg(Color::Green),
        "starting" | "waiting" | "stopping" | "backoff" => Style::new().fg(Color::Yellow),
        "failed" | "degraded" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::DarkGray),
    }
}

fn alive_state(state: &str) -> bool {
    matches!(state, "starting" | "ready" | "stopping")
}

impl App {
    /// An empty GUI state.
    pub fn new(source: impl Into<String>, embedded: bool, refresh: Duration) -> App {
        App {
            source: source.into(),
            embedded,
            refresh,
            apps: Vec::new(),
            components: Vec::new(),
            usage: BTreeMap::new(),
            rates: BTreeMap::new(),
            selected: None,
            app_sel: 0,
            filter: String::new(),
            focus: Pane::Components,
            mode: Mode::Normal,
            log_lines: Vec::new(),
            log_all: Vec::new(),
            log_min: None,
            log_id: None,
            log_scroll: 0,
            input: String::new(),
            cursor: 0,
            history: Vec::new(),
            hist_pos: None,
            draft: String::new(),
            status: None,
            conn_error: None,
            pending: 0,
            pending_select: None,
            refreshed: false,
        }
    }

    // ---- data in ----------------------------------------------------------------------

    /// Takes the `apps` reply.
    pub fn apply_apps(&mut self, reply: &Value) {
        let e = envelope(reply);
        if !e.ok {
            return;
        }
        let Some(list) = rows::<reply::AppEntry>(&e) else {
            return;
        };
        self.apps = list
            .iter()
            .map(|a| AppInfo {
                name: clean(&a.name),
                desc: clean(a.desc.lines().next().unwrap_or("")),
                daemon: a.daemon,
            })
            .collect();
        self.app_sel = self.app_sel.min(self.apps.len().saturating_sub(1));
    }

    /// Takes the `list` reply.
    pub fn apply_list(&mut self, reply: &Value) {
        let e = envelope(reply);
        if !e.ok {
            self.conn_error = Some(e.text);
            return;
        }
        self.conn_error = None;
        self.refreshed = true;
        let rows = rows::<reply::Component>(&e).unwrap_or_default();
        self.components = rows
            .iter()
            .map(|c| Component {
                id: c.id,
                app: clean(&c.app),
                pid: c.pid.map(u64::from),
                state: clean(&c.state),
                uptime_ms: c.uptime_ms,
                restarts: u64::from(c.restarts),
                args: c.args.iter().map(|a| clean(a)).collect(),
                last_exit: c.last_exit.as_deref().map(clean),
                ping_rtt_us: c.ping_rtt_us,
            })
            .collect();
        let ids: Vec<u64> = self.components.iter().map(|c| c.id).collect();
        self.usage.retain(|id, _| ids.contains(id));
        self.rates.retain(|id, _| ids.contains(id));
        if let Some(id) = self.pending_select
            && ids.contains(&id)
        {
            self.selected = Some(id);
            self.pending_select = None;
        }
        self.fix_selection();
    }

    /// Takes a component's `ru` reply, taken at `at`.
    pub fn apply_usage(&mut self, id: u64, reply: &Value, at: Instant) {
        let e = envelope(reply);
        if !e.ok {
            self.usage.remove(&id);
            return;
        }
        if e.data.is_null() {
            return;
        }
        let d: reply::Usage = e.data().unwrap_or_default();
        let counters: BTreeMap<String, u64> =
            d.counters.iter().map(|(k, v)| (clean(k), *v)).collect();
        self.rates.entry(id).or_default().update(at, &counters);
        self.usage.insert(
            id,
            Usage {
                cpu_percent: f64::from(d.cpu_percent),
                rss_bytes: d.rss_bytes,
                threads: u64::from(d.threads),
                counters,
            },
        );
    }

    /// Takes the `logs` reply of component `id`.
    pub fn apply_logs(&mut self, id: u64, reply: &Value) {
        if self.log_id != Some(id) {
            self.log_scroll = 0;
        }
        self.log_id = Some(id);
        let e = envelope(reply);
        self.log_all = if e.ok {
            let logs: reply::Logs = e.data().unwrap_or_default();
            let mut levels = logs.levels.iter().map(|l| Level::from_name(l));
            logs.lines
                .iter()
                .map(|l| LogLine {
                    text: clean(l),
                    level: levels.next().flatten(),
                })
                .collect()
        } else {
            vec![LogLine {
                text: format!("(no logs: {})", clean(&e.text)),
                level: None,
            }]
        };
        self.refilter();
    }

    /// Shows only lines of severity `min` or more in the log pane (`None`: all).
    pub fn set_log_min(&mut self, min: Option<Level>) {
        self.log_min = min;
        self.refilter();
    }

    fn refilter(&mut self) {
        self.log_lines = match self.log_min {
            // Lines without a level (an older daemon, an error) stay.
            Some(min) => self
                .log_all
                .iter()
                .filter(|l| l.level.is_none_or(|l| l >= min))
                .cloned()
                .collect(),
            None => self.log_all.clone(),
        };
    }

    /// Takes one refresh.
    pub fn apply_snapshot(&mut self, s: &Snapshot) {
        if let Some(a) = &s.apps {
            self.apply_apps(a);
        }
        self.apply_list(&s.list);
        let with_usage: Vec<u64> = s.usage.iter().map(|(id, _)| *id).collect();
        self.usage.retain(|id, _| with_usage.contains(id));
        // Not ready: no rates; counting starts again when it is back.
        for (id, r) in self.rates.iter_mut() {
            if !with_usage.contains(id) {
                r.now.clear();
                r.last = None;
            }
        }
        for (id, r) in &s.usage {
            self.apply_usage(*id, r, s.at);
        }
        match &s.logs {
            Some((id, r)) => self.apply_logs(*id, r),
            None if self.selected.is_none() => {
                self.log_id = None;
                self.log_all.clear();
                self.log_lines.clear();
            }
            None => {}
        }
    }

    /// Takes the answer to a command sent for an [`Action::Run`].
    pub fn apply_reply(&mut self, tokens: &[String], show: &Show, reply: &Value) {
        self.pending = self.pending.saturating_sub(1);
        let e = envelope(reply);
        let ok = e.ok;
        let text = clean_lines(&e.text);
        // Component ids start at 1: 0 is a reply without one.
        if ok
            && matches!(tokens.first().map(String::as_str), Some("start" | "s"))
            && let Some(id) = e
                .data::<reply::Started>()
                .map(|s| s.id)
                .filter(|id| *id > 0)
        {
            if self.components.iter().any(|c| c.id == id) {
                self.selected = Some(id);
            } else {
                self.pending_select = Some(id);
            }
        }
        let popup_title = match show {
            Show::Popup(t) => Some(t.clone()),
            Show::Auto(t) if text.len() > 1 => Some(t.clone()),
            _ => None,
        };
        match popup_title {
            Some(title) if ok || text.len() > 1 => {
                self.mode = Mode::Output(Popup {
                    title,
                    lines: text,
                    scroll: 0,
                });
                self.status = None;
            }
            _ => {
                let first = text.first().cloned().unwrap_or_default();
                self.status = Some(Status {
                    text: if ok {
                        if first.is_empty() {
                            format!("{}: ok", tokens.join(" "))
                        } else {
                            first
                        }
                    } else {
                        format!("error: {first}")
                    },
                    error: !ok,
                });
            }
        }
    }

    // ---- selection --------------------------------------------------------------------

    /// Components that pass the filter, in list order.
    pub fn visible(&self) -> Vec<&Component> {
        let f = self.filter.to_lowercase();
        self.components
            .iter()
            .filter(|c| f.is_empty() || c.app.to_lowercase().contains(&f))
            .collect()
    }

    fn fix_selection(&mut self) {
        let vis: Vec<u64> = self.visible().iter().map(|c| c.id).collect();
        if self.selected.is_none_or(|s| !vis.contains(&s)) {
            self.selected = vis.first().copied();
        }
    }

    /// The selected component.
    pub fn selected_component(&self) -> Option<&Component> {
        let id = self.selected?;
        self.components.iter().find(|c| c.id == id)
    }

    /// The component whose logs the refresh should fetch, and the pane's level.
    pub fn followed(&self) -> Option<Followed> {
        self.selected.map(|id| Followed {
            id,
            min: self.log_min,
        })
    }

    fn move_selection(&mut self, delta: isize) {
        let vis: Vec<u64> = self.visible().iter().map(|c| c.id).collect();
        if vis.is_empty() {
            return;
        }
        let i = self
            .selected
            .and_then(|s| vis.iter().position(|x| *x == s))
            .unwrap_or(0);
        let j = (i as isize + delta).clamp(0, vis.len() as isize - 1) as usize;
        self.selected = Some(vis[j]);
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    fn run(&mut self, tokens: Vec<String>, show: Show) -> Action {
        self.pending += 1;
        self.say(format!("{} ...", tokens.join(" ")), false);
        Action::Run { tokens, show }
    }

    fn on_component(&mut self, cmd: &str) -> Action {
        match self.selected {
            Some(id) => self.run(vec![cmd.to_string(), id.to_string()], Show::Status),
            None => {
                self.say(
                    "no component selected; start one from the apps pane (\u{2190}, then s)",
                    true,
                );
                Action::None
            }
        }
    }
}

fn clean_lines(s: &str) -> Vec<String> {
    s.lines().map(clean).collect()
}
