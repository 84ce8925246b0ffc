//! The viscript app catalogue: loading, validating and querying `config.yaml`.
//!
//! The file is YAML with two optional top-level keys, `settings` and `apps`.
//! Parsing is strict: unknown keys, wrong types, duplicate keys, bad app names,
//! unknown `after` targets and dependency cycles are all errors, and every
//! error names `file:line:column`.
//!
//! Errors that leave the document readable (unknown keys, bad names, semantic
//! problems) are collected and reported together; a YAML syntax error or a
//! value of the wrong type stops parsing at that point.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

/// Largest config file [`Config::load`] accepts.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Longest allowed app name.
pub const MAX_APP_NAME_LEN: usize = 64;

const TOP_FIELDS: &[&str] = &["settings", "apps"];
const SETTINGS_FIELDS: &[&str] = &[
    "ping_interval_ms",
    "ping_failures",
    "ready_timeout_ms",
    "shutdown_grace_ms",
    "term_grace_ms",
    "backoff_initial_ms",
    "backoff_max_ms",
    "backoff_jitter",
    "start_limit",
    "start_window_ms",
    "degraded_retry_ms",
    "log_lines",
    "log_rate",
    "socket",
];
const APP_FIELDS: &[&str] = &[
    "path",
    "default_args",
    "daemon",
    "desc",
    "help",
    "autostart",
    "restart",
    "after",
    "env",
];

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A loaded and validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Global settings (defaults filled in).
    pub settings: Settings,
    /// The apps, in file order.
    pub apps: Vec<App>,
    /// The config file this was read from.
    pub path: PathBuf,
}

/// Global supervisor settings. Every field has a default, see [`Settings::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Liveness ping period.
    pub ping_interval: Duration,
    /// Missed pings before a daemon counts as hung.
    pub ping_failures: u32,
    /// A started app must register within this, else it counts as failed.
    pub ready_timeout: Duration,
    /// Wait after the signal-ring shutdown message, before SIGTERM.
    pub shutdown_grace: Duration,
    /// Wait after SIGTERM, before SIGKILL.
    pub term_grace: Duration,
    /// First restart backoff; doubles with each consecutive failure.
    pub backoff_initial: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Relative jitter applied to the backoff, in `[0, 1]` (0.2 = +-20%).
    pub backoff_jitter: f64,
    /// This many starts within `start_window` moves an app to "degraded".
    pub start_limit: u32,
    /// Window for `start_limit`.
    pub start_window: Duration,
    /// Slow retry period in the degraded state.
    pub degraded_retry: Duration,
    /// Per-app bounded log buffer, in lines.
    pub log_lines: usize,
    /// Per-app accepted log lines per second (token bucket, burst = `log_rate`).
    pub log_rate: u32,
    /// Control socket path; `None` lets the caller pick. A relative path is
    /// resolved against the config file's folder.
    pub socket: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ping_interval: Duration::from_millis(1000),
            ping_failures: 3,
            ready_timeout: Duration::from_millis(10_000),
            shutdown_grace: Duration::from_millis(3000),
            term_grace: Duration::from_millis(2000),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_millis(30_000),
            backoff_jitter: 0.2,
            start_limit: 5,
            start_window: Duration::from_millis(60_000),
            degraded_retry: Duration::from_millis(300_000),
            log_lines: 2000,
            log_rate: 1000,
            socket: None,
        }
    }
}

/// One app of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Executable; relative paths are resolved against the config file's folder.
    pub path: PathBuf,
    /// Arguments used when none are given at start time.
    pub default_args: Vec<String>,
    /// Long-running (pinged, restarted) rather than one-shot.
    pub daemon: bool,
    /// One-line description.
    pub desc: String,
    /// Longer help text.
    pub help: String,
    /// Start when the supervisor starts.
    pub autostart: bool,
    /// Restart policy (default: `on-failure` for daemons, else `never`).
    pub restart: Restart,
    /// Apps that must be ready before this one starts, as written.
    pub after: Vec<String>,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
}

/// Restart policy of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Restart whenever the app exits.
    Always,
    /// Restart only after a failure (non-zero exit, signal, hang, not ready in time).
    OnFailure,
    /// Never restart.
    Never,
}

