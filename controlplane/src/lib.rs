//! skywire-control: the controlplane of a Skywire router.
//!
//! - [`identity`]: the Ed25519 identity, its X25519 Noise key and overlay address.
//! - [`link`]: the Noise handshake that authenticates a neighbour and derives the data keys.
//! - [`links`]: TCP links: dialling with backoff, accepting, keepalives (RTT), down detection.
//! - [`config`]: the configuration file.
//! - [`messenger`]: signed records (key -> endpoints, services) with TTL, lookup, service query,
//!   relay; server and client (sans-IO) and their TCP glue.
//! - [`appsock`]: the app socket (apps attach prefixes to nodes: the VPN).
//! - [`nm`]: the node manager (link state, paths, route setup); [`run`]: the driver.

#![warn(missing_docs)]

pub mod appsock;
pub mod config;
pub mod identity;
pub mod link;
pub mod links;
pub mod messenger;
pub mod msgclient;
#[allow(missing_docs)]
pub mod nm;
pub mod run;
