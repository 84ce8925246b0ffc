//! Compact numbers for narrow columns: uptimes, sizes, rates, sparklines.

use std::collections::VecDeque;

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
