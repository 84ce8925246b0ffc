//! App requests: attachments (prefixes behind a node: the VPN), services, route status. What
//! an app attaches or publishes lives exactly as long as its app-socket connection.

use super::{Output, Router, prefix};
use crate::appsock::{MAX_SERVICES_PER_CONN, Request};
use crate::identity::NodeId;
use crate::messenger::Service;
use crate::messenger::record::MAX_SERVICES;
use dataplane::fibproto::{FibMsg, RuleAction};
use netbase::Prefix;
use std::net::IpAddr;
use std::time::Instant;

impl Router {
    /// Answers one app-socket request from connection `conn` (the reply line). `find` is not
    /// answered here: the driver hands it to the messenger client.
    pub fn handle_app_request(&mut self, now: Instant, conn: u64, req: Request) -> String {
        let r = match req {
            Request::WhoAmI => Ok(format!("{} {}", self.me.hex(), self.me.overlay_addr())),
            Request::Underlay => Ok(self.underlay()),
            Request::Route { node } => Ok(if self.nm.mapping(&node).is_some() {
                "up".to_string()
            } else {
                "pending".to_string()
            }),
            Request::Detach { node } => {
                if let Some(m) = self.attached.get_mut(&conn) {
                    m.remove(&node);
                }
                self.program_attached(node);
                self.commit();
                Ok(String::new())
            }
            Request::Attach { node, prefixes } => self.attach(now, conn, node, prefixes),
            Request::Find { .. } => Err("find is answered by the messenger client".into()),
            Request::Service { kind, port } => self.publish(conn, kind, port),
        };
        match r {
            Ok(s) if s.is_empty() => "ok".to_string(),
            Ok(s) => format!("ok {s}"),
            Err(e) => {
                self.app_refused();
                format!("err {e}")
            }
        }
    }

