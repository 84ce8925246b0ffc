//! The per-app output buffer: bounded in lines, rate-limited, with what it had to drop counted
//! and shown in place.
//!
//! Every line has a severity, which `logs --level` filters on: the level of a line in tracing's
//! fmt shape, the level a ring log message was sent with, else by source: plain stdout and
//! viscript's own lines count as info, plain stderr lines as error.

use crate::loglevel::{self, Level};
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

/// Longest line kept; longer output is split.
pub const MAX_LINE: usize = 4096;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The app's stdout.
    Stdout,
    /// The app's stderr.
    Stderr,
    /// A log message over the signal ring.
    Ring,
    /// viscript itself (state changes, drops).
    Viscript,
}

impl Source {
    /// The severity of a line from here that carries no level of its own.
    pub fn default_level(self) -> Level {
        match self {
            Source::Stderr => Level::Error,
            Source::Stdout | Source::Ring | Source::Viscript => Level::Info,
        }
    }

    /// Short tag for display.
    pub fn tag(self) -> &'static str {
        match self {
            Source::Stdout => "out",
            Source::Stderr => "err",
            Source::Ring => "log",
            Source::Viscript => "vis",
        }
    }
}

/// One captured line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Wall-clock time of capture (for display only).
    pub at: SystemTime,
    /// Origin.
    pub source: Source,
    /// The level, for stdout and stderr lines in tracing's fmt shape.
    pub level: Option<Level>,
    /// Text, without newline (for a line with a level: the message after it, colours
    /// removed).
    pub text: String,
    /// What `logs --level` counts it as: `level`, the ring message's level, or the source's
    /// [`Source::default_level`].
    pub severity: Level,
}

impl Line {
    /// `HH:MM:SS.mmm tag text` (UTC); a line with a level shows the level (` INFO`, `ERROR`,
    /// five columns) in place of the tag.
    pub fn render(&self) -> String {
        let d = self
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let s = d.as_secs() % 86_400;
        let tag = match self.level {
            Some(l) => format!("{l:>5}"),
            None => self.source.tag().to_string(),
        };
        format!(
            "{:02}:{:02}:{:02}.{:03} {} {}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            d.subsec_millis(),
            tag,
            self.text
        )
    }
}

/// Bounded, rate-limited line buffer.
#[derive(Debug)]
pub struct LogBuf {
    lines: VecDeque<Line>,
    cap: usize,
    rate: f64,
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    total_suppressed: u64,
    total: u64,
}

impl LogBuf {
    /// Keeps at most `cap` lines and accepts `rate` lines per second (burst `rate`).
    pub fn new(cap: usize, rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        LogBuf {
            lines: VecDeque::with_capacity(cap.min(1024)),
            cap: cap.max(1),
            rate,
            tokens: rate,
            refilled: now,
            suppressed: 0,
            total_suppressed: 0,
            total: 0,
        }
    }

    fn store(&mut self, line: Line) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.total += 1;
    }

    /// Offers a line. Returns the lines actually stored (0, 1, or 2 when a "suppressed" notice
    /// goes first) so followers see the same thing.
    pub fn push(&mut self, source: Source, text: &str, now: Instant) -> Vec<Line> {
        self.push_with(source, None, text, now)
    }

    /// [`push`](Self::push) of a ring log message sent at `level` (shown as the text says; the
    /// level counts for `logs --level`).
    pub fn push_ring(&mut self, level: Level, text: &str, now: Instant) -> Vec<Line> {
        self.push_with(Source::Ring, Some(level), text, now)
    }

    fn push_with(
        &mut self,
        source: Source,
        ring_level: Option<Level>,
        text: &str,
        now: Instant,
    ) -> Vec<Line> {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate);
        self.refilled = now;
        if source != Source::Viscript {
            if self.tokens < 1.0 {
                self.suppressed += 1;
                self.total_suppressed += 1;
                return Vec::new();
            }
            self.tokens -= 1.0;
        }
        let mut out = Vec::new();
        if self.suppressed > 0 {
            let notice = Line {
                at: SystemTime::now(),
                source: Source::Viscript,
                level: None,
                severity: Source::Viscript.default_level(),
                text: format!(
                    "{} lines suppressed (over {} lines/s)",
                    self.suppressed, self.rate
                ),
            };
            self.suppressed = 0;
            self.store(notice.clone());
            out.push(notice);
        }
        let (level, mut text) = match source {
            Source::Stdout | Source::Stderr => match loglevel::parse(text) {
                Some((l, message)) => (Some(l), message),
                None => (None, text.to_owned()),
            },
            Source::Ring | Source::Viscript => (None, text.to_owned()),
        };
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [truncated]");
        }
        let line = Line {
            at: SystemTime::now(),
            source,
            level,
            text,
            severity: level
                .or(ring_level)
                .unwrap_or_else(|| source.default_level()),
        };
        self.store(line.clone());
        out.push(line);
        out
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &Line> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n))
    }

    /// The last `n` lines of severity `min` or more, oldest first.
    pub fn tail_at(&self, n: usize, min: Level) -> Vec<&Line> {
        let mut out: Vec<&Line> = self
            .lines
            .iter()
            .rev()
            .filter(|l| l.severity >= min)
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Lines dropped by the rate limit so far.
    pub fn suppressed_total(&self) -> u64 {
        self.total_suppressed
    }

    /// Lines stored so far (including ones since evicted).
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Splits a byte stream into lines, keeping a bounded partial line between reads.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `f` for each complete line (lossy UTF-8, `\r` trimmed). A line longer
    /// than [`MAX_LINE`] is emitted in pieces.
    pub fn feed(&mut self, mut bytes: &[u8], mut f: impl FnMut(&str)) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    let mut line = std::mem::take(&mut self.partial);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    f(&String::from_utf8_lossy(&line));
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            while self.partial.len() >= MAX_LINE {
                let rest = self.partial.split_off(MAX_LINE);
                let piece = std::mem::replace(&mut self.partial, rest);
                f(&String::from_utf8_lossy(&piece));
            }
        }
    }

    /// Emits what is left (at end of stream).
    pub fn finish(&mut self, mut f: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            f(&String::from_utf8_lossy(&line));
        }
    }
}

