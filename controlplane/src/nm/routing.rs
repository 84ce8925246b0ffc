//! Route setup, keep-alive, teardown, failover (second `impl NodeManager`).
//!
//! Route along path `n0 (ingress) .. nk (egress)`, both directions:
//! * Setup travels downstream. Each node ni (i < k) allocates `rev_in`, its
//!   label for reverse traffic arriving from n(i+1), installs
//!   `(n(i+1), rev_in) -> Forward(n(i-1), rev_out)` (at the ingress:
//!   `Deliver{origin: egress}`) and passes `rev_in` down in the Setup.
//! * The egress allocates `fwd_in` for traffic from n(k-1), installs
//!   `Deliver{origin: ingress}`, may install the reverse ingress mapping
//!   (all reverse rules already exist) and answers SetupAck{fwd_in}.
//! * SetupAck travels upstream: each hop allocates its own `fwd_in`,
//!   installs `(n(i-1), fwd_in) -> Forward(n(i+1), label from ack)` and acks
//!   upstream with `fwd_in`; the ingress then emits RouteUp.
//!
//! Labels are always allocated by the receiving node of a hop (downstream
//! allocation per direction), from its per-incoming-neighbour space.

use super::node::{Hop, NodeManager, OwnRoute, OwnState};
use super::paths::{self, Constraints, PathStatus};
use super::session::{self, RouteKeys, SetupWindow};
use super::types::{Action, NodeId, RouteId, RuleThen};
use super::wire::{Msg, T_KEEPALIVE};
use dataplane::fibproto::Key;

impl NodeManager {
    fn install(&mut self, in_from: NodeId, in_label: u32, then: RuleThen) {
        self.actions.push_back(Action::InstallRule {
            in_from,
            in_label,
            then,
        });
    }

    /// Names a route end's data keys for the dataplane and programs them: (tx, rx).
    fn add_keys(&mut self, keys: &RouteKeys) -> (u64, u64) {
        let mut add = |key: [u8; 32]| {
            self.next_key += 1;
            self.actions.push_back(Action::AddKey {
                id: self.next_key,
                cipher: keys.cipher,
                key: Key(key),
            });
            self.next_key
        };
        (add(keys.tx), add(keys.rx))
    }

    /// A route end's data keys go at the end of this step.
    fn drop_keys(&mut self, ids: Option<(u64, u64)>) {
        if let Some((tx, rx)) = ids {
            self.dead_keys.extend([tx, rx]);
        }
    }

    fn uninstall(&mut self, in_from: NodeId, in_label: u32) {
        self.labels.free(&in_from, in_label);
        self.actions
            .push_back(Action::RemoveRule { in_from, in_label });
    }

    /// The cost of the best path to `dst` over links that are up here, if there is one.
    pub fn path_cost(&self, dst: &NodeId) -> Option<u64> {
        let nbs = &self.nbs;
        let f = |n: &NodeId| nbs.contains_key(n);
        let c = Constraints {
            first_hop_ok: Some(&f),
            ..Default::default()
        };
        paths::shortest_path(&self.lsdb, &self.id, dst, &c).map(|(_, cost)| cost)
    }

    fn compute_path(&self, dst: &NodeId) -> Option<Vec<NodeId>> {
        let nbs = &self.nbs;
        let f = |n: &NodeId| nbs.contains_key(n);
        let c = Constraints {
            first_hop_ok: Some(&f),
            ..Default::default()
        };
        paths::shortest_path(&self.lsdb, &self.id, dst, &c).map(|(p, _)| p)
    }

    fn status(&self, path: &[NodeId]) -> PathStatus {
        match path.get(1) {
            Some(first) if self.nbs.contains_key(first) => paths::path_status(&self.lsdb, path),
            _ => PathStatus::Broken,
        }
    }

    // ----- ingress side -----------------------------------------------------

