//! The level of a captured output line written by `tracing_subscriber::fmt`: an optional
//! timestamp, then `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`, then the message
//! (`2026-12-01T18:00:00.123456Z  INFO skywire_control::links: link up peer=...`, or with
//! `without_time()` just ` INFO skywire_control::links: ...`), possibly with ANSI colours.

use std::fmt;

/// A tracing level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `TRACE`.
    Trace,
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARN`.
    Warn,
    /// `ERROR`.
    Error,
}

impl Level {
    /// The spelling tracing uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// The level an operator names (`--level warn`): `error`, `warn`, `info`, `debug` or
    /// `trace`, in any case.
    pub fn from_name(name: &str) -> Option<Level> {
        Level::from_word(&name.to_ascii_uppercase())
    }

    /// The lowercase name (`warn`), as `--level` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The level of a message that came over the signal ring.
    pub fn from_ring(l: signal::proto::Level) -> Level {
        match l {
            signal::proto::Level::Debug => Level::Debug,
            signal::proto::Level::Info => Level::Info,
            signal::proto::Level::Warn => Level::Warn,
            signal::proto::Level::Error => Level::Error,
        }
    }

    fn from_word(w: &str) -> Option<Level> {
        Some(match w {
            "TRACE" => Level::Trace,
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARN" => Level::Warn,
            "ERROR" => Level::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Level {
    /// Right-aligned in five columns, as tracing prints it (`pad` with `{:>5}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Removes ANSI CSI sequences (`ESC [ params intermediates final`), as colours are.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in 0x40..=0x7e.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `w` looks like a timestamp tracing prints: RFC 3339 (`2026-12-01T18:00:00.123456Z`,
/// `...+01:00`) or an uptime (`0.123456789s`).
fn is_timestamp(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_digit())
        && w.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z' | '+' | 's'))
}

/// The level and the message of a line in tracing's fmt shape (colours removed), or `None`
/// for any other line.
pub fn parse(line: &str) -> Option<(Level, String)> {
    let plain;
    let line = if line.contains('\u{1b}') {
        plain = strip_ansi(line);
        plain.as_str()
    } else {
        line
    };
    let rest = line.trim_start();
    let word = |s: &str| {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        (s[..end].to_string(), end)
    };
    let (first, end) = word(rest);
    let rest = if is_timestamp(&first) {
        rest[end..].trim_start()
    } else {
        rest
    };
    let (lvl, end) = word(rest);
    let level = Level::from_word(&lvl)?;
    Some((level, rest[end..].trim_start().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_fmt_lines_and_others() {
        let table: &[(&str, Option<(Level, &str)>)] = &[
            (
                "2026-12-01T18:00:00.123456Z  INFO skywire_control::links: link up peer=ab",
                Some((Level::Info, "skywire_control::links: link up peer=ab")),
            ),
            (
                "2026-12-01T18:00:00.123456+01:00 WARN x: slow",
                Some((Level::Warn, "x: slow")),
            ),
            (
                " INFO skywire_node: ready",
                Some((Level::Info, "skywire_node: ready")),
            ),
            ("ERROR boom", Some((Level::Error, "boom"))),
            ("DEBUG", Some((Level::Debug, ""))),
            (
                "  0.001234567s TRACE a::b: step",
                Some((Level::Trace, "a::b: step")),
            ),
            (
                "\u{1b}[2m2026-12-01T18:00:00.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                 \u{1b}[2mskywire_control::links\u{1b}[0m\u{1b}[2m:\u{1b}[0m link up",
                Some((Level::Info, "skywire_control::links: link up")),
            ),
            ("hello from demo", None),
            ("", None),
            ("INFO: not tracing", None),
            ("info lowercase", None),
            ("thread 'main' panicked at src/main.rs:3:5:", None),
            ("2026-12-01T18:00:00Z something else", None),
            ("12 ERRORS found", None),
        ];
        for (line, want) in table {
            let got = parse(line);
            let want = want.map(|(l, m)| (l, m.to_string()));
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn names_and_order() {
        for l in [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ] {
            assert_eq!(Level::from_name(l.name()), Some(l));
            assert_eq!(Level::from_name(l.as_str()), Some(l));
        }
        assert_eq!(Level::from_name("Warn"), Some(Level::Warn));
        assert_eq!(Level::from_name("warning"), None);
        assert_eq!(Level::from_name(""), None);
        assert!(Level::Error > Level::Warn && Level::Warn > Level::Info);
        assert!(Level::Info > Level::Debug && Level::Debug > Level::Trace);
        assert_eq!(Level::from_ring(signal::proto::Level::Warn), Level::Warn);
    }

    #[test]
    fn ansi_is_stripped_and_levels_pad_like_tracing() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain"), "red plain");
        assert_eq!(strip_ansi("no escapes"), "no escapes");
        assert_eq!(strip_ansi("cut \u{1b}[3"), "cut ");
        assert_eq!(format!("{:>5}", Level::Info), " INFO");
        assert_eq!(format!("{:>5}", Level::Error), "ERROR");
    }
}
