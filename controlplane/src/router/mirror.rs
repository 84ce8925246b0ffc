//! What the router has programmed into its dataplane, kept so that a restarted dataplane (its
//! tables empty) can be given all of it again. The same semantics as the dataplane's tables:
//! removing a session removes the rules and routes that use it.

use dataplane::fib::Prefix;
use dataplane::fibproto::{FibMsg, RuleAction};
use std::collections::HashMap;

/// The router's copy of its dataplane's tables.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    /// Session id -> the `AddSession` that made it (current keys).
    sessions: HashMap<u32, FibMsg>,
    rules: HashMap<(u32, u32), RuleAction>,
    routes: HashMap<Prefix, (u32, u32, bool)>,
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
                self.routes.retain(|_, (s, _, _)| s != id);
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
                keepalive,
            } => {
                self.routes.insert(*prefix, (*session, *label, *keepalive));
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
            v.push(FibMsg::AddRule {
                session,
                label,
                action: action.clone(),
            });
        }
        for (&prefix, &(session, label, keepalive)) in &self.routes {
            v.push(FibMsg::AddRoute {
                prefix,
                session,
                label,
                keepalive,
            });
        }
        v
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.sessions.len() + self.rules.len() + self.routes.len()
    }
}