    pub(super) fn routes_request(&mut self, now_ms: u64, dst: NodeId) {
        if dst == self.id {
            return;
        }
        let d = self.dests.entry(dst).or_default();
        d.last_used = now_ms;
        if d.primary.is_some() {
            self.reselect(&dst);
            return;
        }
        self.start_primary(now_ms, dst);
    }

    pub(super) fn routes_release(&mut self, _now_ms: u64, dst: NodeId) {
        if let Some(d) = self.dests.remove(&dst) {
            for rid in [d.primary, d.backup, d.replacing].into_iter().flatten() {
                self.teardown_own(&rid, true);
            }
        }
        self.reselect(&dst);
    }

    /// Compute a path and start setting the primary up; arms a retry if
    /// there is no path.
    fn start_primary(&mut self, now_ms: u64, dst: NodeId) {
        let rid = self
            .compute_path(&dst)
            .and_then(|p| self.start_setup(now_ms, dst, p));
        let retry = now_ms.saturating_add(self.cfg.setup_retry_ms.max(1));
        if rid.is_none() {
            self.c.no_path += 1;
        }
        if let Some(d) = self.dests.get_mut(&dst) {
            d.primary = rid;
            d.retry_at = if rid.is_none() { Some(retry) } else { None };
        }
    }

    /// Allocate our reverse label, install the reverse deliver rule and
    /// send the Setup to the first hop.
    fn start_setup(&mut self, now_ms: u64, dst: NodeId, path: Vec<NodeId>) -> Option<RouteId> {
        let first = *path.get(1)?;
        let rev_label = self.labels.alloc(&first)?;
        self.next_route += 1;
        let rid = RouteId {
            origin: self.id,
            counter: self.next_route,
        };
        let Ok((init, hs)) = session::initiate(&self.noise, &dst, &rid, &path, self.cfg.route_aes)
        else {
            // Not a valid key: no route can prove itself to it.
            self.labels.free(&first, rev_label);
            return None;
        };
        self.pending_hs.insert(rid, init);
        // The reverse deliver rule waits for the egress's answer (it needs the route's key).
        self.send(
            first,
            &Msg::Setup {
                rid,
                path: path.clone(),
                rev_label,
                hs,
            },
        );
        self.own.insert(
            rid,
            OwnRoute {
                dst,
                path,
                rev_label,
                state: OwnState::Pending {
                    deadline: now_ms.saturating_add(self.cfg.setup_timeout_ms),
                },
                created: now_ms,
                next_keepalive: now_ms.saturating_add(self.cfg.route_keepalive_ms),
                keys: None,
                key_ids: None,
                ka_seq: 0,
            },
        );
        self.c.setups_started += 1;
        Some(rid)
    }

    /// Remove an own route's local state; optionally tell the path.
    fn teardown_own(&mut self, rid: &RouteId, notify: bool) -> Option<OwnRoute> {
        self.pending_hs.remove(rid);
        let r = self.own.remove(rid)?;
        let first = r.first_hop();
        self.uninstall(first, r.rev_label);
        self.drop_keys(r.key_ids);
        if notify && self.nbs.contains_key(&first) {
            self.send(
                first,
                &Msg::Teardown {
                    rid: *rid,
                    upstream: false,
                },
            );
        }
        Some(r)
    }

    /// An own route failed (broken path, setup timeout, error from the
    /// path). Fail over to the backup or rebuild.
    pub(super) fn fail_own(&mut self, now_ms: u64, rid: &RouteId, notify: bool) {
        let Some(r) = self.teardown_own(rid, notify) else {
            return;
        };
        if r.is_up() {
            self.c.route_failures += 1;
        } else {
            self.c.setup_failures += 1;
        }
        let dst = r.dst;
        let Some(d) = self.dests.get_mut(&dst) else {
            return;
        };
        let mut need_primary = false;
        let mut failover = false;
        if d.primary == Some(*rid) {
            d.primary = None;
            if let Some(x) = d.replacing.take() {
                d.primary = Some(x);
            } else if let Some(b) = d.backup.take() {
                d.primary = Some(b);
                failover = true;
            } else {
                need_primary = true;
            }
        } else if d.backup == Some(*rid) {
            d.backup = None;
        } else if d.replacing == Some(*rid) {
            d.replacing = None;
        }
        if failover {
            self.c.failovers += 1;
        }
        if need_primary {
            self.c.rebuilds += 1;
            self.start_primary(now_ms, dst);
        }
        self.reselect(&dst);
        self.ensure_backup(now_ms, &dst);
    }