/// Idle period after which a line buffer's rate limit is full again (for tests).
pub const REFILL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_rate_limited_with_notice() {
        let t0 = Instant::now();
        let mut b = LogBuf::new(5, 3, t0);
        for i in 0..10 {
            b.push(Source::Stdout, &format!("l{i}"), t0);
        }
        assert_eq!(b.suppressed_total(), 7);
        let later = t0 + REFILL;
        let stored = b.push(Source::Stdout, "after", later);
        assert_eq!(stored.len(), 2);
        assert!(stored[0].text.contains("7 lines suppressed"));
        let all: Vec<_> = b.tail(10).map(|l| l.text.clone()).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all.last().unwrap(), "after");
    }

    #[test]
    fn captured_lines_keep_their_level() {
        let t0 = Instant::now();
        let mut b = LogBuf::new(10, 100, t0);
        let tail = |b: &mut LogBuf, source, text: &str| {
            let l = b.push(source, text, t0).pop().unwrap();
            let r = l.render();
            (l.level, r[13..].to_string())
        };
        assert_eq!(
            tail(
                &mut b,
                Source::Stderr,
                "2026-12-01T18:00:00.123456Z  INFO a::b: up"
            ),
            (Some(Level::Info), " INFO a::b: up".to_string())
        );
        assert_eq!(
            tail(&mut b, Source::Stdout, "ERROR a: down"),
            (Some(Level::Error), "ERROR a: down".to_string())
        );
        assert_eq!(
            tail(&mut b, Source::Stderr, "plain stderr"),
            (None, "err plain stderr".to_string())
        );
        assert_eq!(
            tail(&mut b, Source::Stdout, "plain stdout"),
            (None, "out plain stdout".to_string())
        );
        // Ring and viscript lines are never parsed.
        assert_eq!(
            tail(&mut b, Source::Ring, "INFO from the ring"),
            (None, "log INFO from the ring".to_string())
        );
        assert_eq!(
            tail(&mut b, Source::Viscript, "WARN note"),
            (None, "vis WARN note".to_string())
        );
    }

    #[test]
    fn severity_and_tail_at_a_level() {
        let t0 = Instant::now();
        let mut b = LogBuf::new(20, 100, t0);
        b.push(Source::Stdout, "plain out", t0);
        b.push(Source::Stderr, "plain err", t0);
        b.push(Source::Stderr, " WARN a: slow", t0);
        b.push(Source::Stdout, "DEBUG a: detail", t0);
        b.push(Source::Stdout, "TRACE a: step", t0);
        b.push_ring(Level::Warn, "[warn] from the ring", t0);
        b.push(Source::Ring, "event up: 1", t0);
        b.push(Source::Viscript, "restarting in 200ms", t0);
        b.push(Source::Stderr, "2026-12-01T18:00:00.1Z ERROR a: down", t0);
        let at = |min| -> Vec<String> {
            b.tail_at(50, min)
                .into_iter()
                .map(|l| l.text.clone())
                .collect()
        };
        assert_eq!(
            at(Level::Error),
            ["plain err", "a: down"],
            "plain stderr counts as error"
        );
        assert_eq!(
            at(Level::Warn),
            ["plain err", "a: slow", "[warn] from the ring", "a: down"]
        );
        assert_eq!(at(Level::Info).len(), 7);
        assert_eq!(at(Level::Debug).len(), 8);
        assert_eq!(at(Level::Trace).len(), 9);
        // `n` counts the lines that pass, newest kept.
        let two: Vec<_> = b
            .tail_at(2, Level::Warn)
            .iter()
            .map(|l| l.text.clone())
            .collect();
        assert_eq!(two, ["[warn] from the ring", "a: down"]);
        // A ring line keeps its look; only its severity comes from the message.
        let ring = b.tail_at(50, Level::Warn)[2].clone();
        assert_eq!((ring.level, ring.source), (None, Source::Ring));
        assert!(ring.render().ends_with(" log [warn] from the ring"));
    }

    #[test]
    fn splitter_handles_partial_crlf_and_long_lines() {
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        s.feed(b"ab", |l| got.push(l.to_string()));
        s.feed(b"c\r\nde\nf", |l| got.push(l.to_string()));
        assert_eq!(got, ["abc", "de"]);
        s.feed(&vec![b'x'; MAX_LINE * 2 + 1], |l| got.push(l.to_string()));
        assert_eq!(got.len(), 4);
        s.finish(|l| got.push(l.to_string()));
        assert_eq!(got.last().unwrap().len(), 2);
    }
}
