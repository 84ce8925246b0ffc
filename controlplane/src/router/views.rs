//! The text views (`routes`, `peers`) and the usage report.

use super::Router;
use crate::identity::NodeId;
use crate::nm::{RouteRole, RouteState};
use std::time::Instant;

impl Router {
    /// The `peers` view: one line per link.
    pub fn peers_text(&self) -> String {
        let mut out = format!(
            "{:<16}  {:<22} {:>9} {:>7}  {:>10} {:>10}\n",
            "PEER", "DATA ENDPOINT", "RTT", "SESSION", "RX BYTES", "TX BYTES"
        );
        let mut links: Vec<_> = self.links.iter().collect();
        links.sort_by_key(|(pk, _)| **pk);
        for (pk, l) in links {
            let t = self.traffic.get(&l.session).copied().unwrap_or_default();
            let rtt = l
                .metric
                .rtt_us
                .map(|r| format!("{:.2} ms", f64::from(r) / 1000.0))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<16}  {:<22} {:>9} {:>7}  {:>10} {:>10}\n",
                &pk.hex()[..16],
                l.endpoint.to_string(),
                rtt,
                l.session,
                t.rx_bytes,
                t.tx_bytes
            ));
        }
        if self.links.is_empty() {
            out.push_str("(no links up)\n");
        }
        out
    }

    /// The `routes` view: routes this node originated, then transit state it holds.
    pub fn routes_text(&self, now: Instant) -> String {
        let short = |n: &NodeId| n.short();
        let mut out = format!(
            "{:<10} {:<8} {:<8} {:>6} {:>6} {:>8}  {}\n",
            "DEST", "ROLE", "STATE", "LABEL", "REV", "AGE", "PATH"
        );
        for r in self.nm.routes(self.ms(now)) {
            out.push_str(&format!(
                "{:<10} {:<8} {:<8} {:>6} {:>6} {:>7.1}s  {}\n",
                short(&r.dst),
                format!("{:?}{}", r.role, if r.active { "*" } else { "" }),
                format!("{:?}", r.state),
                r.label.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                r.rev_label,
                r.age_ms as f64 / 1000.0,
                r.path.iter().map(short).collect::<Vec<_>>().join(" > ")
            ));
        }
        let transit = self.nm.transit();
        if !transit.is_empty() {
            out.push_str(&format!(
                "transit/egress state held here: {}\n",
                transit.len()
            ));
        }
        out.push_str("(* = the route in use; addresses: dest is the node's key, its overlay address is in `peers`/`show`)\n");
        out
    }

    /// The links up, for the metrics.
    pub fn link_samples(&self) -> Vec<crate::metrics::LinkSample> {
        self.links
            .iter()
            .map(|(pk, l)| crate::metrics::LinkSample {
                peer: *pk,
                rtt_us: l.metric.rtt_us,
                traffic: self.traffic.get(&l.session).copied().unwrap_or_default(),
            })
            .collect()
    }

    /// The configured neighbours with no link up, for the metrics.
    pub fn neighbours_down(&self) -> Vec<NodeId> {
        self.cfg
            .neighbours
            .iter()
            .map(|n| n.pk)
            .filter(|pk| !self.links.contains_key(pk))
            .collect()
    }

    /// Own routes by role and setup state, for the metrics.
    pub fn route_counts(&self, now: Instant) -> Vec<(RouteRole, RouteState, u64)> {
        let mut out: Vec<(RouteRole, RouteState, u64)> = Vec::new();
        for r in self.nm.routes(self.ms(now)) {
            match out.iter_mut().find(|e| (e.0, e.1) == (r.role, r.state)) {
                Some(e) => e.2 += 1,
                None => out.push((r.role, r.state, 1)),
            }
        }
        out
    }

    /// Counters for a usage report.
    pub fn report(&self) -> Vec<(String, u64)> {
        let c = self.nm.counters();
        let v = vec![
            ("links".to_string(), self.links.len() as u64),
            ("links_up_total".to_string(), self.stats.links_up),
            ("links_down_total".to_string(), self.stats.links_down),
            ("links_silent_total".to_string(), self.stats.links_silent),
            ("punts".to_string(), self.stats.punts),
            ("injected".to_string(), self.stats.injected),
            ("punt_drops".to_string(), self.stats.punt_drops),
            (
                "punts_over_budget".to_string(),
                self.stats.punts_over_budget,
            ),
            ("known_addresses".to_string(), self.by_addr.len() as u64),
            (
                "endpoint_claims_replaced".to_string(),
                self.stats.endpoint_claims_replaced,
            ),
            ("fib_errors".to_string(), self.stats.fib_errors),
            ("rekeys".to_string(), self.stats.rekeys),
            ("rekeys_too_soon".to_string(), self.stats.rekeys_too_soon),
            ("rekeys_ignored".to_string(), self.stats.rekeys_ignored),
            (
                "attached_prefixes".to_string(),
                self.programmed.len() as u64,
            ),
            ("app_errors".to_string(), self.stats.app_errors),
            ("fib_entries".to_string(), self.mirror.len() as u64),
            (
                "dataplane_restarts".to_string(),
                self.stats.dataplane_restarts,
            ),
            ("lsdb".to_string(), c.lsdb_size as u64),
            ("lsdb_bytes".to_string(), c.lsdb_bytes as u64),
            (
                "adverts_new_origin_limited".to_string(),
                c.adverts_new_origin_limited,
            ),
            ("routes_up".to_string(), c.routes_up as u64),
            ("routes_pending".to_string(), c.routes_pending as u64),
            ("backups_ready".to_string(), c.backups_ready as u64),
            ("transit_states".to_string(), c.transit_states as u64),
            ("adverts_accepted".to_string(), c.adverts_accepted),
            ("adverts_rejected".to_string(), {
                let r = &c.adverts_rejected;
                r.unsigned + r.bad_signature + r.stale + r.replay + r.bad_lifetime + r.table_full
            }),
            ("adverts_evicted".to_string(), c.adverts_evicted),
            ("msgs_malformed".to_string(), c.msgs_malformed),
            ("failovers".to_string(), c.failovers),
            ("rebuilds".to_string(), c.rebuilds),
            ("route_rekeys".to_string(), c.route_rekeys),
            ("setups_started".to_string(), c.setups_started),
            ("setups_refused".to_string(), c.setups_refused),
            (
                "setups_unauthenticated".to_string(),
                c.setups_unauthenticated,
            ),
            ("setups_replayed".to_string(), c.setups_replayed),
            ("setups_rate_limited".to_string(), c.setups_rate_limited),
            ("setups_over_quota".to_string(), c.setups_over_quota),
            (
                "setup_acks_unauthenticated".to_string(),
                c.setup_acks_unauthenticated,
            ),
            (
                "keepalives_unauthenticated".to_string(),
                c.keepalives_unauthenticated,
            ),
            ("route_msgs_off_path".to_string(), c.route_msgs_off_path),
            (
                "cost_claims_below_ours".to_string(),
                c.cost_claims_below_ours,
            ),
        ];
        v
    }
}
