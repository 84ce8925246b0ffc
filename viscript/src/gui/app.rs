//! The GUI's state and its two pure functions: [`App::handle_key`] (what a key does) and
//! [`App::render`] (what the screen shows). Nothing here touches the terminal or the supervisor,
//! so both are tested with plain values and ratatui's `TestBackend`.

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

/// Rates kept per counter for the sparklines.
const HISTORY: usize = 64;
/// Command lines remembered.
const MAX_HISTORY: usize = 200;
/// Log lines fetched for the selected component (the pane scrolls through them).
pub const LOG_FETCH: usize = 300;

/// Console commands, for completion.
const COMMANDS: &[&str] = &[
    "apps", "attach", "help", "kill", "list", "logs", "ping", "quit", "restart", "ru", "sd",
    "start",
];
/// Commands whose first argument is a component id.
const ID_COMMANDS: &[&str] = &[
    "ping", "ru", "sd", "shutdown", "kill", "restart", "logs", "log", "attach",
];

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
    /// The `logs ID -n N` reply for the followed component.
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
    /// Log lines of `log_id`.
    pub log_lines: Vec<String>,
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

fn str_of(v: &Value, k: &str) -> String {
    clean(v.get(k).and_then(Value::as_str).unwrap_or(""))
}

fn reply_ok(v: &Value) -> bool {
    v.get("ok").and_then(Value::as_bool).unwrap_or(false)
}

fn reply_text(v: &Value) -> String {
    v.get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `12s`, `3m04s`, `2h05m`, `3d04h`.
pub fn fmt_uptime(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 86_400 {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `812K`, `12.5M`, `512M`, `1.2G`: at most five characters below 100 T.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    let (x, unit) = if b >= 1024.0 * 1024.0 * 1024.0 {
        (b / (1024.0 * 1024.0 * 1024.0), "G")
    } else if b >= 1024.0 * 1024.0 {
        (b / (1024.0 * 1024.0), "M")
    } else {
        return format!("{:.0}K", b / 1024.0);
    };
    if x >= 99.95 {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.1}{unit}")
    }
}

/// A rate with an SI suffix: `9.5`, `12`, `1.2k`, `34M`, `1.0G`.
pub fn fmt_si(v: f64) -> String {
    let (x, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    // 9.96 would print as `10.0`: round like the wider numbers.
    if x >= 9.95 || (suffix.is_empty() && x.fract() == 0.0) {
        format!("{x:.0}{suffix}")
    } else {
        format!("{x:.1}{suffix}")
    }
}

/// `10 ticks/s`, `1.2M rx_bytes/s`: the number first, so a narrow column still shows it.
pub fn fmt_rate(name: &str, v: f64) -> String {
    format!("{} {name}/s", fmt_si(v))
}

/// Unicode block sparkline of the last `width` values.
pub fn sparkline(values: &VecDeque<f64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let shown: Vec<f64> = values.iter().skip(skip).copied().collect();
    let max = shown.iter().copied().fold(0.0f64, f64::max);
    shown
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let i = ((v / max) * 7.0).round().clamp(0.0, 7.0) as usize;
                BARS[i]
            }
        })
        .collect()
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

fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut n = first.len();
    for w in &words[1..] {
        n = first
            .char_indices()
            .zip(w.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(n);
    }
    first[..n].to_string()
}

/// The result of Tab on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The line after completing.
    pub line: String,
    /// Every candidate when the word is ambiguous.
    pub candidates: Vec<String>,
}