    fn on_own_up(&mut self, now_ms: u64, rid: RouteId, label: u32) {
        let Some(r) = self.own.get_mut(&rid) else {
            return;
        };
        r.state = OwnState::Up { label };
        // The first keepalive at once: it tells the egress that this end holds the keys.
        r.next_keepalive = now_ms;
        let dst = r.dst;
        let mut old = None;
        if let Some(d) = self.dests.get_mut(&dst)
            && d.replacing == Some(rid)
        {
            d.replacing = None;
            old = d.primary.replace(rid);
        }
        if let Some(o) = old {
            self.c.migrations += 1;
            self.reselect(&dst);
            // The old route goes once the egress has moved its return traffic (it does on
            // the new route's first keepalive, one path delay from now).
            let at = now_ms.saturating_add(self.cfg.route_keepalive_ms.max(1));
            self.retiring.push((at, o));
        }
        self.reselect(&dst);
        self.ensure_backup(now_ms, &dst);
    }

    /// Make sure a node-disjoint backup exists (set up in advance) once the
    /// primary is up.
    fn ensure_backup(&mut self, now_ms: u64, dst: &NodeId) {
        if !self.cfg.backup_routes {
            return;
        }
        let Some(d) = self.dests.get(dst) else { return };
        let Some(p) = d.primary.and_then(|p| self.own.get(&p)) else {
            return;
        };
        if !p.is_up() {
            return;
        }
        let ppath = p.path.clone();
        if let Some(b) = d.backup {
            let ok = self.own.get(&b).is_some_and(|br| {
                let inner = |x: &[NodeId]| x[1..x.len() - 1].to_vec();
                let pi = inner(&ppath);
                let shares = inner(&br.path).iter().any(|n| pi.contains(n));
                !shares && br.path != ppath && self.status(&br.path) == PathStatus::Ok
            });
            if ok {
                return;
            }
            self.teardown_own(&b, true);
            if let Some(d) = self.dests.get_mut(dst) {
                d.backup = None;
            }
        }
        let nbs = &self.nbs;
        let f = |n: &NodeId| nbs.contains_key(n);
        let Some((bpath, _)) = paths::disjoint_backup(&self.lsdb, &ppath, Some(&f)) else {
            return;
        };
        let rid = self.start_setup(now_ms, *dst, bpath);
        if let Some(d) = self.dests.get_mut(dst) {
            d.backup = rid;
        }
    }

    /// Re-evaluate the ingress mapping for `dst` and emit RouteUp/RouteDown
    /// if it changed. Preference: own primary, own backup, then the
    /// reverse direction of a route `dst` set up towards us.
    pub(super) fn reselect(&mut self, dst: &NodeId) {
        let up = |rid: Option<RouteId>| {
            let r = self.own.get(&rid?)?;
            match (r.state, r.key_ids) {
                (OwnState::Up { label }, Some((tx, _))) => Some((r.first_hop(), label, tx)),
                _ => None,
            }
        };
        let mut want = self
            .dests
            .get(dst)
            .and_then(|d| up(d.primary).or_else(|| up(d.backup)));
        if want.is_none() {
            want = self
                .hops
                .iter()
                .filter(|(rid, h)| rid.origin == *dst && h.next.is_none() && h.fwd_in.is_some())
                .filter_map(|(rid, h)| Some((rid, h, h.key_ids?.0)))
                // A route the origin already keeps alive first: the origin opens the reverse
                // direction only once the SetupAck brought it the keys, so a newer route's
                // reverse is taken when its first keepalive proves that (or when it is the
                // only one).
                .max_by_key(|(rid, h, _)| (h.ka_seq > 0, h.created, **rid))
                .map(|(_, h, tx)| (h.prev, h.rev_out, tx));
        }
        let have = self.installed.get(dst).copied();
        if want == have {
            return;
        }
        match want {
            Some((via, label, key)) => {
                self.installed.insert(*dst, (via, label, key));
                self.actions.push_back(Action::RouteUp {
                    dst: *dst,
                    via,
                    label,
                    key,
                });
            }
            None => {
                self.installed.remove(dst);
                self.actions.push_back(Action::RouteDown { dst: *dst });
            }
        }
    }