impl Restart {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in characters).
    pub column: u64,
}

/// One problem found in a config file. Displays as `file:line:col: message`
/// (or `file: message` when the position is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file, as given to [`Config::load`] / [`Config::parse`].
    pub file: PathBuf,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// What is wrong (one line, control characters escaped).
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be opened or read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {} is too large (more than {limit} bytes)", path.display())]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not valid UTF-8.
    #[error("{}:{line}:{column}: config file is not valid UTF-8", path.display())]
    NotUtf8 {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: u64,
        /// 1-based column (in characters) of the first invalid byte.
        column: u64,
    },
    /// The content is invalid: one line per problem, sorted by position.
    /// A YAML syntax error or wrongly typed value stops parsing, so it is the
    /// last problem found; other problems are all collected.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The individual problems (empty for I/O, size and encoding errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            _ => &[],
        }
    }
}

fn join_lines(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

// ---------------------------------------------------------------------------
// Config API
// ---------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates the config file at `path`.
    ///
    /// Relative app paths are resolved against the folder of `path` made
    /// absolute (without resolving symlinks); `Config::path` is that absolute
    /// path. Error messages use `path` as given.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_err = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                let column =
                    String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
                return Err(ConfigError::NotUtf8 {
                    path: path.to_path_buf(),
                    line,
                    column,
                });
            }
        };
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        parse_impl(&text, path, &absolute)
    }

    /// Parses and validates config text. `path` is the file the text came
    /// from: it names the file in errors and relative paths resolve against
    /// its folder. Nothing is read from disk.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse_impl(text, path, path)
    }

    /// The app called `name`.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// All apps in start order: every app comes after the apps in its `after`
    /// list; otherwise file order is kept (Kahn's algorithm, earliest app in
    /// the file first). `after` names that are not in the config are ignored.
    /// Never panics: should the apps have been edited into a cycle, the apps
    /// on it follow in file order.
    pub fn start_order(&self) -> Vec<&App> {
        let n = self.apps.len();
        let deps: Vec<Vec<usize>> = self
            .apps
            .iter()
            .map(|a| a.after.iter().filter_map(|d| self.index_of(d)).collect())
            .collect();
        let mut placed = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(&self.apps[i]);
                }
                None => break,
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            if !placed[i] {
                order.push(app);
            }
        }
        order
    }

    /// All apps in stop order: the reverse of [`Config::start_order`], so an
    /// app stops before the apps it depends on.
    pub fn stop_order(&self) -> Vec<&App> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.name == name)
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_nodes: 200_000,
            max_events: 500_000,
            max_aliases: 10_000,
            max_anchors: 10_000,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

fn parse_impl(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
    let ctx = RefCell::new(Ctx::default());
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
            RootSeed { ctx: &ctx }.deserialize(de)
        });
    let mut ctx = ctx.into_inner();
    let mut problems = std::mem::take(&mut ctx.problems);
    let config = match result {
        Ok(raw) => validate(raw, base, &mut problems),
        Err(err) => {
            problems.push(saphyr_problem(&err, &ctx));
            None
        }
    };
    match config {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => {
            problems.sort_by_key(|p| (p.0.is_none(), p.0));
            Err(ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|(pos, msg)| Diagnostic {
                        file: file.to_path_buf(),
                        pos,
                        message: sanitize(&msg),
                    })
                    .collect(),
            ))
        }
    }
}

type Problem = (Option<Pos>, String);

/// Where the deserializer currently is; used to explain its errors.
#[derive(Debug, Default, Clone)]
enum Section {
    #[default]
    Top,
    Settings,
    Apps,
    App(String),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Top => f.write_str("the top level"),
            Section::Settings => f.write_str("`settings`"),
            Section::Apps => f.write_str("`apps`"),
            Section::App(name) => write!(f, "app `{name}`"),
        }
    }
}

#[derive(Debug, Default)]
struct Ctx {
    section: Section,
    /// Field whose value is being read.
    field: Option<&'static str>,
    /// App names read so far, for duplicate reports.
    seen_apps: Vec<(String, Option<Pos>)>,
    /// Recoverable problems found while parsing.
    problems: Vec<Problem>,
}

fn set_section(ctx: &RefCell<Ctx>, section: Section) {
    let mut c = ctx.borrow_mut();
    c.section = section;
    c.field = None;
}

