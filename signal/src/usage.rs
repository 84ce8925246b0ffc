//! Resource usage of the current process, read from /proc.

use crate::proto::Usage;
use procfs::Current;
use std::time::Instant;

/// Computes CPU % between successive calls.
#[derive(Debug)]
pub struct UsageMeter {
    last: Option<(Instant, u64)>,
}

impl Default for UsageMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageMeter {
    /// A meter whose first reading averages over the process lifetime.
    pub fn new() -> Self {
        UsageMeter { last: None }
    }

    /// Reads /proc/self; counters are filled in by the caller. Fields it cannot read are zero.
    pub fn sample(&mut self) -> Usage {
        let mut u = Usage::default();
        let Ok(me) = procfs::process::Process::myself() else {
            return u;
        };
        let Ok(stat) = me.stat() else { return u };
        let tps = procfs::ticks_per_second().max(1);
        let cpu_ticks = stat.utime + stat.stime;
        u.threads = stat.num_threads.max(0) as u32;
        u.rss_bytes = stat.rss.saturating_mul(procfs::page_size());
        let boot_uptime = procfs::Uptime::current().map(|up| up.uptime).unwrap_or(0.0);
        let started = stat.starttime as f64 / tps as f64;
        let age_s = (boot_uptime - started).max(0.0);
        u.uptime_ms = (age_s * 1000.0) as u64;
        let now = Instant::now();
        u.cpu_percent = match self.last {
            Some((t, ticks)) => {
                let wall = now.duration_since(t).as_secs_f64();
                if wall > 0.0 {
                    (cpu_ticks.saturating_sub(ticks) as f64 / tps as f64 / wall * 100.0) as f32
                } else {
                    0.0
                }
            }
            None if age_s > 0.0 => (cpu_ticks as f64 / tps as f64 / age_s * 100.0) as f32,
            None => 0.0,
        };
        self.last = Some((now, cpu_ticks));
        u
    }
}
