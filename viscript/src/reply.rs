//! The `data` of the replies as typed values, defined once: the supervisor's renderer
//! ([`crate::render`]) serializes them and the GUI deserializes them. Field order is the wire
//! order. Every struct takes missing fields as their defaults, so a reply from an older daemon
//! (or a test's partial object) still reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The control protocol's answer object: `{"ok", "text", "data", "follow"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// Whether the command did what was asked.
    pub ok: bool,
    /// Human-readable text.
    pub text: String,
    /// One of the structs below (or `{"error": text}`).
    pub data: Value,
    /// More lines follow (`{"line": ...}`).
    pub follow: bool,
}

impl Envelope {
    /// Reads a reply object; anything unreadable is a failed reply.
    pub fn from_value(v: &Value) -> Envelope {
        Envelope::deserialize(v).unwrap_or_default()
    }

    /// `data` as `T`, when it reads as one.
    pub fn data<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        T::deserialize(&self.data).ok()
    }
}

/// `data` of a failed reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Error {
    /// The reply's text.
    pub error: String,
}

/// An entry of `apps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppEntry {
    /// App name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Long-running.
    pub daemon: bool,
    /// Started with the supervisor.
    pub autostart: bool,
    /// Executable.
    pub path: PathBuf,
    /// Arguments when none are given.
    pub default_args: Vec<String>,
    /// `always`, `on-failure` or `never`.
    pub restart: String,
    /// Apps that must be ready first.
    pub after: Vec<String>,
}

/// `help APP`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppHelp {
    /// App name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Its help text.
    pub help: String,
}

/// `help`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Help {
    /// The command summary.
    pub help: String,
}

/// A row of `list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Component {
    /// Sequence id.
    pub id: u64,
    /// App name.
    pub app: String,
    /// Process id while it runs.
    pub pid: Option<u32>,
    /// State name (`ready`, `exited`, ...).
    pub state: String,
    /// Arguments it was started with.
    pub args: Vec<String>,
    /// Time since it started, while it runs.
    pub uptime_ms: Option<u64>,
    /// Restarts so far.
    pub restarts: u32,
    /// Registered kind.
    pub kind: String,
    /// Registered version.
    pub version: String,
    /// Started outside viscript.
    pub external: bool,
    /// How it last exited.
    pub last_exit: Option<String>,
    /// Last ping round trip.
    pub ping_rtt_us: Option<u64>,
    /// The component's heartbeat word.
    pub heartbeat: Option<u64>,
    /// Output lines dropped by the rate limit.
    pub log_suppressed: u64,
}

/// `start` (and, with `ready_ms`, `start -w` and `restart`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Started {
    /// Component id.
    pub id: u64,
    /// App name.
    pub app: String,
    /// Its process (none while it waits for its `after` apps).
    pub pid: Option<u32>,
    /// Registration time, when the reply waited for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
}

/// `ping`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pong {
    /// Component id.
    pub id: u64,
    /// Round trip.
    pub rtt_us: f64,
}

/// `ru`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Component id.
    pub id: u64,
    /// CPU use, percent of one core.
    pub cpu_percent: f32,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Thread count.
    pub threads: u32,
    /// Process uptime.
    pub uptime_ms: u64,
    /// The component's own counters.
    pub counters: BTreeMap<String, u64>,
}

/// `sd` or `kill` of a component that does not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotRunning {
    /// Component id.
    pub id: u64,
    /// Its state now.
    pub state: String,
}

/// `sd` or `kill`: it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stopped {
    /// Component id.
    pub id: u64,
    /// How it ended.
    pub exit: String,
}

/// `logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Logs {
    /// Component id.
    pub id: u64,
    /// Rendered lines, oldest first.
    pub lines: Vec<String>,
    /// The severity of each line as `--level` counts it (`error` ... `trace`), in step with
    /// `lines`; empty from a daemon older than `--level`.
    pub levels: Vec<String>,
}

/// `attach`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attached {
    /// Component id.
    pub id: u64,
}

/// `routes` / `peers`: the component's own answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inspect {
    /// Component id.
    pub id: u64,
    /// Its text.
    pub text: String,
}

/// `quit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quit {
    /// Every process ended.
    pub stopped: bool,
}
