//! A config reload: what of a new config the router applies while it runs, and what it leaves
//! for the next start.

use super::*;

/// What a reload did (for the log, the operator and the driver).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reloaded {
    /// Neighbours the new config adds, with where to dial them (the driver starts dialers).
    pub added: Vec<(NodeId, Option<SocketAddr>)>,
    /// Neighbours it removes: their links are closed (the driver stops their dialers).
    pub removed: Vec<NodeId>,
    /// Neighbours kept whose endpoint changed (the driver dials the new one).
    pub moved: Vec<(NodeId, Option<SocketAddr>)>,
    /// Applied changes, by name (`neighbours`, `costs`, `policy`, `services`, `allow_any`).
    pub applied: Vec<&'static str>,
    /// Changed fields this process cannot take while it runs: in effect at the next start.
    pub at_restart: Vec<&'static str>,
}

impl Reloaded {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let keys = |v: &[NodeId]| {
            v.iter()
                .map(|k| k.hex()[..16].to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            let added: Vec<NodeId> = self.added.iter().map(|(k, _)| *k).collect();
            parts.push(format!("neighbours added: {}", keys(&added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("neighbours removed: {}", keys(&self.removed)));
        }
        if !self.moved.is_empty() {
            let moved: Vec<NodeId> = self.moved.iter().map(|(k, _)| *k).collect();
            parts.push(format!("endpoints changed: {}", keys(&moved)));
        }
        if !self.applied.is_empty() {
            parts.push(format!("applied: {}", self.applied.join(", ")));
        }
        if !self.at_restart.is_empty() {
            parts.push(format!(
                "at the next start (not while running): {}",
                self.at_restart.join(", ")
            ));
        }
        if parts.is_empty() {
            "nothing changed".into()
        } else {
            parts.join("; ")
        }
    }
}

impl Router {
    /// Applies `new` (a reloaded config file) as far as a running router can: neighbours
    /// added and removed (a removed one's link is closed; routes through it move as on any
    /// link loss), per-neighbour costs, policy (`drain`, `no_transit`), published services and
    /// `allow_any`. Every other changed field is named in [`Reloaded::at_restart`] and keeps
    /// its running value. Links and routes the change does not concern are left alone.
    pub fn reconfigure(&mut self, now: Instant, new: &Config) -> Reloaded {
        let mut r = Reloaded::default();
        let old = &self.cfg;
        for n in &new.neighbours {
            match old.neighbours.iter().find(|o| o.pk == n.pk) {
                None => r.added.push((n.pk, n.endpoint)),
                Some(o) if o.endpoint != n.endpoint => r.moved.push((n.pk, n.endpoint)),
                Some(_) => {}
            }
        }
        r.removed = old
            .neighbours
            .iter()
            .filter(|o| !new.neighbours.iter().any(|n| n.pk == o.pk))
            .map(|o| o.pk)
            .collect();
        let costs = |c: &Config| -> Vec<(NodeId, u32)> {
            c.neighbours
                .iter()
                .filter_map(|n| n.cost_us.map(|v| (n.pk, v)))
                .collect()
        };
        let (old_costs, new_costs) = (costs(old), costs(new));
        if !r.added.is_empty() || !r.removed.is_empty() || !r.moved.is_empty() {
            r.applied.push("neighbours");
        }
        if old_costs != new_costs {
            r.applied.push("costs");
        }
        if old.policy != new.policy {
            r.applied.push("policy");
        }
        if old.services != new.services {
            r.applied.push("services");
        }
        if old.allow_any != new.allow_any {
            r.applied.push("allow_any");
        }
        macro_rules! at_restart {
            ($($f:ident),*) => {
                $(if old.$f != new.$f { r.at_restart.push(stringify!($f)); })*
            };
        }
        at_restart!(
            key,
            tun,
            fib_socket,
            app_socket,
            listen,
            data_port,
            data_shards,
            keepalive_ms,
            dead_after,
            liveness,
            rekey_secs,
            rekey_bytes,
            route_rekey_secs,
            messengers,
            advertise,
            metrics
        );
        let ms = self.ms(now);
        self.cfg.neighbours = new.neighbours.clone();
        self.cfg.policy = new.policy;
        self.cfg.allow_any = new.allow_any;
        for pk in &r.removed {
            // A peer calling in is still refused unless allow_any lets it.
            if let Some(l) = self.links.get(pk) {
                self.out.push_back(Output::Close { link: l.id });
            }
        }
        if old_costs != new_costs {
            self.nm.set_cost_overrides(ms, new_costs);
        }
        self.nm
            .set_policy(ms, self.cfg.policy.drain, self.cfg.policy.no_transit);
        if self.cfg.services != new.services {
            self.cfg.services = new.services.clone();
            self.publish_services();
        }
        self.actions();
        self.commit();
        r
    }
}
