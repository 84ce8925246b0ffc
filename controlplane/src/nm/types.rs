//! Small shared types: identities, route ids and the actions the core emits.

/// A router's identity: its Ed25519 public key.
pub use netbase::NodeId;

/// Identifies one route setup: the ingress that originated it plus a counter
/// local to that ingress (never reused within the ingress's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId {
    pub origin: NodeId,
    pub counter: u64,
}

/// What a dataplane rule does with a labelled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleThen {
    /// Swap the label and send to the neighbour `to`.
    Forward { to: NodeId, label: u32 },
    /// This node is the egress; `origin` is the node the packet came from
    /// (the ingress of this direction), and the packet must open with data key `key`.
    Deliver { origin: NodeId, key: u64 },
}

/// Output of the state machine; the driver executes these in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a controlplane message to a neighbour.
    Send { to: NodeId, bytes: Vec<u8> },
    /// Install (or replace) the rule for packets arriving from `in_from`
    /// with label `in_label`.
    InstallRule {
        in_from: NodeId,
        in_label: u32,
        then: RuleThen,
    },
    /// Program one direction of a route's end-to-end data key under `id` (before any rule or
    /// mapping names it). An id names one key for the route's life and is never reused.
    AddKey {
        id: u64,
        cipher: dataplane::wire::Cipher,
        /// The key (its `Debug` prints no bytes).
        key: dataplane::fibproto::Key,
    },
    /// Erase data key `id`: its route ended.
    RemoveKey { id: u64 },
    /// Remove the rule for (`in_from`, `in_label`).
    RemoveRule { in_from: NodeId, in_label: u32 },
    /// Ingress mapping: packets for `dst` go to neighbour `via` with
    /// `label`. Replaces any previous mapping for `dst`; the driver may now
    /// re-inject packets it queued for `dst`.
    RouteUp {
        dst: NodeId,
        via: NodeId,
        label: u32,
        /// The data key packets for `dst` are sealed with.
        key: u64,
    },
    /// No usable route to `dst` any more (packets for it should be punted).
    RouteDown { dst: NodeId },
}

/// Short printable form of a node id (first 4 bytes in hex).
pub fn short(id: &NodeId) -> String {
    id.0[..4].iter().map(|b| format!("{b:02x}")).collect()
}
