//! Skywire apps: `skywire-socks-server` (a SOCKS5 server for mesh peers),
//! `skywire-socks-client` (a local listener that relays to a socks server over the mesh),
//! `skywire-vpn-server` (an IPv4 exit with NAT) and `skywire-vpn-client` (routes this router's
//! IPv4 traffic through a server).
//!
//! [`socks`] is the sans-IO protocol code; [`relay`] copies bytes both ways with half-close;
//! [`server`] is the SOCKS5 handshake, access control and connect, [`dest`] the filter of
//! the destinations it connects to; [`common`] holds the accept
//! loop, the counters and the viscript lifecycle the socks binaries share. [`vpn`] is the lease
//! protocol, the address pool and the controlplane connection; [`hostnet`] journals every change
//! to the host's network state so it can be undone on exit or after a crash.

#![forbid(unsafe_code)]

pub mod common;
pub mod dest;
pub mod hostnet;
pub mod lookup;
pub mod relay;
pub mod server;
pub mod socks;
pub mod vpn;
