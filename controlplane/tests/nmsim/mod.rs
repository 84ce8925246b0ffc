//! Discrete-event simulation harness: many NodeManagers in one process, a
//! fake clock, a message queue with per-link latency (and optional loss),
//! and a fake dataplane per node to walk installed rules hop by hop.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use controlplane::nm::{Action, Config, NodeId, NodeManager, RuleThen};

/// xorshift64* PRNG (tests only; the core has no randomness).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Clone)]
pub struct Dataplane {
    pub rules: BTreeMap<(NodeId, u32), RuleThen>,
    /// dst -> (via, label, data key id).
    pub routes: BTreeMap<NodeId, (NodeId, u32, u64)>,
    /// Data keys by id (a node that is only a relay of a route holds none of its keys).
    pub keys: BTreeMap<u64, [u8; 32]>,
}

/// (deliver at, tie-break seq, to, from, bytes)
type Event = (u64, u64, usize, usize, Vec<u8>);

pub struct Link {
    pub latency_ms: u64,
    pub up: bool,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct MsgCounts {
    pub adverts: u64,
    pub acks: u64,
    pub setups: u64,
    pub setup_acks: u64,
    pub keepalives: u64,
    pub teardowns: u64,
    pub dropped: u64,
}

impl MsgCounts {
    pub fn total(&self) -> u64 {
        self.adverts + self.acks + self.setups + self.setup_acks + self.keepalives + self.teardowns
    }
}

pub struct Sim {
    pub now: u64,
    pub nodes: Vec<NodeManager>,
    pub ids: Vec<NodeId>,
    pub index: HashMap<NodeId, usize>,
    pub links: BTreeMap<(usize, usize), Link>,
    pub dp: Vec<Dataplane>,
    events: BinaryHeap<Reverse<Event>>,
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    seqno: u64,
    armed: Vec<u64>,
    pub msgs: MsgCounts,
    pub rule_conflicts: u64,
    pub missing_removes: u64,
    pub busy_timers: u64,
    pub loss_pct: u64,
    pub rng: Rng,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    pub fn new(n: usize, cfg: &Config, seed: u64) -> Self {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            s[8..16].copy_from_slice(&seed.to_le_bytes());
            nodes.push(NodeManager::new(s, cfg.clone(), 0));
        }
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut sim = Sim {
            now: 0,
            nodes,
            ids,
            index,
            links: BTreeMap::new(),
            dp: vec![Dataplane::default(); n],
            events: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seqno: 0,
            armed: vec![u64::MAX; n],
            msgs: MsgCounts::default(),
            rule_conflicts: 0,
            missing_removes: 0,
            busy_timers: 0,
            loss_pct: 0,
            rng: Rng(seed | 1),
        };
        for i in 0..n {
            sim.after(i);
        }
        sim
    }

    /// Random connected graph: a random spanning tree, then extra links
    /// until every node has degree >= 3 (max 4 where possible).
    pub fn random_graph(&mut self, rng: &mut Rng) -> Vec<(usize, usize, u64)> {
        let n = self.nodes.len();
        let mut deg = vec![0usize; n];
        let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
        for i in 1..n {
            // prefer partners with low degree
            let mut j = rng.below(i as u64) as usize;
            for _ in 0..4 {
                if deg[j] < 3 {
                    break;
                }
                j = rng.below(i as u64) as usize;
            }
            edges.insert(key(i, j));
            deg[i] += 1;
            deg[j] += 1;
        }
        for i in 0..n {
            let mut tries = 0;
            while deg[i] < 3 && tries < 200 && n > 4 {
                tries += 1;
                let j = rng.below(n as u64) as usize;
                if j == i || deg[j] >= 4 || edges.contains(&key(i, j)) {
                    continue;
                }
                edges.insert(key(i, j));
                deg[i] += 1;
                deg[j] += 1;
            }
        }
        edges
            .into_iter()
            .map(|(a, b)| (a, b, 1 + rng.below(20)))
            .collect()
    }

