//! skywire-control's Prometheus metrics (the text exposition format, version 0.0.4) at
//! `GET /metrics`, when the control config has `metrics: IP:PORT`.
//!
//! The HTTP side is [`netbase::metrics_http`] (bounded connections, request head and time;
//! 200/404/405/400/413/503, `Connection: close`). The numbers are a [`Snapshot`] the driver's
//! loop ([`crate::run`]) publishes once a second, when it refreshes its other views: a scrape
//! renders the last one in the metrics thread and never waits for the router (the loop only
//! swaps an `Arc` under the lock; the dataplane's counters are the ones the loop read through
//! the fib ring that second, never asked for again by a scrape). Before the first snapshot a
//! scrape is answered 503.
//!
//! Every series with a label is bounded: `peer` by the links the router holds (one per
//! neighbour; at most [`MAX_LINK_SERIES`]), `prefix` by [`MAX_ROUTE_SERIES`], `reason` and the
//! dataplane's other counters by [`MAX_DATAPLANE_COUNTERS`].

use crate::accept::StatsSnapshot;
use crate::identity::NodeId;
use crate::nm::{RouteRole, RouteState};
use dataplane::fibproto::Traffic;
use netbase::Prefix;
use netbase::metrics_http::{self, Stats};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Routes with their own `prefix` series (the busiest by bytes sent; the others are summed in
/// `skywire_control_routes_omitted_bytes`/`_packets` and counted in
/// `skywire_control_routes_omitted`). A router may hold thousands of routes (every destination
/// an app asked for); 100 of them are 400 series, a scrape of a few tens of KiB, well inside
/// what one Prometheus target should cost, and the busy routes are the ones worth a series.
pub const MAX_ROUTE_SERIES: usize = 100;
/// Links with their own `peer` series. Links are one per neighbour and already bounded by the
/// link listener (`links::MAX_INCOMING`, 128) plus the configured neighbours; this bound only
/// keeps a pathological config from making the scrape unbounded (the rest are counted in
/// `skywire_control_links_omitted`).
pub const MAX_LINK_SERIES: usize = 1024;
/// Dataplane counters exported (its drop reasons and traffic totals: about twenty today). The
/// fib ring carries lists of up to 4096 names; more than this, or names that are not
/// `[a-z0-9_]` of at most [`MAX_COUNTER_NAME`] bytes, are counted in
/// `skywire_control_dataplane_counters_omitted` instead.
pub const MAX_DATAPLANE_COUNTERS: usize = 64;
/// Longest dataplane counter name used in a metric name or label (`drop_unknown_session` is 20).
pub const MAX_COUNTER_NAME: usize = 64;

/// One link, as the router holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSample {
    /// The neighbour.
    pub peer: NodeId,
    /// Smoothed keepalive RTT, once measured.
    pub rtt_us: Option<u32>,
    /// The dataplane's traffic on the link's session, as last read.
    pub traffic: Traffic,
}

/// What a scrape shows, published by the driver once a second.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Seconds since the controlplane started (shows the loop publishing).
    pub uptime: Duration,
    /// Whether a dataplane serves the fib ring now.
    pub dataplane_up: bool,
    /// The router's counters and gauges ([`crate::router::Router::report`]).
    pub report: Vec<(String, u64)>,
    /// The links up.
    pub links: Vec<LinkSample>,
    /// Configured neighbours with no link up.
    pub neighbours_down: Vec<NodeId>,
    /// Own routes held, by role and state.
    pub routes: Vec<(RouteRole, RouteState, u64)>,
    /// The dataplane's per-route traffic (tx side), as last read.
    pub route_traffic: Vec<(Prefix, Traffic)>,
    /// The dataplane's drops by reason and traffic totals, as last read.
    pub dataplane: Vec<(String, u64)>,
    /// The link listener's accept counters.
    pub link_listener: StatsSnapshot,
    /// The app socket's accept counters.
    pub app_socket: StatsSnapshot,
}