    /// The LSDB or local links changed: check every own route.
    pub(super) fn routes_topology_changed(&mut self, now_ms: u64) {
        let dsts: Vec<NodeId> = self.dests.keys().copied().collect();
        for dst in dsts {
            self.check_dest(now_ms, dst);
        }
    }

    fn own_status(&self, rid: Option<RouteId>) -> Option<(PathStatus, bool)> {
        rid.and_then(|r| self.own.get(&r))
            .map(|r| (self.status(&r.path), r.is_up()))
    }

    fn check_dest(&mut self, now_ms: u64, dst: NodeId) {
        let Some(d) = self.dests.get(&dst).cloned() else {
            return;
        };
        // Broken routes first.
        for rid in [d.replacing, d.backup, d.primary].into_iter().flatten() {
            if self
                .own_status(Some(rid))
                .is_some_and(|(s, _)| s == PathStatus::Broken)
            {
                self.fail_own(now_ms, &rid, true);
            }
        }
        let Some(d) = self.dests.get(&dst).cloned() else {
            return;
        };
        // Draining intermediates: backups/replacements are dropped,
        // primaries moved make-before-break.
        for rid in [d.replacing, d.backup].into_iter().flatten() {
            if self
                .own_status(Some(rid))
                .is_some_and(|(s, _)| s == PathStatus::Drained)
            {
                self.teardown_own(&rid, true);
                if let Some(dm) = self.dests.get_mut(&dst) {
                    if dm.backup == Some(rid) {
                        dm.backup = None;
                    }
                    if dm.replacing == Some(rid) {
                        dm.replacing = None;
                    }
                }
            }
        }
        let Some(d) = self.dests.get(&dst).cloned() else {
            return;
        };
        if let Some(p) = d.primary {
            if self
                .own_status(Some(p))
                .is_some_and(|(s, _)| s == PathStatus::Drained)
                && d.replacing.is_none()
            {
                let backup_ok = self.own_status(d.backup) == Some((PathStatus::Ok, true));
                if backup_ok {
                    // The backup is up and clean: switch now.
                    if let Some(dm) = self.dests.get_mut(&dst) {
                        dm.primary = dm.backup.take();
                    }
                    self.c.migrations += 1;
                    self.reselect(&dst);
                    self.teardown_own(&p, true);
                } else if let Some(path) = self.compute_path(&dst) {
                    let rid = self.start_setup(now_ms, dst, path);
                    if let Some(dm) = self.dests.get_mut(&dst) {
                        dm.replacing = rid;
                    }
                }
            }
        } else if d.retry_at.is_some() {
            // Topology changed: maybe reachable now.
            self.start_primary(now_ms, dst);
        }
        self.reselect(&dst);
        self.ensure_backup(now_ms, &dst);
    }