fn pos_of(loc: &serde_saphyr::Location) -> Option<Pos> {
    (loc.line() > 0).then(|| Pos {
        line: loc.line(),
        column: loc.column(),
    })
}

/// Explains a serde-saphyr error using the parse context.
fn saphyr_problem(err: &serde_saphyr::Error, ctx: &Ctx) -> Problem {
    let pos = err.location().as_ref().and_then(pos_of);
    let mut inner = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = inner {
        let key = key.as_deref().unwrap_or("?");
        let msg = match (&ctx.section, ctx.field) {
            (Section::Apps, None) => {
                let first = ctx
                    .seen_apps
                    .iter()
                    .find(|(n, _)| n == key)
                    .and_then(|(_, p)| *p);
                match first {
                    Some(p) => format!(
                        "duplicate app `{key}` (first defined at line {}, column {})",
                        p.line, p.column
                    ),
                    None => format!("duplicate app `{key}`"),
                }
            }
            (Section::Top, None) => format!("duplicate top-level key `{key}`"),
            (section, None) => format!("duplicate key `{key}` in {section}"),
            (section, Some(field)) => format!("duplicate key `{key}` in `{field}` of {section}"),
        };
        return (pos, msg);
    }
    let raw = UserMessageFormatter.format_message(inner);
    let msg = raw
        .replace("expected mapping start", "expected a mapping")
        .replace("expected sequence start", "expected a list")
        .replace("expected string scalar", "expected a string");
    use serde_saphyr::Error as E;
    if matches!(inner, E::ExternalMessage { .. }) {
        return (pos, format!("YAML syntax error: {msg}"));
    }
    if matches!(
        inner,
        E::Eof { .. }
            | E::MultipleDocuments { .. }
            | E::Budget { .. }
            | E::IndentationError { .. }
            | E::AliasReplayCounterOverflow { .. }
            | E::AliasReplayLimitExceeded { .. }
            | E::AliasExpansionLimitExceeded { .. }
            | E::AliasReplayStackDepthExceeded { .. }
            | E::IOError { .. }
    ) {
        return (pos, msg);
    }
    let msg = match (&ctx.section, ctx.field) {
        (Section::Top, None) => format!("invalid top-level document: {msg}"),
        (Section::Top, Some(field)) => format!("invalid value for `{field}`: {msg}"),
        (section, None) => format!("in {section}: {msg}"),
        (section, Some(field)) => format!("invalid value for `{field}` in {section}: {msg}"),
    };
    (pos, msg)
}

/// Escapes control characters so a message stays on one line.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Records an unknown key (with a spelling suggestion) and skips its value.
fn unknown_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    ctx: &RefCell<Ctx>,
    key: &Spanned<String>,
    expected: &[&str],
) -> Result<(), A::Error> {
    let msg = {
        let c = ctx.borrow();
        let place = match &c.section {
            Section::Top => "at the top level".to_string(),
            other => format!("in {other}"),
        };
        let hint = suggest(&key.value, expected)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        format!(
            "unknown field `{}` {place}{hint}, expected one of: {}",
            key.value,
            expected.join(", ")
        )
    };
    ctx.borrow_mut()
        .problems
        .push((pos_of(&key.referenced), msg));
    map.next_value::<IgnoredAny>()?;
    Ok(())
}

fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Reads the value of `field`, recording the field for error messages.
fn field_value<'de, A, T>(
    map: &mut A,
    ctx: &RefCell<Ctx>,
    field: &'static str,
) -> Result<(T, Option<Pos>), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    ctx.borrow_mut().field = Some(field);
    let v: Spanned<T> = map.next_value()?;
    ctx.borrow_mut().field = None;
    Ok((v.value, pos_of(&v.referenced)))
}

