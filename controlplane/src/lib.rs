//! skywire-control: the controlplane of a Skywire router.
//!
//! - [`identity`]: the Ed25519 identity, its X25519 Noise key and overlay address.
//! - [`link`]: the Noise handshake that authenticates a neighbour and derives the data keys.
//! - [`linkcore`]: the link manager's core (sans-IO): control messages, keepalive, RTT and
//!   cost, dead detection, redial backoff, the duplicate-link tie-break, data-key rotation.
//! - [`accept`]: bounded accept loops (caps, deadlines, counters) for every listener.
//! - [`links`]: the link manager's I/O: TCP links, dialling, accepting, the Noise channel.
//! - [`config`]: the configuration file.
//! - [`init`]: `skywire-control init`: a router's key, configs and viscript catalogue.
//! - [`messenger`]: signed records (key -> endpoints, services) with TTL, lookup, service query,
//!   relay; server and client (sans-IO) and their TCP glue.
//! - [`appsock`]: the app socket (apps attach prefixes to nodes: the VPN).
//! - [`nm`]: the node manager (link state, paths, route setup).
//! - [`router`]: the router core (sans-IO): node-manager actions -> fib changes, links'
//!   sessions and keys, deliver rules, app attachments and services, the punt queue.
//! - [`metrics`]: the Prometheus metrics (`metrics:` in the config), rendered from the
//!   snapshot the driver publishes once a second.
//! - [`run`]: the driver: moves bytes between sockets, the fib ring and the router core.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accept;
pub mod appsock;
pub mod config;
pub mod dataplane_link;
mod frame;
pub mod identity;
pub mod init;
pub mod link;
pub mod linkcore;
pub mod links;
pub mod messenger;
pub mod metrics;
pub mod msgclient;
#[allow(missing_docs)]
pub mod nm;
pub mod router;
pub mod run;
