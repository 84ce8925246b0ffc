//! The configuration's types: what a loaded config holds and how loading fails.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Largest config file [`Config::load`] accepts.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Longest allowed app name.
pub const MAX_APP_NAME_LEN: usize = 64;

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