    /// Routes whose keys are `route_rekey_ms` old get new ones: the primary is replaced
    /// make-before-break (the replacement takes over in `on_own_up`, the old route is torn
    /// down and its keys erased), an old backup is torn down and set up again.
    fn rekey_routes(&mut self, now_ms: u64) {
        let age = self.cfg.route_rekey_ms;
        if age == 0 {
            return;
        }
        // Spread over a quarter of the period (by route id): routes set up together, as after
        // a restart, do not all renew at once and meet the neighbours' Setup rate limits.
        let old = |rid: Option<RouteId>| {
            rid.and_then(|r| Some((r, self.own.get(&r)?)))
                .is_some_and(|(rid, r)| {
                    let spread = age / 4 / 16 * (rid.counter % 16);
                    r.is_up() && now_ms >= r.created.saturating_add(age).saturating_add(spread)
                })
        };
        let mut primaries = Vec::new();
        let mut backups = Vec::new();
        for (dst, d) in &self.dests {
            if now_ms < d.rekey_not_before {
                continue;
            }
            if d.replacing.is_none() && old(d.primary) {
                primaries.push(*dst);
            }
            if let Some(b) = d.backup.filter(|b| old(Some(*b))) {
                backups.push((*dst, b));
            }
        }
        let wait = now_ms.saturating_add(self.cfg.setup_retry_ms.max(1));
        for dst in primaries {
            let rid = self
                .compute_path(&dst)
                .and_then(|path| self.start_setup(now_ms, dst, path));
            if let Some(d) = self.dests.get_mut(&dst) {
                d.replacing = rid;
                d.rekey_not_before = wait;
            }
            if rid.is_some() {
                self.c.route_rekeys += 1;
            }
        }
        for (dst, b) in backups {
            self.teardown_own(&b, true);
            if let Some(d) = self.dests.get_mut(&dst) {
                d.backup = None;
                d.rekey_not_before = wait;
            }
            self.c.route_rekeys += 1;
            self.ensure_backup(now_ms, &dst);
        }
    }

    // ----- transit / egress side -------------------------------------------

    fn refuse(&mut self, to: NodeId, rid: RouteId) {
        self.c.setups_refused += 1;
        self.send(
            to,
            &Msg::Teardown {
                rid,
                upstream: true,
            },
        );
    }