/// Completes the last word of `line`: command names first, then app names (after
/// `start`/`s`/`help`) or component ids (after the commands that take one).
pub fn complete(line: &str, apps: &[String], ids: &[u64]) -> Completion {
    let words: Vec<&str> = line.split_whitespace().collect();
    let fresh = line.is_empty() || line.ends_with(char::is_whitespace);
    let index = if fresh {
        words.len()
    } else {
        words.len().saturating_sub(1)
    };
    let word = if fresh {
        ""
    } else {
        words.last().copied().unwrap_or("")
    };
    let pool: Vec<String> = if index == 0 {
        COMMANDS.iter().map(|s| s.to_string()).collect()
    } else {
        let cmd = words.first().copied().unwrap_or("");
        let flags_before = words[1..index].iter().all(|w| w.starts_with('-'));
        match cmd {
            "start" | "s" if flags_before && !word.starts_with('-') => apps.to_vec(),
            "help" | "?" if index == 1 => apps.to_vec(),
            c if ID_COMMANDS.contains(&c) && index == 1 => {
                ids.iter().map(|i| i.to_string()).collect()
            }
            _ => Vec::new(),
        }
    };
    let candidates: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
    let head = &line[..line.len() - word.len()];
    match candidates.len() {
        0 => Completion {
            line: line.to_string(),
            candidates,
        },
        1 => Completion {
            line: format!("{head}{} ", candidates[0]),
            candidates: Vec::new(),
        },
        _ => {
            let p = common_prefix(&candidates);
            Completion {
                line: format!("{head}{}", if p.len() > word.len() { &p } else { word }),
                candidates,
            }
        }
    }
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
        if !reply_ok(reply) {
            return;
        }
        let Some(list) = reply.get("data").and_then(Value::as_array) else {
            return;
        };
        self.apps = list
            .iter()
            .map(|a| AppInfo {
                name: str_of(a, "name"),
                desc: clean(
                    a.get("desc")
                        .and_then(Value::as_str)
                        .and_then(|d| d.lines().next())
                        .unwrap_or(""),
                ),
                daemon: a.get("daemon").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect();
        self.app_sel = self.app_sel.min(self.apps.len().saturating_sub(1));
    }

    /// Takes the `list` reply.
    pub fn apply_list(&mut self, reply: &Value) {
        if !reply_ok(reply) {
            self.conn_error = Some(reply_text(reply));
            return;
        }
        self.conn_error = None;
        self.refreshed = true;
        let rows = reply
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.components = rows
            .iter()
            .map(|c| Component {
                id: c.get("id").and_then(Value::as_u64).unwrap_or(0),
                app: str_of(c, "app"),
                pid: c.get("pid").and_then(Value::as_u64),
                state: str_of(c, "state"),
                uptime_ms: c.get("uptime_ms").and_then(Value::as_u64),
                restarts: c.get("restarts").and_then(Value::as_u64).unwrap_or(0),
                args: c
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                    .unwrap_or_default(),
                last_exit: c.get("last_exit").and_then(Value::as_str).map(clean),
                ping_rtt_us: c.get("ping_rtt_us").and_then(Value::as_u64),
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
        if !reply_ok(reply) {
            self.usage.remove(&id);
            return;
        }
        let Some(d) = reply.get("data") else { return };
        let counters: BTreeMap<String, u64> = d
            .get("counters")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_u64().map(|v| (clean(k), v)))
                    .collect()
            })
            .unwrap_or_default();
        self.rates.entry(id).or_default().update(at, &counters);
        self.usage.insert(
            id,
            Usage {
                cpu_percent: d.get("cpu_percent").and_then(Value::as_f64).unwrap_or(0.0),
                rss_bytes: d.get("rss_bytes").and_then(Value::as_u64).unwrap_or(0),
                threads: d.get("threads").and_then(Value::as_u64).unwrap_or(0),
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
        self.log_lines = if reply_ok(reply) {
            reply
                .get("data")
                .and_then(|d| d.get("lines"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                .unwrap_or_default()
        } else {
            vec![format!("(no logs: {})", clean(&reply_text(reply)))]
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
                self.log_lines.clear();
            }
            None => {}
        }
    }

    /// Takes the answer to a command sent for an [`Action::Run`].
    pub fn apply_reply(&mut self, tokens: &[String], show: &Show, reply: &Value) {
        self.pending = self.pending.saturating_sub(1);
        let ok = reply_ok(reply);
        let text = clean_lines(&reply_text(reply));
        if ok
            && matches!(tokens.first().map(String::as_str), Some("start" | "s"))
            && let Some(id) = reply
                .get("data")
                .and_then(|d| d.get("id"))
                .and_then(Value::as_u64)
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

    /// The component whose logs the refresh should fetch.
    pub fn followed(&self) -> Option<u64> {
        self.selected
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

    // ---- keys -------------------------------------------------------------------------

    /// What `key` does.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('l') {
            return Action::Clear;
        }
        match self.mode.clone() {
            Mode::Normal => self.key_normal(key, ctrl),
            Mode::Command => self.key_command(key, ctrl),
            Mode::Filter => self.key_filter(key, ctrl),
            Mode::Help(_) | Mode::Details(_) | Mode::Output(_) => self.key_popup(key, ctrl),
        }
    }

    fn key_popup(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let scroll = |m: &mut Mode, f: &dyn Fn(usize) -> usize| match m {
            Mode::Help(s) => *s = f(*s),
            Mode::Output(p) => p.scroll = f(p.scroll),
            _ => {}
        };
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('?') => {
                self.mode = Mode::Normal
            }
            KeyCode::Up => scroll(&mut self.mode, &|s| s.saturating_sub(1)),
            KeyCode::Down => scroll(&mut self.mode, &|s| s + 1),
            KeyCode::PageUp => scroll(&mut self.mode, &|s| s.saturating_sub(10)),
            KeyCode::PageDown => scroll(&mut self.mode, &|s| s + 10),
            KeyCode::Home => scroll(&mut self.mode, &|_| 0),
            _ => {}
        }
        Action::None
    }

    fn key_normal(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let next = |p: Pane| match p {
            Pane::Components => Pane::Logs,
            Pane::Logs => Pane::Apps,
            Pane::Apps => Pane::Components,
        };
        let prev = |p: Pane| match p {
            Pane::Components => Pane::Apps,
            Pane::Apps => Pane::Logs,
            Pane::Logs => Pane::Components,
        };
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Tab | KeyCode::Right => self.focus = next(self.focus),
            KeyCode::BackTab | KeyCode::Left => self.focus = prev(self.focus),
            KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown => {
                let d: isize = match key.code {
                    KeyCode::Up => -1,
                    KeyCode::Down => 1,
                    KeyCode::PageUp => -10,
                    _ => 10,
                };
                match self.focus {
                    Pane::Components => self.move_selection(d),
                    Pane::Apps => {
                        let n = self.apps.len() as isize;
                        if n > 0 {
                            self.app_sel = (self.app_sel as isize + d).clamp(0, n - 1) as usize;
                        }
                    }
                    Pane::Logs => {
                        let max = self.log_lines.len().saturating_sub(1);
                        self.log_scroll = if d < 0 {
                            (self.log_scroll + d.unsigned_abs()).min(max)
                        } else {
                            self.log_scroll.saturating_sub(d as usize)
                        };
                    }
                }
            }
            KeyCode::Home if self.focus == Pane::Logs => {
                self.log_scroll = self.log_lines.len().saturating_sub(1)
            }
            KeyCode::End if self.focus == Pane::Logs => self.log_scroll = 0,
            KeyCode::Enter => match self.focus {
                Pane::Apps => {
                    if let Some(a) = self.apps.get(self.app_sel) {
                        let name = a.name.clone();
                        return self.run(
                            vec!["help".into(), name.clone()],
                            Show::Popup(format!("app {name}")),
                        );
                    }
                }
                _ => match self.selected {
                    Some(id) => self.mode = Mode::Details(id),
                    None => self.say("no component selected", true),
                },
            },
            KeyCode::Char('s') => {
                if self.focus == Pane::Apps {
                    match self.apps.get(self.app_sel) {
                        Some(a) => {
                            let name = a.name.clone();
                            return self.run(vec!["start".into(), name], Show::Status);
                        }
                        None => self.say("no apps in the config", true),
                    }
                } else {
                    match self.selected_component() {
                        Some(c) if alive_state(&c.state) => {
                            let t = format!(
                                "{} is {}; r restarts it, or start another from the apps pane",
                                c.id, c.state
                            );
                            self.say(t, true);
                        }
                        Some(c) => {
                            // Stopped: bring it back with the same id and arguments.
                            let id = c.id;
                            return self.run(vec!["restart".into(), id.to_string()], Show::Status);
                        }
                        None => self.say(
                            "no component selected; start one from the apps pane (\u{2190}, then s)",
                            true,
                        ),
                    }
                }
            }
            KeyCode::Char('r') => return self.on_component("restart"),
            KeyCode::Char('d') => return self.on_component("sd"),
            KeyCode::Char('k') => return self.on_component("kill"),
            KeyCode::Char('p') => return self.on_component("ping"),
            KeyCode::Char('l') => {
                self.focus = Pane::Logs;
                self.log_scroll = 0;
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                self.focus = Pane::Components;
            }
            KeyCode::Char('?') => self.mode = Mode::Help(0),
            KeyCode::Char(':') => {
                self.mode = Mode::Command;
                self.input.clear();
                self.cursor = 0;
                self.hist_pos = None;
            }
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.fix_selection();
                }
                self.status = None;
            }
            _ => {}
        }
        Action::None
    }

    fn key_filter(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('u') if ctrl => self.filter.clear(),
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::Char(c) if !ctrl => self.filter.push(c),
            _ => {}
        }
        self.fix_selection();
        Action::None
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.input
            .char_indices()
            .nth(chars)
            .map(|(i, _)| i)
            .unwrap_or(self.input.len())
    }

    fn key_command(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let len = self.input.chars().count();
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.mode = Mode::Normal;
                self.input.clear();
            }
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace => {
                if self.cursor > 0 {
                    let b = self.byte_at(self.cursor - 1);
                    self.input.remove(b);
                    self.cursor -= 1;
                } else if self.input.is_empty() {
                    self.mode = Mode::Normal;
                }
            }
            KeyCode::Delete if self.cursor < len => {
                let b = self.byte_at(self.cursor);
                self.input.remove(b);
            }
            KeyCode::Up => {
                if self.history.is_empty() {
                    return Action::None;
                }
                let pos = match self.hist_pos {
                    None => {
                        self.draft = self.input.clone();
                        self.history.len() - 1
                    }
                    Some(p) => p.saturating_sub(1),
                };
                self.hist_pos = Some(pos);
                self.input = self.history[pos].clone();
                self.cursor = self.input.chars().count();
            }
            KeyCode::Down => {
                let Some(p) = self.hist_pos else {
                    return Action::None;
                };
                if p + 1 < self.history.len() {
                    self.hist_pos = Some(p + 1);
                    self.input = self.history[p + 1].clone();
                } else {
                    self.hist_pos = None;
                    self.input = std::mem::take(&mut self.draft);
                }
                self.cursor = self.input.chars().count();
            }
            KeyCode::Tab => {
                let apps: Vec<String> = self.apps.iter().map(|a| a.name.clone()).collect();
                let ids: Vec<u64> = self.components.iter().map(|c| c.id).collect();
                let b = self.byte_at(self.cursor);
                let c = complete(&self.input[..b], &apps, &ids);
                let rest = self.input[b..].to_string();
                self.cursor = c.line.chars().count();
                self.input = format!("{}{rest}", c.line);
                if c.candidates.len() > 1 {
                    let t = c.candidates.join("  ");
                    self.say(t, false);
                }
            }
            KeyCode::Char(ch) if !ctrl => {
                let b = self.byte_at(self.cursor);
                self.input.insert(b, ch);
                self.cursor += 1;
            }
            _ => {}
        }
        Action::None
    }

    fn submit(&mut self) -> Action {
        let line = self.input.trim().to_string();
        self.input.clear();
        self.cursor = 0;
        self.hist_pos = None;
        self.mode = Mode::Normal;
        if line.is_empty() {
            return Action::None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > MAX_HISTORY {
                self.history.remove(0);
            }
        }
        let tokens = match crate::command::tokenize(&line) {
            Ok(t) => t,
            Err(e) => {
                self.say(format!("error: {e}"), true);
                return Action::None;
            }
        };
        let cmd = match crate::command::Command::parse(&tokens) {
            Ok(c) => c,
            Err(e) => {
                self.say(format!("error: {e}"), true);
                return Action::None;
            }
        };
        use crate::command::Command as C;
        match cmd {
            // Embedded, the supervisor lives and dies with the GUI; against a daemon, `quit`
            // stops the daemon (q leaves the GUI alone).
            C::Quit if self.embedded => Action::Quit,
            // Following happens in the log pane.
            C::Attach(id)
            | C::Logs {
                id, follow: true, ..
            } => {
                if self.components.iter().any(|c| c.id == id) {
                    self.selected = Some(id);
                    self.filter.clear();
                    self.focus = Pane::Logs;
                    self.log_scroll = 0;
                    self.say(format!("following {id} in the log pane"), false);
                } else {
                    self.say(
                        format!("error: no component with id {id}; `list` shows the running ones"),
                        true,
                    );
                }
                Action::None
            }
            C::Start {
                app,
                args,
                attach,
                wait,
            } => {
                let mut t = vec!["start".to_string()];
                if wait {
                    t.push("-w".into());
                }
                t.push(app);
                t.extend(args.unwrap_or_default());
                if attach {
                    self.focus = Pane::Logs;
                }
                self.run(t, Show::Status)
            }
            _ => self.run(tokens, Show::Auto(line)),
        }
    }

    // ---- drawing ----------------------------------------------------------------------

    /// Draws the whole screen.
    pub fn render(&self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < 30 || area.height < 10 {
            frame.render_widget(
                Paragraph::new("viscript: terminal too small (30x10 at least); q quits")
                    .wrap(Wrap { trim: true }),
                area,
            );
            return;
        }
        let [header, main, status, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let [top, rest] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(main);
        let apps_w = (area.width * 35 / 100).clamp(20, 44);
        let [apps_area, logs_area] =
            Layout::horizontal([Constraint::Length(apps_w), Constraint::Fill(1)]).areas(rest);
        self.render_header(frame, header);
        self.render_components(frame, top);
        self.render_apps(frame, apps_area);
        self.render_logs(frame, logs_area);
        self.render_status(frame, status);
        self.render_bottom(frame, bottom);
        match &self.mode {
            Mode::Help(scroll) => self.render_help(frame, area, *scroll),
            Mode::Details(id) => self.render_details(frame, area, *id),
            Mode::Output(p) => render_popup(frame, area, &p.title, &p.lines, p.scroll),
            _ => {}
        }
    }

    fn pane_block(&self, pane: Pane, title: String) -> Block<'static> {
        let focused = self.focus == pane && matches!(self.mode, Mode::Normal | Mode::Filter);
        let style = if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        Block::bordered().border_style(style).title(Span::styled(
            title,
            if focused {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            },
        ))
    }

    fn render_header(&self, frame: &mut Frame, area: Rect) {
        let ready = self
            .components
            .iter()
            .filter(|c| c.state == "ready")
            .count();
        let mut spans = vec![
            Span::styled(
                " viscript ",
                Style::new()
                    .fg(Color::Black)
                    .bg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(" "),
        ];
        match &self.conn_error {
            Some(e) => spans.push(Span::styled(
                format!("{} | {e}", self.source),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )),
            None => {
                spans.push(Span::raw(format!(
                    "{} components, {ready} ready | ",
                    self.components.len()
                )));
                if self.embedded {
                    spans.push(Span::styled(
                        "embedded: q stops all",
                        Style::new().fg(Color::Yellow),
                    ));
                } else {
                    spans.push(Span::raw(self.source.clone()));
                }
            }
        }
        frame.render_widget(Line::from(spans), area);
    }

    fn render_components(&self, frame: &mut Frame, area: Rect) {
        let vis = self.visible();
        let mut title = format!(" components ({}) ", self.components.len());
        if !self.filter.is_empty() || self.mode == Mode::Filter {
            title.push_str(&format!("filter: {} ({} shown) ", self.filter, vis.len()));
        }
        let block = self.pane_block(Pane::Components, title);
        let inner_w = block.inner(area).width;
        let wide = inner_w >= 110;
        let spark_w: u16 = if wide { 16 } else { 6 };
        let name_w = vis
            .iter()
            .map(|c| c.app.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(4, 24) as u16;
        let n_rates = if wide { 3 } else { 1 };
        let header = Row::new([
            "ID", "NAME", "PID", "STATE", "UPTIME", "RST", "CPU%", "RSS", "RATE", "TREND",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows: Vec<Row> = vis
            .iter()
            .map(|c| {
                let u = self.usage.get(&c.id);
                let r = self.rates.get(&c.id).filter(|_| u.is_some());
                let top = r.map(Rates::top).unwrap_or_default();
                let rates = top
                    .iter()
                    .take(n_rates)
                    .map(|(k, v)| fmt_rate(k, *v))
                    .collect::<Vec<_>>()
                    .join("  ");
                let spark = match (r, top.first()) {
                    (Some(r), Some((k, _))) => r
                        .history
                        .get(*k)
                        .map(|h| sparkline(h, spark_w as usize))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                Row::new([
                    Cell::from(c.id.to_string()),
                    Cell::from(c.app.clone()),
                    Cell::from(c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
                    Cell::from(Span::styled(c.state.clone(), state_style(&c.state))),
                    Cell::from(c.uptime_ms.map(fmt_uptime).unwrap_or_else(|| "-".into())),
                    Cell::from(c.restarts.to_string()),
                    Cell::from(
                        u.map(|u| format!("{:.1}", u.cpu_percent))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Cell::from(
                        u.map(|u| fmt_bytes(u.rss_bytes))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Cell::from(rates),
                    Cell::from(Span::styled(spark, Style::new().fg(Color::Cyan))),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(3),
            Constraint::Length(name_w),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Fill(1),
            Constraint::Length(spark_w),
        ];
        let empty = vis.is_empty();
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .row_highlight_style(if self.focus == Pane::Components {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            })
            .highlight_symbol(">");
        let sel = self
            .selected
            .and_then(|s| vis.iter().position(|c| c.id == s));
        let mut state = TableState::default().with_selected(sel);
        frame.render_stateful_widget(table, area, &mut state);
        if empty {
            let inner = Rect {
                y: area.y + 2,
                height: area.height.saturating_sub(3),
                ..area.inner(ratatui::layout::Margin::new(2, 0))
            };
            let text = if !self.refreshed {
                "connecting..."
            } else if self.components.is_empty() {
                "nothing running: pick an app (\u{2190} to the apps pane) and press s, or :start APP"
            } else {
                "no component matches the filter (Esc clears it)"
            };
            frame.render_widget(
                Paragraph::new(Span::styled(text, Style::new().fg(Color::DarkGray))),
                inner,
            );
        }
    }

    fn render_apps(&self, frame: &mut Frame, area: Rect) {
        let block = self.pane_block(Pane::Apps, format!(" apps ({}) ", self.apps.len()));
        let items: Vec<ListItem> = self
            .apps
            .iter()
            .map(|a| {
                ListItem::new(Line::from(vec![
                    Span::styled(a.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw(" "),
                    Span::styled(a.desc.clone(), Style::new().fg(Color::Gray)),
                ]))
            })
            .collect();
        let list = List::new(items)
            .block(block)
            .highlight_style(if self.focus == Pane::Apps {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            })
            .highlight_symbol(if self.focus == Pane::Apps { ">" } else { " " });
        let mut state = ListState::default().with_selected(if self.apps.is_empty() {
            None
        } else {
            Some(self.app_sel)
        });
        frame.render_stateful_widget(list, area, &mut state);
    }

    fn render_logs(&self, frame: &mut Frame, area: Rect) {
        let title = match self.selected_component() {
            Some(c) => format!(" logs: {} {} ", c.id, c.app),
            None => " logs ".to_string(),
        };
        let mut title = title;
        if self.log_scroll > 0 {
            title.push_str(&format!("(scrolled {} up; End follows) ", self.log_scroll));
        }
        let block = self.pane_block(Pane::Logs, title);
        let inner = block.inner(area);
        let h = inner.height as usize;
        let lines: Vec<Line> = if self.selected.is_some() && self.log_id == self.selected {
            let end = self.log_lines.len().saturating_sub(self.log_scroll);
            let start = end.saturating_sub(h);
            self.log_lines[start..end]
                .iter()
                .map(|l| Line::raw(l.clone()))
                .collect()
        } else if self.selected.is_some() {
            vec![Line::styled("loading...", Style::new().fg(Color::DarkGray))]
        } else {
            vec![Line::styled(
                "select a component to follow its output",
                Style::new().fg(Color::DarkGray),
            )]
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn render_status(&self, frame: &mut Frame, area: Rect) {
        let line = match &self.status {
            Some(s) if s.error => Line::styled(
                s.text.clone(),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Some(s) => Line::styled(s.text.clone(), Style::new().fg(Color::Yellow)),
            None => Line::styled(
                format!(
                    "refresh {} ms{}",
                    self.refresh.as_millis(),
                    if self.pending > 0 {
                        " | working..."
                    } else {
                        ""
                    }
                ),
                Style::new().fg(Color::DarkGray),
            ),
        };
        frame.render_widget(line, area);
    }

    fn render_bottom(&self, frame: &mut Frame, area: Rect) {
        match self.mode {
            Mode::Command | Mode::Filter => {
                let (prompt, text, cursor) = if self.mode == Mode::Command {
                    (":", self.input.as_str(), self.cursor)
                } else {
                    ("/", self.filter.as_str(), self.filter.chars().count())
                };
                // Keep the cursor on screen for long lines.
                let room = area.width.saturating_sub(2) as usize;
                let skip = cursor.saturating_sub(room);
                let shown: String = text.chars().skip(skip).collect();
                frame.render_widget(
                    Line::from(vec![
                        Span::styled(prompt, Style::new().fg(Color::Cyan)),
                        Span::raw(shown),
                    ]),
                    area,
                );
                let x = area.x + 1 + (cursor - skip) as u16;
                frame.set_cursor_position(Position::new(x.min(area.right() - 1), area.y));
            }
            _ => {
                let key = Style::new().fg(Color::Black).bg(Color::Gray);
                let mut spans = Vec::new();
                for (k, what) in [
                    ("s", "start"),
                    ("r", "restart"),
                    ("d", "sd"),
                    ("k", "kill"),
                    ("l", "logs"),
                    ("⏎", "details"),
                    ("/", "filter"),
                    (":", "cmd"),
                    ("?", "help"),
                    ("q", "quit"),
                ] {
                    spans.push(Span::styled(k, key));
                    spans.push(Span::raw(format!(" {what} ")));
                }
                frame.render_widget(Line::from(spans), area);
            }
        }
    }

    fn render_help(&self, frame: &mut Frame, area: Rect, scroll: usize) {
        let quit = if self.embedded {
            "q          quit: stops every component (the supervisor runs in this GUI)"
        } else {
            "q          quit the GUI (the daemon and its components keep running)"
        };
        let mut lines: Vec<String> = vec![
            quit.into(),
            "Tab/→ ←    next / previous pane (components, logs, apps)".into(),
            "↑ ↓ PgUp   select a component or app; scroll the logs".into(),
            "Enter      details of the component (live) / help of the app".into(),
            "s          start the selected app (apps pane) or a stopped component".into(),
            "r          restart the selected component".into(),
            "d          graceful shutdown (sd) of the selected component".into(),
            "k          kill (SIGKILL) the selected component".into(),
            "p          ping the selected component".into(),
            "l          focus the log pane (End follows, Home goes to the top)".into(),
            "/          filter components by name (Enter keeps, Esc clears)".into(),
            ":          command line: every console command; Tab completes".into(),
            "           commands, app names and ids; ↑ ↓ history".into(),
            "Ctrl-L     redraw the screen".into(),
            "?          this help".into(),
            String::new(),
            "Commands:".into(),
        ];
        lines.extend(crate::command::HELP.lines().map(str::to_string));
        render_popup(frame, area, "help (Esc closes)", &lines, scroll);
    }

    fn render_details(&self, frame: &mut Frame, area: Rect, id: u64) {
        let Some(c) = self.components.iter().find(|c| c.id == id) else {
            render_popup(
                frame,
                area,
                "details",
                &[format!("component {id} is gone")],
                0,
            );
            return;
        };
        let mut lines = vec![
            format!("state     {}", c.state),
            format!(
                "pid       {}",
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
            ),
            format!(
                "uptime    {}",
                c.uptime_ms.map(fmt_uptime).unwrap_or_else(|| "-".into())
            ),
            format!("restarts  {}", c.restarts),
            format!(
                "args      {}",
                crate::units::shell_join(&c.args).replace('\n', " ")
            ),
        ];
        if let Some(e) = &c.last_exit {
            lines.push(format!("last exit {e}"));
        }
        if let Some(r) = c.ping_rtt_us {
            lines.push(format!("ping      {r} us"));
        }
        match self.usage.get(&id) {
            Some(u) => {
                lines.push(format!("cpu       {:.1} %", u.cpu_percent));
                lines.push(format!("rss       {}", fmt_bytes(u.rss_bytes)));
                lines.push(format!("threads   {}", u.threads));
                if !u.counters.is_empty() {
                    lines.push(String::new());
                    lines.push(format!(
                        "{:<24} {:>14} {:>12}",
                        "COUNTER", "VALUE", "RATE/s"
                    ));
                    let rates = self.rates.get(&id);
                    for (k, v) in &u.counters {
                        let r = rates
                            .and_then(|r| r.now.get(k))
                            .map(|r| fmt_si(*r))
                            .unwrap_or_else(|| "-".into());
                        lines.push(format!("{k:<24} {v:>14} {r:>12}"));
                    }
                }
            }
            None => lines.push("usage     (only for ready components)".into()),
        }
        render_popup(
            frame,
            area,
            &format!("{} {} (Esc closes)", c.id, c.app),
            &lines,
            0,
        );
    }
}

fn clean_lines(s: &str) -> Vec<String> {
    s.lines().map(clean).collect()
}

fn render_popup(frame: &mut Frame, area: Rect, title: &str, lines: &[String], scroll: usize) {
    let longest = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.chars().count() + 4);
    // max then min: never panics, whatever the terminal size.
    let w = (longest.min(1000) as u16 + 4)
        .max(30)
        .min(area.width.saturating_sub(2));
    let h = (lines.len().min(1000) as u16 + 2)
        .max(3)
        .min(area.height.saturating_sub(2));
    let rect = area.centered(Constraint::Length(w), Constraint::Length(h));
    let inner_h = h.saturating_sub(2) as usize;
    let scroll = scroll.min(lines.len().saturating_sub(inner_h));
    let mut block = Block::bordered()
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(
            format!(" {title} "),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    if lines.len() > inner_h {
        block = block.title_bottom(format!(
            " {}-{} of {} (↑↓) ",
            scroll + 1,
            (scroll + inner_h).min(lines.len()),
            lines.len()
        ));
    }
    let text: Vec<Line> = lines
        .iter()
        .skip(scroll)
        .take(inner_h)
        .map(|l| Line::raw(l.clone()))
        .collect();
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(block), rect);
}