    /// Which of the nodes offering a service an app gets: the one with the cheapest path from
    /// here (a route already up counts as cheapest), nodes without a path last; ties are broken
    /// by a hash of both keys, not by key order, so no key can be ground to be everyone's
    /// choice. `None` when there is no candidate.
    pub fn choose_service(&self, candidates: &[(NodeId, u16)]) -> Option<(NodeId, u16)> {
        let tie = |n: &NodeId| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&self.me.0);
            ctx.update(&n.0);
            let d = ctx.finish();
            let mut b = [0u8; 8];
            b.copy_from_slice(&d.as_ref()[..8]);
            u64::from_be_bytes(b)
        };
        candidates
            .iter()
            .filter(|(n, _)| *n != self.me)
            .min_by_key(|(n, _)| {
                let cost = if self.nm.mapping(n).is_some() {
                    0
                } else {
                    self.nm.path_cost(n).unwrap_or(u64::MAX)
                };
                (cost, tie(n))
            })
            .copied()
    }

    /// An app request refused outside [`Router::handle_app_request`] (counted).
    pub fn app_refused(&mut self) {
        self.stats.app_errors += 1;
    }

    /// App connection `conn` closed: its services and attachments go.
    pub fn handle_app_closed(&mut self, conn: u64) {
        if self.app_services.remove(&conn).is_some() {
            self.publish_services();
        }
        if let Some(m) = self.attached.remove(&conn) {
            for node in m.into_keys() {
                tracing::info!("app {conn} gone; detached from {}", &node.hex()[..16]);
                self.program_attached(node);
            }
            self.commit();
        }
    }

    /// The underlay addresses in use: link endpoints, configured neighbours and messengers.
    fn underlay(&self) -> String {
        let mut ips: Vec<IpAddr> = Vec::new();
        let all = self
            .links
            .values()
            .map(|l| l.endpoint.ip())
            .chain(
                self.cfg
                    .neighbours
                    .iter()
                    .filter_map(|n| n.endpoint.map(|e| e.ip())),
            )
            .chain(self.cfg.messengers.iter().map(|(_, e)| e.ip()));
        for ip in all {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        ips.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn attach(
        &mut self,
        now: Instant,
        conn: u64,
        node: NodeId,
        prefixes: Vec<Prefix>,
    ) -> Result<String, String> {
        if node == self.me {
            return Err("cannot attach prefixes to this node itself".into());
        }
        // No attachment may overlap another one (of any app connection, to any node) but the
        // one it replaces (this connection's to the same node): a more specific prefix would
        // steal part of another app's routes (0.0.0.0/1 beside a VPN's 0.0.0.0/0), a wider one
        // would take what the other app does not cover.
        for (c, m) in &self.attached {
            for (n, ps) in m {
                if *c == conn && *n == node {
                    continue;
                }
                for p in &prefixes {
                    if let Some(q) = ps.iter().find(|q| q.overlaps(p)) {
                        let n = node_short(n);
                        return Err(if q == p {
                            format!("{p} is already attached to {n} (app connection {c})")
                        } else {
                            format!("{p} overlaps {q}, attached to {n} (app connection {c})")
                        });
                    }
                }
            }
        }
        self.remember(node);
        self.attached
            .entry(conn)
            .or_default()
            .insert(node, prefixes.clone());
        self.program_attached(node);
        self.commit();
        if self.nm.mapping(&node).is_none() {
            let ms = self.ms(now);
            self.nm.request_route(ms, node);
            self.actions();
        }
        tracing::info!(
            "app {conn} attached {} to {}",
            prefixes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            node_short(&node)
        );
        Ok(String::new())
    }

    /// Publishes (or re-publishes, for a kind it already has) a service of connection `conn`.
    fn publish(&mut self, conn: u64, kind: String, port: u16) -> Result<String, String> {
        if port == 0 {
            return Err("service port must be 1-65535".into());
        }
        let total =
            self.cfg.services.len() + self.app_services.values().map(Vec::len).sum::<usize>();
        let list = self.app_services.entry(conn).or_default();
        if !list.iter().any(|s| s.kind == kind) {
            if list.len() >= MAX_SERVICES_PER_CONN {
                return Err(format!(
                    "at most {MAX_SERVICES_PER_CONN} services per app connection"
                ));
            }
            if total >= MAX_SERVICES {
                return Err(format!(
                    "this node's record holds at most {MAX_SERVICES} services"
                ));
            }
        }
        list.retain(|s| s.kind != kind);
        list.push(Service {
            kind,
            port,
            meta: String::new(),
        });
        Ok(if self.publish_services() {
            String::new()
        } else {
            "unpublished (no messenger configured)".to_string()
        })
    }

    /// Queues the configured services plus those apps published for the messenger client;
    /// false when there is no messenger to publish with.
    pub(super) fn publish_services(&mut self) -> bool {
        if !self.messenger {
            return false;
        }
        let mut all = self.cfg.services.clone();
        for s in self.app_services.values().flatten() {
            if !all.iter().any(|x| x.kind == s.kind && x.port == s.port) {
                all.push(s.clone());
            }
        }
        self.out.push_back(Output::Publish(all));
        true
    }

    /// Keeps the routes to nodes with attached prefixes up, used or not.
    pub(super) fn keep_attached(&mut self, now: Instant) {
        let ms = self.ms(now);
        let nodes: Vec<NodeId> = self
            .attached
            .values()
            .flat_map(|m| m.keys().copied())
            .collect();
        for n in nodes {
            if self.nm.mapping(&n).is_some() {
                self.nm.touch_route(ms, n);
            } else {
                self.nm.request_route(ms, n);
            }
        }
    }

    /// Sources a route from `origin` may carry: its overlay address and what apps attached.
    pub(super) fn sources_of(&self, origin: &NodeId) -> Vec<Prefix> {
        let mut v = vec![prefix(origin)];
        v.extend(self.attached_prefixes(origin));
        v.truncate(dataplane::fibproto::MAX_LIST);
        v
    }

    /// Whether apps attached prefixes to `node`, or its attached routes are still programmed
    /// (route events of other nodes need no attachment work).
    pub(super) fn has_attachments(&self, node: &NodeId) -> bool {
        self.attached.values().any(|m| m.contains_key(node))
            || self.programmed.values().any(|n| n == node)
    }

    /// Every prefix attached to `node` (by any app connection).
    fn attached_prefixes(&self, node: &NodeId) -> Vec<Prefix> {
        let mut v: Vec<Prefix> = Vec::new();
        for p in self.attached.values().filter_map(|m| m.get(node)).flatten() {
            if !v.contains(p) {
                v.push(*p);
            }
        }
        v
    }

    /// The node an attached prefix holding `ip` belongs to (longest match).
    pub(super) fn attached_node_for(&self, ip: IpAddr) -> Option<NodeId> {
        self.attached
            .values()
            .flat_map(|m| m.iter())
            .flat_map(|(n, ps)| ps.iter().map(move |p| (n, p)))
            .filter(|(_, p)| p.contains(ip))
            .max_by_key(|(_, p)| p.len())
            .map(|(n, _)| *n)
    }

    /// Brings the dataplane in line with the prefixes attached to `node`: routes for them
    /// follow the node's current route (none while it has none), and the deliver rules of
    /// routes from it accept them as sources.
    pub(super) fn program_attached(&mut self, node: NodeId) {
        let want = self.attached_prefixes(&node);
        let via = self
            .nm
            .mapping(&node)
            .and_then(|(via, label, key)| self.session_of(&via).map(|s| (s, label, key)));
        let stale: Vec<Prefix> = self
            .programmed
            .iter()
            .filter(|(p, n)| **n == node && (via.is_none() || !want.contains(p)))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.programmed.remove(&p);
            self.fib(FibMsg::RemoveRoute { prefix: p });
        }
        if let Some((session, label, key)) = via {
            for p in &want {
                self.fib(FibMsg::AddRoute {
                    prefix: *p,
                    session,
                    label,
                    key,
                    keepalive: true,
                });
                self.programmed.insert(*p, node);
            }
        }
        let rules: Vec<((u32, u32), u64)> = self
            .delivers
            .iter()
            .filter(|(_, (o, _))| *o == node)
            .map(|(k, (_, key))| (*k, *key))
            .collect();
        let sources = self.sources_of(&node);
        for ((session, label), key) in rules {
            self.fib(FibMsg::AddRule {
                session,
                label,
                action: RuleAction::Deliver {
                    sources: sources.clone(),
                    key,
                },
            });
        }
    }
}

fn node_short(n: &NodeId) -> String {
    n.hex()[..16].to_string()
}
