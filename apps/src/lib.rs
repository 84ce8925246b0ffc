//! Skywire apps: `skywire-socks-server` (a SOCKS5 server for mesh peers) and
//! `skywire-socks-client` (a local listener that relays to a socks server over the mesh).
//!
//! [`socks`] is the sans-IO protocol code; [`relay`] copies bytes both ways with half-close;
//! [`server`] is the SOCKS5 handshake, access control and connect; [`common`] holds the accept
//! loop, the counters and the viscript lifecycle both binaries share.

pub mod common;
pub mod lookup;
pub mod relay;
pub mod server;
pub mod socks;
pub mod vpn;