/// Where the driver puts its snapshots and the metrics thread takes them.
pub type Published = Arc<Mutex<Option<Arc<Snapshot>>>>;

/// Serves `GET /metrics` on `listener` from what is published in `snap`; never returns
/// unless the listener fails.
pub fn serve(listener: TcpListener, snap: Published) {
    metrics_http::serve(listener, move |stats| {
        // The lock is held for an Arc clone; the driver holds it as briefly.
        let s = snap.lock().ok().and_then(|g| g.clone());
        match s {
            Some(s) => Ok(render(&s, stats)),
            None => Err("no snapshot yet: the router publishes one a second".into()),
        }
    });
}

/// How a [`Router::report`](crate::router::Router::report) entry is exported: (its name
/// there, the metric's name after `skywire_control_`, a counter?, help).
const REPORT: &[(&str, &str, bool, &str)] = &[
    ("links", "links", false, "Links up."),
    (
        "links_up_total",
        "links_up_total",
        true,
        "Links that came up.",
    ),
    (
        "links_down_total",
        "links_down_total",
        true,
        "Links that went down.",
    ),
    (
        "links_silent_total",
        "links_silent_total",
        true,
        "Links the dataplane's liveness probes found silent (a fast link-down).",
    ),
    (
        "adverts_evicted",
        "adverts_evicted_total",
        true,
        "Adverts evicted from a full link-state database for a better-standing newcomer.",
    ),
    (
        "punts",
        "punts_total",
        true,
        "Packets the dataplane punted.",
    ),
    (
        "injected",
        "punts_injected_total",
        true,
        "Punted packets injected after their route came up.",
    ),
    (
        "punt_drops",
        "punt_drops_total",
        true,
        "Punted packets dropped (queue full, expired, unknown destination).",
    ),
    (
        "punts_over_budget",
        "punts_over_budget_total",
        true,
        "Punts dropped over the router's punt budget.",
    ),
    (
        "known_addresses",
        "known_addresses",
        false,
        "Overlay addresses the router can route to (from the LSDB).",
    ),
    (
        "endpoint_claims_replaced",
        "endpoint_claims_replaced_total",
        true,
        "Neighbours that claimed a data address other than the one they link from.",
    ),
    (
        "fib_errors",
        "fib_errors_total",
        true,
        "Fib commits the dataplane refused.",
    ),
    (
        "rekeys",
        "rekeys_total",
        true,
        "Data-key rotations completed.",
    ),
    (
        "rekeys_too_soon",
        "rekeys_too_soon_total",
        true,
        "Rotation requests refused as too soon after the last one.",
    ),
    (
        "rekeys_ignored",
        "rekeys_ignored_total",
        true,
        "Rekey messages that fit no step, or repeats of one answered within the interval.",
    ),
    (
        "attached_prefixes",
        "attached_prefixes",
        false,
        "Prefixes apps attached, routed in the dataplane now.",
    ),
    (
        "app_errors",
        "app_errors_total",
        true,
        "App socket requests refused.",
    ),
    (
        "fib_entries",
        "fib_entries",
        false,
        "Entries the dataplane was told about (sessions, rules, routes, keys).",
    ),
    (
        "dataplane_restarts",
        "dataplane_restarts_total",
        true,
        "Times the dataplane went away.",
    ),
    (
        "lsdb",
        "lsdb_adverts",
        false,
        "Adverts in the link-state database.",
    ),
    (
        "lsdb_bytes",
        "lsdb_bytes",
        false,
        "Size of the link-state database.",
    ),
    (
        "adverts_new_origin_limited",
        "adverts_new_origin_limited_total",
        true,
        "Adverts of origins not seen before dropped over their rate limit.",
    ),
    ("routes_up", "routes_up", false, "Own routes up (any role)."),
    (
        "routes_pending",
        "routes_pending",
        false,
        "Own routes being set up.",
    ),
    (
        "backups_ready",
        "backups_ready",
        false,
        "Destinations with a backup route up.",
    ),
    (
        "transit_states",
        "transit_states",
        false,
        "Transit and egress route state held for others.",
    ),
    (
        "adverts_accepted",
        "adverts_accepted_total",
        true,
        "Adverts accepted into the LSDB.",
    ),
    (
        "adverts_rejected",
        "adverts_rejected_total",
        true,
        "Adverts rejected (unsigned, bad signature, stale, replayed, bad lifetime, table full).",
    ),
    (
        "msgs_malformed",
        "msgs_malformed_total",
        true,
        "Node-manager messages that did not decode.",
    ),
    (
        "failovers",
        "failovers_total",
        true,
        "Failovers to a backup route.",
    ),
    (
        "rebuilds",
        "rebuilds_total",
        true,
        "Routes set up again after a loss.",
    ),
    (
        "route_rekeys",
        "route_rekeys_total",
        true,
        "Route end-to-end key replacements.",
    ),
    (
        "setups_started",
        "setups_started_total",
        true,
        "Route setups this node started.",
    ),
    (
        "setups_refused",
        "setups_refused_total",
        true,
        "Route setups refused.",
    ),
    (
        "setups_unauthenticated",
        "setups_unauthenticated_total",
        true,
        "Route setups whose authentication failed.",
    ),
    (
        "setups_replayed",
        "setups_replayed_total",
        true,
        "Route setups refused as replays.",
    ),
    (
        "setups_rate_limited",
        "setups_rate_limited_total",
        true,
        "Route setups dropped over a neighbour's rate limit.",
    ),
    (
        "setups_over_quota",
        "setups_over_quota_total",
        true,
        "Route setups refused over a neighbour's route quota.",
    ),
    (
        "setup_acks_unauthenticated",
        "setup_acks_unauthenticated_total",
        true,
        "Setup acks whose authentication failed.",
    ),
    (
        "keepalives_unauthenticated",
        "keepalives_unauthenticated_total",
        true,
        "Route keepalives whose authentication failed.",
    ),
    (
        "route_msgs_off_path",
        "route_msgs_off_path_total",
        true,
        "Route teardowns and keepalives from a neighbour not on the route's path (ignored).",
    ),
    (
        "cost_claims_below_ours",
        "cost_claims_below_ours_total",
        true,
        "Neighbour adverts claiming their link to us costs under half our own figure (unused).",
    ),
];

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP skywire_control_{name} {help}\n# TYPE skywire_control_{name} {kind}"
    );
}