fn known_field(key: &str, fields: &[&'static str]) -> Option<&'static str> {
    fields.iter().copied().find(|f| *f == key)
}

#[derive(Debug, Default)]
struct RawRoot {
    settings: RawSettings,
    apps: Vec<RawApp>,
}

#[derive(Debug, Default)]
struct RawSettings {
    s: Settings,
    /// Positions of the values given, by field name.
    pos: Vec<(&'static str, Option<Pos>)>,
}

impl RawSettings {
    fn pos(&self, field: &str) -> Option<Pos> {
        self.pos.iter().find(|(f, _)| *f == field).and_then(|p| p.1)
    }
}

#[derive(Debug, Default)]
struct RawApp {
    name: String,
    name_pos: Option<Pos>,
    path: Option<(String, Option<Pos>)>,
    default_args: (Vec<String>, Option<Pos>),
    daemon: bool,
    desc: String,
    help: String,
    autostart: bool,
    restart: Option<Restart>,
    after: Vec<Spanned<String>>,
    env: Vec<(Spanned<String>, String)>,
}

struct RootSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_> {
    type Value = RawRoot;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRoot, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_> {
    type Value = RawRoot;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `settings` and `apps`")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawRoot, E> {
        Ok(RawRoot::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawRoot, E> {
        Ok(RawRoot::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawRoot, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRoot, A::Error> {
        let ctx = self.ctx;
        let mut root = RawRoot::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match key.value.as_str() {
                "settings" => {
                    ctx.borrow_mut().field = Some("settings");
                    root.settings = map.next_value_seed(SettingsSeed { ctx })?;
                    set_section(ctx, Section::Top);
                }
                "apps" => {
                    ctx.borrow_mut().field = Some("apps");
                    root.apps = map.next_value_seed(AppsSeed { ctx })?;
                    set_section(ctx, Section::Top);
                }
                _ => unknown_key(&mut map, ctx, &key, TOP_FIELDS)?,
            }
        }
        Ok(root)
    }
}

struct SettingsSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for SettingsSeed<'_> {
    type Value = RawSettings;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawSettings, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SettingsSeed<'_> {
    type Value = RawSettings;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of settings")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawSettings, E> {
        Ok(RawSettings::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawSettings, E> {
        Ok(RawSettings::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawSettings, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSettings, A::Error> {
        let ctx = self.ctx;
        set_section(ctx, Section::Settings);
        let mut raw = RawSettings::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let Some(field) = known_field(&key.value, SETTINGS_FIELDS) else {
                unknown_key(&mut map, ctx, &key, SETTINGS_FIELDS)?;
                continue;
            };
            let s = &mut raw.s;
            let ms = Duration::from_millis;
            let pos = match field {
                "ping_failures" => set(&mut s.ping_failures, field_value(&mut map, ctx, field)?),
                "backoff_jitter" => set(&mut s.backoff_jitter, field_value(&mut map, ctx, field)?),
                "start_limit" => set(&mut s.start_limit, field_value(&mut map, ctx, field)?),
                "log_lines" => set(&mut s.log_lines, field_value(&mut map, ctx, field)?),
                "log_rate" => set(&mut s.log_rate, field_value(&mut map, ctx, field)?),
                "socket" => {
                    let (v, pos): (Option<String>, _) = field_value(&mut map, ctx, field)?;
                    s.socket = v.map(PathBuf::from);
                    pos
                }
                _ => {
                    let (v, pos): (u64, _) = field_value(&mut map, ctx, field)?;
                    let slot = match field {
                        "ping_interval_ms" => &mut s.ping_interval,
                        "ready_timeout_ms" => &mut s.ready_timeout,
                        "shutdown_grace_ms" => &mut s.shutdown_grace,
                        "term_grace_ms" => &mut s.term_grace,
                        "backoff_initial_ms" => &mut s.backoff_initial,
                        "backoff_max_ms" => &mut s.backoff_max,
                        "start_window_ms" => &mut s.start_window,
                        _ => &mut s.degraded_retry,
                    };
                    *slot = ms(v);
                    pos
                }
            };
            raw.pos.push((field, pos));
        }
        Ok(raw)
    }
}

fn set<T>(slot: &mut T, (value, pos): (T, Option<Pos>)) -> Option<Pos> {
    *slot = value;
    pos
}

struct AppsSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for AppsSeed<'_> {
    type Value = Vec<RawApp>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawApp>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for AppsSeed<'_> {
    type Value = Vec<RawApp>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of app names to apps")
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<RawApp>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<RawApp>, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawApp>, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<RawApp>, A::Error> {
        let ctx = self.ctx;
        set_section(ctx, Section::Apps);
        let mut apps = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let name_pos = pos_of(&key.referenced);
            ctx.borrow_mut()
                .seen_apps
                .push((key.value.clone(), name_pos));
            set_section(ctx, Section::App(key.value.clone()));
            let mut app = map.next_value_seed(AppSeed { ctx })?;
            app.name = key.value;
            app.name_pos = name_pos;
            apps.push(app);
            set_section(ctx, Section::Apps);
        }
        Ok(apps)
    }
}

struct AppSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for AppSeed<'_> {
    type Value = RawApp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawApp, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for AppSeed<'_> {
    type Value = RawApp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping describing an app")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawApp, E> {
        Ok(RawApp::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawApp, E> {
        Ok(RawApp::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawApp, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawApp, A::Error> {
        let ctx = self.ctx;
        let mut app = RawApp::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let Some(field) = known_field(&key.value, APP_FIELDS) else {
                unknown_key(&mut map, ctx, &key, APP_FIELDS)?;
                continue;
            };
            match field {
                "path" => app.path = Some(field_value(&mut map, ctx, field)?),
                "default_args" => app.default_args = field_value(&mut map, ctx, field)?,
                "daemon" => app.daemon = field_value(&mut map, ctx, field)?.0,
                "desc" => app.desc = field_value(&mut map, ctx, field)?.0,
                "help" => app.help = field_value(&mut map, ctx, field)?.0,
                "autostart" => app.autostart = field_value(&mut map, ctx, field)?.0,
                "restart" => app.restart = Some(field_value(&mut map, ctx, field)?.0),
                "after" => app.after = field_value(&mut map, ctx, field)?.0,
                _ => app.env = field_value::<_, EnvList>(&mut map, ctx, field)?.0.0,
            }
        }
        Ok(app)
    }
}

/// A string-to-string mapping kept in file order.
struct EnvList(Vec<(Spanned<String>, String)>);

impl<'de> Deserialize<'de> for EnvList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(EnvVisitor)
    }
}

struct EnvVisitor;

impl<'de> Visitor<'de> for EnvVisitor {
    type Value = EnvList;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of environment variable names to values")
    }
    fn visit_none<E: de::Error>(self) -> Result<EnvList, E> {
        Ok(EnvList(Vec::new()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<EnvList, E> {
        Ok(EnvList(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<EnvList, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvList, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<String>, String>()? {
            out.push(entry);
        }
        Ok(EnvList(out))
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn resolve(base_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_file.parent().unwrap_or(Path::new("")).join(p)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("app name must not be empty".into());
    }
    if len > MAX_APP_NAME_LEN {
        return Err(format!(
            "app name `{name}` is too long ({len} characters, at most {MAX_APP_NAME_LEN})"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid app name `{name}`: character {c:?} is not allowed (use A-Z a-z 0-9 . _ -)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("invalid app name `{name}`"));
    }
    Ok(())
}

/// Turns the raw parse into a `Config`, appending every problem found.
fn validate(raw: RawRoot, base: &Path, problems: &mut Vec<Problem>) -> Option<Config> {
    let RawRoot { settings, apps } = raw;
    let mut s = settings.s.clone();
    let mut bad = |field: &str, msg: String| problems.push((settings.pos(field), msg));
    if s.ping_interval.is_zero() {
        bad(
            "ping_interval_ms",
            "`ping_interval_ms` in `settings` must be greater than 0".into(),
        );
    }
    if s.start_limit == 0 {
        bad(
            "start_limit",
            "`start_limit` in `settings` must be at least 1".into(),
        );
    }
    if s.log_lines == 0 {
        bad(
            "log_lines",
            "`log_lines` in `settings` must be at least 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&s.backoff_jitter) {
        bad(
            "backoff_jitter",
            format!(
                "`backoff_jitter` in `settings` must be between 0 and 1, got {}",
                s.backoff_jitter
            ),
        );
    }
    if let Some(sock) = &s.socket {
        if sock.as_os_str().is_empty() {
            bad("socket", "`socket` in `settings` must not be empty".into());
        } else if sock.to_string_lossy().contains('\0') {
            bad(
                "socket",
                "`socket` in `settings` must not contain NUL".into(),
            );
        }
        s.socket = Some(resolve(base, &sock.to_string_lossy()));
    }

    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let mut out = Vec::with_capacity(apps.len());
    for app in &apps {
        let at = app.name_pos;
        let name = &app.name;
        if let Err(msg) = check_name(name) {
            problems.push((at, msg));
        }
        let path = match &app.path {
            None => {
                problems.push((at, format!("app `{name}` is missing required field `path`")));
                PathBuf::new()
            }
            Some((p, pos)) => {
                if p.is_empty() {
                    problems.push((*pos, format!("`path` of app `{name}` must not be empty")));
                } else if p.contains('\0') {
                    problems.push((*pos, format!("`path` of app `{name}` must not contain NUL")));
                }
                resolve(base, p)
            }
        };
        if app.default_args.0.iter().any(|a| a.contains('\0')) {
            problems.push((
                app.default_args.1,
                format!("`default_args` of app `{name}` must not contain NUL"),
            ));
        }
        let mut env = Vec::with_capacity(app.env.len());
        for (k, v) in &app.env {
            let key = &k.value;
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                problems.push((
                    pos_of(&k.referenced),
                    format!(
                        "invalid environment variable name `{key}` in app `{name}` (must be non-empty, without `=` or NUL)"
                    ),
                ));
            }
            if v.contains('\0') {
                problems.push((
                    pos_of(&k.referenced),
                    format!("environment variable `{key}` of app `{name}` must not contain NUL"),
                ));
            }
            env.push((key.clone(), v.clone()));
        }
        let mut after: Vec<String> = Vec::with_capacity(app.after.len());
        for dep in &app.after {
            if !names.contains(&dep.value.as_str()) {
                let hint = suggest(&dep.value, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                problems.push((
                    pos_of(&dep.referenced),
                    format!(
                        "app `{name}` lists unknown app `{}` in `after`{hint}",
                        dep.value
                    ),
                ));
            }
            if !after.contains(&dep.value) {
                after.push(dep.value.clone());
            }
        }
        out.push(App {
            name: name.clone(),
            path,
            default_args: app.default_args.0.clone(),
            daemon: app.daemon,
            desc: app.desc.clone(),
            help: app.help.clone(),
            autostart: app.autostart,
            restart: app.restart.unwrap_or(if app.daemon {
                Restart::OnFailure
            } else {
                Restart::Never
            }),
            after,
            env,
        });
    }

    for cycle in find_cycles(&out) {
        let first = cycle.first().copied().unwrap_or(0);
        let mut chain: Vec<String> = cycle
            .iter()
            .map(|&i| format!("`{}`", out[i].name))
            .collect();
        chain.push(format!("`{}`", out[first].name));
        let pos = apps.get(first).and_then(|a| a.name_pos);
        problems.push((
            pos,
            format!(
                "dependency cycle in `after`: {} (each app waits for the next)",
                chain.join(" -> ")
            ),
        ));
    }

    Some(Config {
        settings: s,
        apps: out,
        path: base.to_path_buf(),
    })
}

/// Every cycle reachable by following `after` edges, each as app indices
/// starting at its earliest app in file order, without repeats.
fn find_cycles(apps: &[App]) -> Vec<Vec<usize>> {
    let n = apps.len();
    let deps: Vec<Vec<usize>> = apps
        .iter()
        .map(|a| {
            a.after
                .iter()
                .filter_map(|d| apps.iter().position(|b| &b.name == d))
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the DFS stack, 2 = done.
    let mut color = vec![0u8; n];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        color[start] = 1;
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let (v, i) = *top;
            if let Some(&w) = deps[v].get(i) {
                top.1 += 1;
                match color[w] {
                    0 => {
                        color[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        if let Some(at) = stack.iter().position(|&(x, _)| x == w) {
                            let mut cycle: Vec<usize> =
                                stack[at..].iter().map(|&(x, _)| x).collect();
                            if let Some(min_at) = (0..cycle.len()).min_by_key(|&k| cycle[k]) {
                                cycle.rotate_left(min_at);
                            }
                            if !cycles.contains(&cycle) {
                                cycles.push(cycle);
                            }
                        }
                    }
                    _ => {}
                }
            } else {
                color[v] = 2;
                stack.pop();
            }
        }
    }
    cycles
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

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
}