    /// Whether route id `rid` is new for its origin (authenticated setups only), keeping the
    /// origin's window (bounded: [`super::node::MAX_SETUP_ORIGINS`]).
    fn setup_is_new(&mut self, now_ms: u64, rid: &RouteId) -> bool {
        if !self.setup_windows.contains_key(&rid.origin)
            && self.setup_windows.len() >= super::node::MAX_SETUP_ORIGINS
            && let Some(oldest) = self
                .setup_windows
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.setup_windows.remove(&oldest);
        }
        let (w, used) = self
            .setup_windows
            .entry(rid.origin)
            .or_insert((SetupWindow::default(), now_ms));
        *used = now_ms;
        w.accept(rid.counter)
    }

    pub(super) fn on_setup(
        &mut self,
        now_ms: u64,
        from: NodeId,
        rid: RouteId,
        path: Vec<NodeId>,
        rev_label: u32,
        hs: Vec<u8>,
    ) {
        let Some(i) = path.iter().position(|n| *n == self.id) else {
            return self.refuse(from, rid);
        };
        if i == 0 || path[i - 1] != from || !self.nbs.contains_key(&from) {
            return self.refuse(from, rid);
        }
        if let Some(h) = self.hops.get_mut(&rid) {
            // Duplicate setup: refresh; the egress re-acks.
            if h.prev == from {
                h.expires = now_ms.saturating_add(self.cfg.route_timeout_ms);
                if h.next.is_none()
                    && let Some(l) = h.fwd_in
                {
                    let hs = h.ack_hs.clone();
                    self.send(from, &Msg::SetupAck { rid, label: l, hs });
                }
            }
            return;
        }
        // Bounded work and state per neighbour, before any cryptography.
        if !self
            .nbs
            .get_mut(&from)
            .is_some_and(|n| n.setups.try_take(now_ms))
        {
            self.c.setups_rate_limited += 1;
            return;
        }
        if self.hops.values().filter(|h| h.prev == from).count()
            >= self.cfg.max_routes_per_neighbour
        {
            self.c.setups_over_quota += 1;
            return self.refuse(from, rid);
        }
        let expires = now_ms.saturating_add(self.cfg.route_timeout_ms);
        if i == path.len() - 1 {
            // Egress: nothing is installed for a setup whose handshake does not prove that
            // its sender holds the origin's key, nor for a replay of one that did.
            let (keys, ack_hs) =
                match session::respond(&self.noise, &rid, &path, &hs, self.cfg.route_aes) {
                    Ok(k) => k,
                    Err(_) => {
                        self.c.setups_unauthenticated += 1;
                        return self.refuse(from, rid);
                    }
                };
            if !self.setup_is_new(now_ms, &rid) {
                self.c.setups_replayed += 1;
                return self.refuse(from, rid);
            }
            let Some(fwd_in) = self.labels.alloc(&from) else {
                return self.refuse(from, rid);
            };
            let ids = self.add_keys(&keys);
            self.install(
                from,
                fwd_in,
                RuleThen::Deliver {
                    origin: rid.origin,
                    key: ids.1,
                },
            );
            self.hops.insert(
                rid,
                Hop {
                    prev: from,
                    next: None,
                    rev_in: None,
                    rev_out: rev_label,
                    fwd_in: Some(fwd_in),
                    fwd_out: None,
                    expires,
                    created: now_ms,
                    keys: Some(keys),
                    key_ids: Some(ids),
                    ka_seq: 0,
                    ack_hs: ack_hs.clone(),
                },
            );
            self.send(
                from,
                &Msg::SetupAck {
                    rid,
                    label: fwd_in,
                    hs: ack_hs,
                },
            );
            self.reselect(&rid.origin);
            return;
        }
        // Transit.
        if self.cfg.drain || self.cfg.no_transit {
            return self.refuse(from, rid);
        }
        let next = path[i + 1];
        if !self.nbs.contains_key(&next) {
            return self.refuse(from, rid);
        }
        let Some(rev_in) = self.labels.alloc(&next) else {
            return self.refuse(from, rid);
        };
        self.install(
            next,
            rev_in,
            RuleThen::Forward {
                to: from,
                label: rev_label,
            },
        );
        self.hops.insert(
            rid,
            Hop {
                prev: from,
                next: Some(next),
                rev_in: Some(rev_in),
                rev_out: rev_label,
                fwd_in: None,
                fwd_out: None,
                expires,
                created: now_ms,
                keys: None,
                key_ids: None,
                ka_seq: 0,
                ack_hs: Vec::new(),
            },
        );
        self.send(
            next,
            &Msg::Setup {
                rid,
                path,
                rev_label: rev_in,
                hs,
            },
        );
    }

    pub(super) fn on_setup_ack(
        &mut self,
        now_ms: u64,
        from: NodeId,
        rid: RouteId,
        label: u32,
        hs: Vec<u8>,
    ) {
        if let Some(r) = self.own.get(&rid) {
            if r.first_hop() == from && !r.is_up() {
                let path = r.path.clone();
                let (first, rev_label, dst) = (r.first_hop(), r.rev_label, r.dst);
                let keys = self
                    .pending_hs
                    .remove(&rid)
                    .and_then(|init| session::finish(init, &rid, &path, &hs).ok());
                match keys {
                    Some(k) => {
                        let ids = self.add_keys(&k);
                        self.install(
                            first,
                            rev_label,
                            RuleThen::Deliver {
                                origin: dst,
                                key: ids.1,
                            },
                        );
                        if let Some(r) = self.own.get_mut(&rid) {
                            r.keys = Some(k);
                            r.key_ids = Some(ids);
                        }
                        self.on_own_up(now_ms, rid, label);
                    }
                    None => {
                        // Not the egress's answer: the route cannot be trusted; build another.
                        self.c.setup_acks_unauthenticated += 1;
                        self.fail_own(now_ms, &rid, true);
                    }
                }
            }
            return;
        }
        let Some(h) = self.hops.get(&rid) else {
            // Downstream holds state we do not know: clean it.
            self.send(
                from,
                &Msg::Teardown {
                    rid,
                    upstream: false,
                },
            );
            return;
        };
        if h.next != Some(from) {
            return;
        }
        let prev = h.prev;
        if let (Some(out), Some(fin)) = (h.fwd_out, h.fwd_in) {
            if out == label {
                // Duplicate ack: repeat ours.
                let hs = h.ack_hs.clone();
                self.send(
                    prev,
                    &Msg::SetupAck {
                        rid,
                        label: fin,
                        hs,
                    },
                );
            }
            return;
        }
        let Some(fwd_in) = self.labels.alloc(&prev) else {
            self.remove_hop(&rid, true, true);
            return;
        };
        self.install(prev, fwd_in, RuleThen::Forward { to: from, label });
        if let Some(h) = self.hops.get_mut(&rid) {
            h.fwd_in = Some(fwd_in);
            h.fwd_out = Some(label);
            h.ack_hs = hs.clone();
        }
        self.send(
            prev,
            &Msg::SetupAck {
                rid,
                label: fwd_in,
                hs,
            },
        );
    }

    pub(super) fn on_keepalive(
        &mut self,
        now_ms: u64,
        from: NodeId,
        rid: RouteId,
        seq: u64,
        mac: [u8; session::MAC_LEN],
    ) {
        match self.hops.get_mut(&rid) {
            Some(h) if h.prev == from => {
                if let Some(n) = h.next {
                    // Transit: cannot check the MAC (no route key here); passes it on.
                    h.expires = now_ms.saturating_add(self.cfg.route_timeout_ms);
                    self.send(n, &Msg::Keepalive { rid, seq, mac });
                } else if h.keys.as_ref().is_some_and(|k| {
                    seq > h.ka_seq && session::check_mac(&k.ctrl, T_KEEPALIVE, &rid, seq, &mac)
                }) {
                    // Egress: only the origin's own keepalives keep its route here.
                    h.expires = now_ms.saturating_add(self.cfg.route_timeout_ms);
                    let first = h.ka_seq == 0;
                    h.ka_seq = seq;
                    if first {
                        // The origin holds the route's keys now: its reverse may carry data.
                        self.reselect(&rid.origin);
                    }
                } else {
                    self.c.keepalives_unauthenticated += 1;
                }
            }
            other => {
                if other.is_some() {
                    self.c.route_msgs_off_path += 1;
                }
                self.send(
                    from,
                    &Msg::Teardown {
                        rid,
                        upstream: true,
                    },
                )
            }
        }
    }

    pub(super) fn on_teardown(&mut self, now_ms: u64, from: NodeId, rid: RouteId, upstream: bool) {
        if upstream {
            if self.own.get(&rid).is_some_and(|r| r.first_hop() == from) {
                self.fail_own(now_ms, &rid, false);
            } else if self.hops.get(&rid).is_some_and(|h| h.next == Some(from)) {
                self.remove_hop(&rid, false, true);
            } else if self.own.contains_key(&rid) || self.hops.contains_key(&rid) {
                self.c.route_msgs_off_path += 1;
            }
        } else if self.hops.get(&rid).is_some_and(|h| h.prev == from) {
            self.remove_hop(&rid, true, false);
        } else if self.own.contains_key(&rid) || self.hops.contains_key(&rid) {
            self.c.route_msgs_off_path += 1;
        }
    }

    /// Drop transit/egress state, its rules and labels; optionally tell
    /// the downstream and/or upstream neighbour.
    pub(super) fn remove_hop(&mut self, rid: &RouteId, notify_down: bool, notify_up: bool) {
        let Some(h) = self.hops.remove(rid) else {
            return;
        };
        if let Some(l) = h.fwd_in {
            self.uninstall(h.prev, l);
        }
        self.drop_keys(h.key_ids);
        if let (Some(l), Some(n)) = (h.rev_in, h.next) {
            self.uninstall(n, l);
        }
        if notify_down && let Some(n) = h.next.filter(|n| self.nbs.contains_key(n)) {
            self.send(
                n,
                &Msg::Teardown {
                    rid: *rid,
                    upstream: false,
                },
            );
        }
        if notify_up && self.nbs.contains_key(&h.prev) {
            self.send(
                h.prev,
                &Msg::Teardown {
                    rid: *rid,
                    upstream: true,
                },
            );
        }
        if h.next.is_none() {
            self.reselect(&rid.origin);
        }
    }

    pub(super) fn routes_link_down(&mut self, now_ms: u64, nb: &NodeId) {
        let hops: Vec<(RouteId, bool)> = self
            .hops
            .iter()
            .filter(|(_, h)| h.prev == *nb || h.next == Some(*nb))
            .map(|(r, h)| (*r, h.prev == *nb))
            .collect();
        for (rid, from_prev) in hops {
            // Tell the side that is still reachable.
            self.remove_hop(&rid, from_prev, !from_prev);
        }
        let own: Vec<RouteId> = self
            .own
            .iter()
            .filter(|(_, r)| r.first_hop() == *nb)
            .map(|(r, _)| *r)
            .collect();
        for rid in own {
            self.fail_own(now_ms, &rid, false);
        }
    }

    pub(super) fn routes_tick(&mut self, now_ms: u64) {
        // Own routes: setup timeouts and keep-alives.
        let mut failed = Vec::new();
        let mut ka = Vec::new();
        for (rid, r) in self.own.iter_mut() {
            match r.state {
                OwnState::Pending { deadline } if deadline <= now_ms => failed.push(*rid),
                OwnState::Up { .. } if r.next_keepalive <= now_ms => {
                    r.next_keepalive = now_ms.saturating_add(self.cfg.route_keepalive_ms.max(1));
                    r.ka_seq += 1;
                    let mac = r
                        .keys
                        .as_ref()
                        .map(|k| session::control_mac(&k.ctrl, T_KEEPALIVE, rid, r.ka_seq))
                        .unwrap_or_default();
                    ka.push((r.first_hop(), *rid, r.ka_seq, mac));
                }
                _ => {}
            }
        }
        for (to, rid, seq, mac) in ka {
            self.send(to, &Msg::Keepalive { rid, seq, mac });
        }
        for rid in failed {
            self.fail_own(now_ms, &rid, true);
        }
        // Transit state not refreshed.
        let expired: Vec<RouteId> = self
            .hops
            .iter()
            .filter(|(_, h)| h.expires <= now_ms)
            .map(|(r, _)| *r)
            .collect();
        for rid in expired {
            self.remove_hop(&rid, true, true);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(at, _)| *at <= now_ms);
        self.retiring = later;
        for (_, rid) in due {
            self.teardown_own(&rid, true);
        }
        self.rekey_routes(now_ms);
        // Retries and idle release.
        let mut retry = Vec::new();
        let mut idle = Vec::new();
        for (dst, d) in &self.dests {
            if d.primary.is_none() && d.retry_at.is_some_and(|t| t <= now_ms) {
                retry.push(*dst);
            }
            if self.cfg.route_idle_ms > 0
                && now_ms >= d.last_used.saturating_add(self.cfg.route_idle_ms)
            {
                idle.push(*dst);
            }
        }
        for dst in idle {
            self.routes_release(now_ms, dst);
        }
        for dst in retry {
            if self.dests.contains_key(&dst) {
                self.start_primary(now_ms, dst);
                self.reselect(&dst);
            }
        }
    }

    pub(super) fn routes_next_timer(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut at = |x: u64| t = Some(t.map_or(x, |y| y.min(x)));
        for r in self.own.values() {
            match r.state {
                OwnState::Pending { deadline } => at(deadline),
                OwnState::Up { .. } => at(r.next_keepalive),
            }
        }
        for h in self.hops.values() {
            at(h.expires);
        }
        for (t, _) in &self.retiring {
            at(*t);
        }
        for d in self.dests.values() {
            if let (None, Some(r)) = (d.primary, d.retry_at) {
                at(r);
            }
            if self.cfg.route_idle_ms > 0 {
                at(d.last_used.saturating_add(self.cfg.route_idle_ms));
            }
        }
        t
    }
}