    pub fn link_up(&mut self, a: usize, b: usize, latency_ms: u64) {
        self.links.insert(
            key(a, b),
            Link {
                latency_ms,
                up: true,
            },
        );
        let cost = (latency_ms * 1000) as u32;
        let (ia, ib) = (self.ids[a], self.ids[b]);
        self.nodes[a].link_up(self.now, ib, cost);
        self.after(a);
        self.nodes[b].link_up(self.now, ia, cost);
        self.after(b);
    }

    pub fn link_down(&mut self, a: usize, b: usize) {
        if let Some(l) = self.links.get_mut(&key(a, b)) {
            l.up = false;
        }
        let (ia, ib) = (self.ids[a], self.ids[b]);
        self.nodes[a].link_down(self.now, ib);
        self.after(a);
        self.nodes[b].link_down(self.now, ia);
        self.after(b);
    }

    pub fn link_is_up(&self, a: usize, b: usize) -> bool {
        self.links.get(&key(a, b)).is_some_and(|l| l.up)
    }

    pub fn request_route(&mut self, s: usize, d: usize) {
        let dst = self.ids[d];
        self.nodes[s].request_route(self.now, dst);
        self.after(s);
    }

    pub fn set_policy(&mut self, i: usize, drain: bool, no_transit: bool) {
        self.nodes[i].set_policy(self.now, drain, no_transit);
        self.after(i);
    }

    /// Drain node `i`'s actions into the network / fake dataplane and
    /// re-arm its timer.
    pub fn after(&mut self, i: usize) {
        self.after_inner(i, false);
    }

