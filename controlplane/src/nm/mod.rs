//! Routing core of the mesh router's controlplane ("node manager").
//!
//! Sans-IO: every entry point takes the current time `now_ms` and produces
//! [`Action`]s to be drained with [`NodeManager::poll_action`]; nothing here
//! reads a clock, touches the network or draws random numbers.
//!
//! Modules refer to each other only through `super::`, so the files can be
//! dropped into another crate either at its root or under a parent module.

pub mod advert;
mod codec;
pub mod flood;
#[cfg(test)]
mod hostile_tests;
pub mod labels;
pub mod lsdb;
pub mod node;
pub mod paths;
mod routing;
pub mod session;
pub mod types;
pub mod wire;

pub use advert::{Advert, AdvertFlags};
pub use codec::DecodeError;
pub use node::{Config, Counters, HopInfo, NodeManager, RouteInfo, RouteRole, RouteState};
pub use types::{Action, NodeId, RouteId, RuleThen};
pub use wire::Msg;
