//! What the router has programmed into its dataplane, kept so that a restarted dataplane (its
//! tables empty) can be given all of it again. The same semantics as the dataplane's tables:
//! removing a session (or a route key) removes the rules and routes that use it.
//!
//! Route keys are the exception: they are never kept, so never given again. A new dataplane
//! would seal from counter 0 under them, reusing nonces; the rules and routes that name one
//! are left out of a replay too (the routes are set up again, with new handshakes). In practice
//! a lost dataplane closes every link, so its routes are gone by the time one comes back.

use dataplane::fib::Prefix;
use dataplane::fibproto::{FibMsg, RuleAction};
use std::collections::HashMap;

/// The router's copy of its dataplane's tables.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    /// Session id -> the `AddSession` that made it (current keys).
    sessions: HashMap<u32, FibMsg>,
    rules: HashMap<(u32, u32), RuleAction>,
    /// Prefix -> (session, label, route key, keepalive).
    routes: HashMap<Prefix, (u32, u32, u64, bool)>,
}

impl Mirror {
    /// Follows one change sent to the dataplane.
    pub fn apply(&mut self, m: &FibMsg) {
        match m {
            FibMsg::AddSession { id, .. } => {
                self.sessions.insert(*id, m.clone());
            }
            FibMsg::RemoveSession { id } => {
                self.sessions.remove(id);
                self.rules.retain(|(s, _), a| {
                    s != id && !matches!(a, RuleAction::Forward { session, .. } if session == id)
                });
                self.routes.retain(|_, (s, _, _, _)| s != id);
            }
            FibMsg::AddRule {
                session,
                label,
                action,
            } => {
                self.rules.insert((*session, *label), action.clone());
            }
            FibMsg::RemoveRule { session, label } => {
                self.rules.remove(&(*session, *label));
            }
            FibMsg::AddRoute {
                prefix,
                session,
                label,
                key,
                keepalive,
            } => {
                self.routes
                    .insert(*prefix, (*session, *label, *key, *keepalive));
            }
            FibMsg::RemoveRouteKey { id } => {
                self.rules
                    .retain(|_, a| !matches!(a, RuleAction::Deliver { key, .. } if key == id));
                self.routes.retain(|_, (_, _, k, _)| k != id);
            }
            FibMsg::RemoveRoute { prefix } => {
                self.routes.remove(prefix);
            }
            FibMsg::Clear => *self = Mirror::default(),
            _ => {}
        }
    }

    /// Everything, as the messages that program an empty dataplane: sessions first, then the
    /// rules and routes that refer to them.
    pub fn replay(&self) -> Vec<FibMsg> {
        let mut v: Vec<FibMsg> = Vec::with_capacity(self.len());
        let mut ids: Vec<&u32> = self.sessions.keys().collect();
        ids.sort();
        v.extend(
            ids.into_iter()
                .filter_map(|id| self.sessions.get(id).cloned()),
        );
        for (&(session, label), action) in &self.rules {
            if matches!(action, RuleAction::Deliver { .. }) {
                continue;
            }
            v.push(FibMsg::AddRule {
                session,
                label,
                action: action.clone(),
            });
        }
        v
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.sessions.len() + self.rules.len() + self.routes.len()
    }
}
