//! Logging for components: `tracing` events as lines on stderr, in the shape viscript reads
//! (`TIMESTAMP LEVEL target: message fields`), so the console shows each captured line's level.
//!
//! The level is `SKYWIRE_LOG` (`error`, `warn`, `info`, `debug` or `trace`; default `info`).
//! Colours only when stderr is a terminal.

use std::io::IsTerminal;
use tracing::level_filters::LevelFilter;

/// The environment variable that sets the level.
pub const ENV_LEVEL: &str = "SKYWIRE_LOG";

/// The level `SKYWIRE_LOG` asks for; `info` when unset or not a level name.
pub fn level_from_env() -> LevelFilter {
    std::env::var(ENV_LEVEL)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Installs the stderr subscriber (once; later calls do nothing).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level_from_env())
        .try_init();
}