/// A name usable in a metric name and a label value as it is.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_COUNTER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Routes in a stable order (prefixes have none of their own).
fn order(p: &Prefix) -> (std::net::IpAddr, u8) {
    (p.addr(), p.len())
}

fn role_name(r: RouteRole) -> &'static str {
    match r {
        RouteRole::Primary => "primary",
        RouteRole::Backup => "backup",
        RouteRole::Replacement => "replacement",
    }
}

fn state_name(s: RouteState) -> &'static str {
    match s {
        RouteState::Pending => "pending",
        RouteState::Up => "up",
    }
}

/// Every role and state, for one `skywire_control_routes` series each.
pub const ROUTE_KINDS: [(RouteRole, RouteState); 6] = [
    (RouteRole::Primary, RouteState::Up),
    (RouteRole::Primary, RouteState::Pending),
    (RouteRole::Backup, RouteState::Up),
    (RouteRole::Backup, RouteState::Pending),
    (RouteRole::Replacement, RouteState::Up),
    (RouteRole::Replacement, RouteState::Pending),
];

fn listener(o: &mut String, s: &StatsSnapshot, which: &str) {
    for (k, v) in s.named(which) {
        let Some(reason) = k.strip_prefix(which).and_then(|r| r.strip_prefix('_')) else {
            continue;
        };
        let _ = writeln!(
            o,
            "skywire_control_listener_events_total{{listener=\"{which}\",event=\"{reason}\"}} {v}"
        );
    }
}

