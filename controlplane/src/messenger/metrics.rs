//! `skywire-control messenger --metrics IP:PORT`: the messenger's Prometheus metrics (the text
//! exposition format, version 0.0.4) at `GET /metrics`, through [`netbase::metrics_http`].
//!
//! A scrape copies the server's counters under its lock (a few dozen integers: the lock is
//! held about as long as for one request) and renders outside it. Labels are bounded: `reason`
//! is one of [`Reject::ALL`], `event` one of the listener's counters.

use super::Reject;
use super::net::ServerHandle;
use super::server::ServerCounters;
use crate::accept::StatsSnapshot;
use netbase::metrics_http::{self, Stats};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::atomic::Ordering;

/// What a scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The server's counters.
    pub counters: ServerCounters,
    /// Records held.
    pub records: u64,
    /// Clients connected.
    pub clients: u64,
    /// Messages dropped because a client did not read fast enough.
    pub dropped: u64,
    /// The listener's accept counters.
    pub listener: StatsSnapshot,
}

impl Snapshot {
    /// The server's numbers now.
    pub fn of(server: &ServerHandle) -> Snapshot {
        let (counters, records, clients) =
            server.with(|m| (m.counters().clone(), m.len() as u64, m.clients() as u64));
        Snapshot {
            counters,
            records,
            clients,
            dropped: server.dropped(),
            listener: server.listener_stats().snapshot(),
        }
    }
}

/// Serves `GET /metrics` on `listener` for `server`; never returns unless the listener fails.
pub fn serve(listener: TcpListener, server: ServerHandle) {
    metrics_http::serve(listener, move |stats| {
        Ok(render(&Snapshot::of(&server), stats))
    });
}

/// The `reason` label of a rejection.
fn reason(r: Reject) -> &'static str {
    match r {
        Reject::Malformed => "malformed",
        Reject::Unexpected => "unexpected",
        Reject::BadSignature => "bad_signature",
        Reject::Unsigned => "unsigned",
        Reject::WrongSigner => "wrong_signer",
        Reject::Stale => "stale",
        Reject::Replay => "replay",
        Reject::RateLimited => "rate_limited",
        Reject::BadTtl => "bad_ttl",
        Reject::Full => "full",
        Reject::Unreachable => "unreachable",
        Reject::TooLarge => "too_large",
        Reject::SourceFull => "source_full",
    }
}

/// The exposition text of `s`, with the endpoint's own counters `stats`.
pub fn render(s: &Snapshot, stats: &Stats) -> String {
    let mut o = String::with_capacity(4096);
    let one = |o: &mut String, name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(
            o,
            "# HELP skywire_messenger_{name} {help}\n# TYPE skywire_messenger_{name} {kind}\nskywire_messenger_{name} {v}"
        );
    };
    let c = &s.counters;
    one(
        &mut o,
        "records",
        "gauge",
        "Records held (expired ones until the next tick).",
        s.records,
    );
    one(
        &mut o,
        "clients",
        "gauge",
        "Clients connected (authenticated keys).",
        s.clients,
    );
    one(
        &mut o,
        "requests_total",
        "counter",
        "Requests received, malformed ones too.",
        c.requests,
    );
    one(
        &mut o,
        "registered_total",
        "counter",
        "Records accepted.",
        c.registered,
    );
    one(
        &mut o,
        "expired_total",
        "counter",
        "Records dropped at the end of their TTL.",
        c.expired,
    );
    one(
        &mut o,
        "queries_total",
        "counter",
        "Service queries answered.",
        c.queries,
    );
    one(
        &mut o,
        "relayed_total",
        "counter",
        "Messages relayed between clients.",
        c.relayed,
    );
    one(
        &mut o,
        "relay_dropped_total",
        "counter",
        "Messages dropped because a client did not read fast enough.",
        s.dropped,
    );
    let _ = writeln!(
        o,
        "# HELP skywire_messenger_lookups_total Lookups answered, by result.\n\
         # TYPE skywire_messenger_lookups_total counter\n\
         skywire_messenger_lookups_total{{result=\"found\"}} {}\n\
         skywire_messenger_lookups_total{{result=\"not_found\"}} {}",
        c.found, c.not_found
    );
    let _ = writeln!(
        o,
        "# HELP skywire_messenger_rejected_total Requests rejected, by reason.\n\
         # TYPE skywire_messenger_rejected_total counter"
    );
    for r in Reject::ALL {
        let _ = writeln!(
            o,
            "skywire_messenger_rejected_total{{reason=\"{}\"}} {}",
            reason(r),
            c.rejected(r)
        );
    }
    let _ = writeln!(
        o,
        "# HELP skywire_messenger_listener_events_total Connections the listener accepted, refused (by cap), and dropped or failed at, by event.\n\
         # TYPE skywire_messenger_listener_events_total counter"
    );
    for (k, v) in s.listener.named("x") {
        let event = k.strip_prefix("x_").unwrap_or(&k);
        let _ = writeln!(
            o,
            "skywire_messenger_listener_events_total{{event=\"{event}\"}} {v}"
        );
    }
    one(
        &mut o,
        "metrics_connections_refused_total",
        "counter",
        "Connections to this endpoint closed unanswered: too many at once.",
        stats.refused.load(Ordering::Relaxed),
    );
    o
}