    fn after_inner(&mut self, i: usize, ticked: bool) {
        while let Some(a) = self.nodes[i].poll_action() {
            match a {
                Action::Send { to, bytes } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    match bytes.get(1) {
                        Some(1) => self.msgs.adverts += 1,
                        Some(2) => self.msgs.acks += 1,
                        Some(3) => self.msgs.setups += 1,
                        Some(4) => self.msgs.setup_acks += 1,
                        Some(5) => self.msgs.keepalives += 1,
                        Some(6) => self.msgs.teardowns += 1,
                        _ => {}
                    }
                    let Some(l) = self.links.get(&key(i, j)) else {
                        self.msgs.dropped += 1;
                        continue;
                    };
                    if !l.up || (self.loss_pct > 0 && self.rng.below(100) < self.loss_pct) {
                        self.msgs.dropped += 1;
                        continue;
                    }
                    self.seqno += 1;
                    let t = self.now + l.latency_ms;
                    self.events.push(Reverse((t, self.seqno, j, i, bytes)));
                }
                Action::InstallRule {
                    in_from,
                    in_label,
                    then,
                } => {
                    if self.dp[i].rules.insert((in_from, in_label), then).is_some() {
                        self.rule_conflicts += 1;
                    }
                }
                Action::RemoveRule { in_from, in_label } => {
                    if self.dp[i].rules.remove(&(in_from, in_label)).is_none() {
                        self.missing_removes += 1;
                    }
                }
                Action::AddKey { id, key, .. } => {
                    if self.dp[i].keys.insert(id, key.0).is_some() {
                        self.rule_conflicts += 1;
                    }
                }
                Action::RemoveKey { id } => {
                    if self.dp[i].keys.remove(&id).is_none() {
                        self.missing_removes += 1;
                    }
                }
                Action::RouteUp {
                    dst,
                    via,
                    label,
                    key,
                } => {
                    self.dp[i].routes.insert(dst, (via, label, key));
                }
                Action::RouteDown { dst } => {
                    self.dp[i].routes.remove(&dst);
                }
            }
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            // A deadline at `now` is fine after a message (the tick is
            // simply still to come); right after a tick it would be a busy
            // loop, so count it and push it 1 ms out.
            let t = if t < self.now || (ticked && t <= self.now) {
                self.busy_timers += 1;
                self.now + 1
            } else {
                t
            };
            if self.armed[i] != t {
                self.armed[i] = t;
                self.timers.push(Reverse((t, i)));
            }
        }
    }

    /// Process every event up to and including time `t`.
    pub fn run_until(&mut self, t: u64) {
        loop {
            let ev = self.events.peek().map(|Reverse(e)| e.0);
            let tm = self.timers.peek().map(|Reverse(e)| e.0);
            let next = match (ev, tm) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if ev == Some(next) {
                let Some(Reverse((_, _, to, from, bytes))) = self.events.pop() else {
                    break;
                };
                if !self.link_is_up(to, from) {
                    self.msgs.dropped += 1;
                    continue;
                }
                let f = self.ids[from];
                self.nodes[to].handle(self.now, f, &bytes);
                self.after(to);
            } else {
                let Some(Reverse((tt, i))) = self.timers.pop() else {
                    break;
                };
                // Lazy deletion: only the latest armed timer of a node fires.
                if self.armed[i] == tt {
                    self.armed[i] = u64::MAX;
                    self.nodes[i].tick(self.now);
                    self.after_inner(i, true);
                }
            }
        }
        self.now = self.now.max(t);
    }

    /// Run in `step_ms` steps until `pred` holds or `limit_ms` elapses;
    /// returns the time taken (from the call) if it held.
    pub fn run_until_pred(
        &mut self,
        step_ms: u64,
        limit_ms: u64,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<u64> {
        let start = self.now;
        loop {
            if pred(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit_ms {
                return None;
            }
            let t = self.now + step_ms;
            self.run_until(t);
        }
    }

    pub fn lsdb_converged(&self) -> bool {
        let n = self.nodes.len();
        if self.nodes.iter().any(|x| x.counters().lsdb_size != n) {
            return false;
        }
        // Every node's own advert must reflect its current links.
        if self.nodes.iter().any(|x| {
            x.advert(&x.id())
                .is_none_or(|a| a.links.len() != x.neighbours().len())
        }) {
            return false;
        }
        let want: Vec<(NodeId, u64)> = {
            let mut v: Vec<_> = self
                .nodes
                .iter()
                .map(|x| (x.id(), x.advert_seq()))
                .collect();
            v.sort();
            v
        };
        self.nodes.iter().all(|x| x.lsdb_summary() == want)
    }

    /// Follow the ingress mapping of `s` for `d` through every hop's rule
    /// table to a Deliver at `d` naming `s` as origin. Returns the node path.
    pub fn walk(&self, s: usize, d: usize) -> Result<Vec<usize>, String> {
        let dst = self.ids[d];
        let Some(&(via, label, tx)) = self.dp[s].routes.get(&dst) else {
            return Err(format!("{s}: no mapping for {d}"));
        };
        let Some(sealed_with) = self.dp[s].keys.get(&tx) else {
            return Err(format!("{s}: mapping for {d} names no key"));
        };
        let mut from = s;
        let mut cur = *self.index.get(&via).ok_or("unknown via")?;
        let mut label = label;
        let mut path = vec![s];
        for _ in 0..70 {
            if !self.link_is_up(from, cur) {
                return Err(format!("link {from}-{cur} down on path {path:?}"));
            }
            path.push(cur);
            let rule = self.dp[cur].rules.get(&(self.ids[from], label));
            match rule {
                None => {
                    return Err(format!(
                        "no rule at {cur} for ({from},{label}) path {path:?}"
                    ));
                }
                Some(RuleThen::Deliver { origin, key }) => {
                    if cur != d || *origin != self.ids[s] {
                        return Err(format!("delivered at {cur} (want {d}) path {path:?}"));
                    }
                    // The egress opens with the very key the ingress sealed with.
                    if self.dp[cur].keys.get(key) != Some(sealed_with) {
                        return Err(format!("{d} cannot open what {s} sealed, path {path:?}"));
                    }
                    // No node between them holds it.
                    for &relay in &path[1..path.len() - 1] {
                        if self.dp[relay].keys.values().any(|k| k == sealed_with) {
                            return Err(format!(
                                "relay {relay} holds the route key, path {path:?}"
                            ));
                        }
                    }
                    return Ok(path);
                }
                Some(RuleThen::Forward { to, label: l }) => {
                    from = cur;
                    cur = *self.index.get(to).ok_or("unknown next")?;
                    label = *l;
                }
            }
        }
        Err(format!("loop {path:?}"))
    }

    /// Is the graph of up links connected?
    pub fn connected(&self, without: Option<(usize, usize)>) -> bool {
        let n = self.nodes.len();
        let mut adj = vec![Vec::new(); n];
        for (&(a, b), l) in &self.links {
            if l.up && Some(key(a, b)) != without.map(|(x, y)| key(x, y)) {
                adj[a].push(b);
                adj[b].push(a);
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(u) = stack.pop() {
            for &v in &adj[u] {
                if !seen[v] {
                    seen[v] = true;
                    stack.push(v);
                }
            }
        }
        seen.into_iter().all(|x| x)
    }
}

/// Figures produced by [`scenario`].
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub nodes: usize,
    pub links: usize,
    pub lsdb_converge_ms: u64,
    pub conv_msgs: MsgCounts,
    pub pairs: usize,
    pub routes_up_ms: u64,
    pub route_msgs: MsgCounts,
    pub backups_ready: usize,
    pub fail_rounds: Vec<FailRound>,
    pub rule_conflicts: u64,
    pub busy_timers: u64,
    pub wall_ms: u128,
}

#[derive(Debug, Default, Clone)]
pub struct FailRound {
    pub links_failed: usize,
    pub affected_pairs: usize,
    pub reconverge_ms: u64,
    pub failovers: u64,
    pub rebuilds: u64,
}

fn sub(a: MsgCounts, b: MsgCounts) -> MsgCounts {
    MsgCounts {
        adverts: a.adverts - b.adverts,
        acks: a.acks - b.acks,
        setups: a.setups - b.setups,
        setup_acks: a.setup_acks - b.setup_acks,
        keepalives: a.keepalives - b.keepalives,
        teardowns: a.teardowns - b.teardowns,
        dropped: a.dropped - b.dropped,
    }
}

/// Full scenario: random graph, LSDB convergence, routes between random
/// pairs (walked both ways), then rounds of link failures (1, 1, 1, 3 links)
/// with re-convergence of every pair. Panics (test failure) on any bound
/// violation.
pub fn scenario(n: usize, pairs: usize, seed: u64, verbose: bool) -> Figures {
    let wall = std::time::Instant::now();
    let cfg = Config::default();
    let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let mut s = Sim::new(n, &cfg, seed);
    let edges = s.random_graph(&mut rng);
    let mut f = Figures {
        nodes: n,
        links: edges.len(),
        ..Default::default()
    };
    for &(a, b, l) in &edges {
        s.link_up(a, b, l);
    }
    let conv = s
        .run_until_pred(10, 120_000, |s| s.lsdb_converged())
        .expect("LSDB did not converge within 120 s");
    f.lsdb_converge_ms = conv;
    f.conv_msgs = s.msgs;
    if verbose {
        println!(
            "[{n}] LSDB converged in {conv} ms simulated ({} ms wall)",
            wall.elapsed().as_millis()
        );
    }

    // Routes between random pairs.
    let mut ps: Vec<(usize, usize)> = Vec::new();
    while ps.len() < pairs {
        let a = rng.below(n as u64) as usize;
        let b = rng.below(n as u64) as usize;
        if a != b && !ps.contains(&(a, b)) && !ps.contains(&(b, a)) {
            ps.push((a, b));
        }
    }
    let before = s.msgs;
    for &(a, b) in &ps {
        s.request_route(a, b);
    }
    let all_ok = |s: &Sim| {
        ps.iter()
            .all(|&(a, b)| s.walk(a, b).is_ok() && s.walk(b, a).is_ok())
    };
    let t = s.run_until_pred(5, 10_000, all_ok);
    if t.is_none() {
        for &(a, b) in &ps {
            if let Err(e) = s.walk(a, b).and(s.walk(b, a)) {
                println!("pair {a}->{b}: {e}");
            }
        }
        panic!("routes not up within 10 s");
    }
    f.routes_up_ms = t.unwrap_or(0);
    // let backups come up too
    s.run_until(s.now + 500);
    f.route_msgs = sub(s.msgs, before);
    f.pairs = ps.len();
    f.backups_ready = s.nodes.iter().map(|x| x.counters().backups_ready).sum();
    if verbose {
        println!(
            "[{n}] {} routes (both directions walked) up in {} ms; {} backups pre-established",
            ps.len(),
            f.routes_up_ms,
            f.backups_ready
        );
    }

    // Failure rounds.
    for &k in &[1usize, 1, 1, 3] {
        // Links carried by active routes, so failures matter.
        let mut used: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for &(a, b) in &ps {
            for p in [s.walk(a, b), s.walk(b, a)].into_iter().flatten() {
                for w in p.windows(2) {
                    *used.entry(key(w[0], w[1])).or_default() += 1;
                }
            }
        }
        let cands: Vec<(usize, usize)> = used.keys().copied().collect();
        let mut failed = Vec::new();
        let mut tries = 0;
        while failed.len() < k && tries < 1000 {
            tries += 1;
            let (a, b) = cands[rng.below(cands.len() as u64) as usize];
            if failed.contains(&(a, b)) || !s.connected(Some((a, b))) {
                continue;
            }
            // take it down in the connectivity view first so the next
            // candidate is checked against the reduced graph
            if let Some(l) = s.links.get_mut(&(a, b)) {
                l.up = false;
            }
            failed.push((a, b));
        }
        let affected = ps
            .iter()
            .filter(|&&(a, b)| {
                [s.walk(a, b), s.walk(b, a)].iter().any(|r| match r {
                    Ok(p) => p.windows(2).any(|w| failed.contains(&key(w[0], w[1]))),
                    Err(_) => true,
                })
            })
            .count();
        let fo0: u64 = s.nodes.iter().map(|x| x.counters().failovers).sum();
        let rb0: u64 = s.nodes.iter().map(|x| x.counters().rebuilds).sum();
        for &(a, b) in &failed {
            s.link_down(a, b);
        }
        let t = s.run_until_pred(1, 10_000, all_ok);
        if t.is_none() {
            for &(a, b) in &ps {
                if let Err(e) = s.walk(a, b).and(s.walk(b, a)) {
                    println!("pair {a}->{b}: {e}");
                }
            }
            panic!("pairs did not re-converge within 10 s after failing {failed:?}");
        }
        let r = FailRound {
            links_failed: failed.len(),
            affected_pairs: affected,
            reconverge_ms: t.unwrap_or(0),
            failovers: s.nodes.iter().map(|x| x.counters().failovers).sum::<u64>() - fo0,
            rebuilds: s.nodes.iter().map(|x| x.counters().rebuilds).sum::<u64>() - rb0,
        };
        if verbose {
            println!(
                "[{n}] failed {} link(s): {} pairs affected, all pairs working again after {} ms (failovers {}, rebuilds {})",
                r.links_failed, r.affected_pairs, r.reconverge_ms, r.failovers, r.rebuilds
            );
        }
        f.fail_rounds.push(r);
        // settle (backups re-established, dead state timed out)
        s.run_until(s.now + cfg.route_timeout_ms + 1_000);
        assert!(all_ok(&s), "pairs broke while settling");
    }
    f.rule_conflicts = s.rule_conflicts;
    f.busy_timers = s.busy_timers;
    f.wall_ms = wall.elapsed().as_millis();
    f
}