/// The exposition text of `s`, with the endpoint's own counters `stats`.
pub fn render(s: &Snapshot, stats: &Stats) -> String {
    let mut o =
        String::with_capacity(16 * 1024 + 400 * s.route_traffic.len().min(MAX_ROUTE_SERIES));
    family(
        &mut o,
        "uptime_seconds",
        "gauge",
        "Time since the controlplane started, as of the last snapshot.",
    );
    let _ = writeln!(
        o,
        "skywire_control_uptime_seconds {}",
        s.uptime.as_secs_f64()
    );
    family(
        &mut o,
        "dataplane_up",
        "gauge",
        "1 while a dataplane serves the fib ring.",
    );
    let _ = writeln!(
        o,
        "skywire_control_dataplane_up {}",
        u8::from(s.dataplane_up)
    );

    // The router's own counters, typed by the table; an entry the table does not know (a
    // newer router) is still exported, untyped.
    for (k, v) in &s.report {
        match REPORT.iter().find(|e| e.0 == k) {
            Some((_, name, counter, help)) => {
                family(
                    &mut o,
                    name,
                    if *counter { "counter" } else { "gauge" },
                    help,
                );
                let _ = writeln!(o, "skywire_control_{name} {v}");
            }
            None if plain(k) => {
                family(&mut o, k, "untyped", "See skywire-control's `ru`.");
                let _ = writeln!(o, "skywire_control_{k} {v}");
            }
            None => {}
        }
    }

    // Links.
    let links = &s.links[..s.links.len().min(MAX_LINK_SERIES)];
    let down = &s.neighbours_down[..s.neighbours_down.len().min(MAX_LINK_SERIES - links.len())];
    family(
        &mut o,
        "link_up",
        "gauge",
        "1 for a neighbour with a link up, 0 for a configured one without.",
    );
    for l in links {
        let _ = writeln!(o, "skywire_control_link_up{{peer=\"{}\"}} 1", l.peer.hex());
    }
    for pk in down {
        let _ = writeln!(o, "skywire_control_link_up{{peer=\"{}\"}} 0", pk.hex());
    }
    family(
        &mut o,
        "links_omitted",
        "gauge",
        "Links and neighbours left out of the peer series (over the bound).",
    );
    let _ = writeln!(
        o,
        "skywire_control_links_omitted {}",
        s.links.len() + s.neighbours_down.len() - links.len() - down.len()
    );
    family(
        &mut o,
        "link_rtt_seconds",
        "gauge",
        "Smoothed keepalive round-trip time of the link (once measured).",
    );
    for l in links {
        if let Some(r) = l.rtt_us {
            let _ = writeln!(
                o,
                "skywire_control_link_rtt_seconds{{peer=\"{}\"}} {}",
                l.peer.hex(),
                f64::from(r) / 1e6
            );
        }
    }
    type Pick = fn(&Traffic) -> (u64, u64);
    let by_unit: [(&str, &str, Pick); 2] = [
        (
            "bytes",
            "Bytes on the link's current session (the dataplane's count).",
            |t| (t.rx_bytes, t.tx_bytes),
        ),
        (
            "packets",
            "Packets on the link's current session (the dataplane's count).",
            |t| (t.rx_pkts, t.tx_pkts),
        ),
    ];
    for (unit, help, pick) in by_unit {
        let name = format!("link_{unit}_total");
        family(&mut o, &name, "counter", help);
        for l in links {
            let pk = l.peer.hex();
            let (rx, tx) = pick(&l.traffic);
            let _ = writeln!(
                o,
                "skywire_control_{name}{{peer=\"{pk}\",direction=\"rx\"}} {rx}\n\
                 skywire_control_{name}{{peer=\"{pk}\",direction=\"tx\"}} {tx}"
            );
        }
    }

    // Routes.
    family(
        &mut o,
        "routes",
        "gauge",
        "Own routes held, by role and setup state.",
    );
    for (role, state) in ROUTE_KINDS {
        let n: u64 = s
            .routes
            .iter()
            .filter(|(r, st, _)| (*r, *st) == (role, state))
            .map(|(_, _, n)| n)
            .sum();
        let _ = writeln!(
            o,
            "skywire_control_routes{{role=\"{}\",state=\"{}\"}} {n}",
            role_name(role),
            state_name(state)
        );
    }
    let mut busiest: Vec<&(Prefix, Traffic)> = s.route_traffic.iter().collect();
    let cut = busiest.len().min(MAX_ROUTE_SERIES);
    if busiest.len() > MAX_ROUTE_SERIES {
        busiest.select_nth_unstable_by(MAX_ROUTE_SERIES - 1, |a, b| {
            b.1.tx_bytes
                .cmp(&a.1.tx_bytes)
                .then(order(&a.0).cmp(&order(&b.0)))
        });
    }
    let (shown, rest) = busiest.split_at_mut(cut);
    shown.sort_unstable_by_key(|r| order(&r.0));
    family(
        &mut o,
        "route_bytes_total",
        "counter",
        "Bytes the dataplane sent on the route (the busiest routes; see routes_omitted).",
    );
    for (p, t) in shown.iter() {
        let _ = writeln!(
            o,
            "skywire_control_route_bytes_total{{prefix=\"{p}\"}} {}",
            t.tx_bytes
        );
    }
    family(
        &mut o,
        "route_packets_total",
        "counter",
        "Packets the dataplane sent on the route (the busiest routes; see routes_omitted).",
    );
    for (p, t) in shown.iter() {
        let _ = writeln!(
            o,
            "skywire_control_route_packets_total{{prefix=\"{p}\"}} {}",
            t.tx_pkts
        );
    }
    family(
        &mut o,
        "routes_omitted",
        "gauge",
        "Routes in the dataplane without their own route_* series (over the bound).",
    );
    let _ = writeln!(o, "skywire_control_routes_omitted {}", rest.len());
    let (rb, rp) = rest.iter().fold((0u64, 0u64), |(b, p), (_, t)| {
        (b.saturating_add(t.tx_bytes), p.saturating_add(t.tx_pkts))
    });
    family(
        &mut o,
        "routes_omitted_bytes",
        "gauge",
        "Bytes sent on the routes without their own series, summed (not a counter: the set changes).",
    );
    let _ = writeln!(o, "skywire_control_routes_omitted_bytes {rb}");
    family(
        &mut o,
        "routes_omitted_packets",
        "gauge",
        "Packets sent on the routes without their own series, summed (not a counter: the set changes).",
    );
    let _ = writeln!(o, "skywire_control_routes_omitted_packets {rp}");

    // The dataplane's counters: drops by reason, and its traffic totals.
    let usable: Vec<&(String, u64)> = s
        .dataplane
        .iter()
        .filter(|(k, _)| plain(k))
        .take(MAX_DATAPLANE_COUNTERS)
        .collect();
    family(
        &mut o,
        "dataplane_drops_total",
        "counter",
        "Packets the dataplane dropped, by reason (as last read by the router).",
    );
    for (k, v) in &usable {
        if let Some(reason) = k.strip_prefix("drop_") {
            let _ = writeln!(
                o,
                "skywire_control_dataplane_drops_total{{reason=\"{reason}\"}} {v}"
            );
        }
    }
    for (k, v) in &usable {
        if !k.starts_with("drop_") {
            let name = format!("dataplane_{k}_total");
            family(
                &mut o,
                &name,
                "counter",
                "The dataplane's traffic total of that name (as last read by the router).",
            );
            let _ = writeln!(o, "skywire_control_{name} {v}");
        }
    }
    family(
        &mut o,
        "dataplane_counters_omitted",
        "gauge",
        "Dataplane counters not exported (over the bound, or an unusable name).",
    );
    let _ = writeln!(
        o,
        "skywire_control_dataplane_counters_omitted {}",
        s.dataplane.len() - usable.len()
    );

    // Listeners and this endpoint.
    family(
        &mut o,
        "listener_events_total",
        "counter",
        "Connections the listener accepted, refused (by cap), and dropped or failed at, by event.",
    );
    listener(&mut o, &s.link_listener, "link_listener");
    listener(&mut o, &s.app_socket, "app_socket");
    family(
        &mut o,
        "metrics_connections_refused_total",
        "counter",
        "Connections to this endpoint closed unanswered: too many at once.",
    );
    let _ = writeln!(
        o,
        "skywire_control_metrics_connections_refused_total {}",
        stats.refused.load(Ordering::Relaxed)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::identity::Identity;
    use crate::nm::NodeManager;
    use crate::router::Router;
    use std::time::Instant;

    fn router() -> Router {
        let seed = [3; 32];
        let id = Identity::from_seed(seed).unwrap().id();
        let cfg = Config::parse(
            "key: k\nlisten: 127.0.0.1:7100\ndata_port: 7000\n",
            std::path::Path::new("/tmp/control.yaml"),
        )
        .unwrap();
        let nm = NodeManager::new(seed, crate::nm::Config::default(), 0);
        Router::new(cfg, id, nm, Instant::now(), false)
    }

    #[test]
    fn every_report_entry_is_typed_once() {
        let names: Vec<String> = router().report().into_iter().map(|(k, _)| k).collect();
        for k in &names {
            assert!(REPORT.iter().any(|e| e.0 == k), "{k} is not in REPORT");
        }
        for e in REPORT {
            assert!(names.iter().any(|k| k == e.0), "{} is not reported", e.0);
            assert!(plain(e.1), "{}", e.1);
            assert_eq!(e.2, e.1.ends_with("_total"), "{}", e.1);
        }
        let mut metric: Vec<&str> = REPORT.iter().map(|e| e.1).collect();
        metric.sort_unstable();
        metric.dedup();
        assert_eq!(metric.len(), REPORT.len(), "a metric name twice");
    }

    fn t(tx_bytes: u64) -> Traffic {
        Traffic {
            tx_bytes,
            tx_pkts: tx_bytes / 100,
            ..Traffic::default()
        }
    }

    #[test]
    fn bounds_hold_and_the_rest_is_summed() {
        let pfx = |i: u32| {
            Prefix::host(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                i as u128 + 1,
            )))
        };
        let n = MAX_ROUTE_SERIES as u32 + 50;
        let mut s = Snapshot {
            route_traffic: (0..n).map(|i| (pfx(i), t(u64::from(i) * 1000))).collect(),
            ..Snapshot::default()
        };
        s.dataplane = (0..MAX_DATAPLANE_COUNTERS + 5)
            .map(|i| (format!("drop_r{i}"), 1))
            .chain([("Bad Name\"".into(), 1)])
            .collect();
        let body = render(&s, &Stats::default());
        let shown = body.matches("skywire_control_route_bytes_total{").count();
        assert_eq!(shown, MAX_ROUTE_SERIES);
        // The 50 quietest are the ones summed: 0..50 thousand bytes each.
        assert!(!body.contains(&format!("prefix=\"{}\"", pfx(49))), "{body}");
        assert!(body.contains(&format!("prefix=\"{}\"", pfx(50))), "{body}");
        assert!(body.contains("skywire_control_routes_omitted 50\n"));
        let sum: u64 = (0..50u64).map(|i| i * 1000).sum();
        assert!(body.contains(&format!("skywire_control_routes_omitted_bytes {sum}\n")));
        assert_eq!(
            body.matches("skywire_control_dataplane_drops_total{")
                .count(),
            MAX_DATAPLANE_COUNTERS
        );
        assert!(body.contains("skywire_control_dataplane_counters_omitted 6\n"));
        assert!(!body.contains("Bad Name"));
    }
}
