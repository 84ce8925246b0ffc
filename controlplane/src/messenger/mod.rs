//! The messenger: a rendezvous and relay service for the controlplane.
//!
//! A messenger server (`skywire-control messenger --listen ADDR`) holds signed [`Record`]s
//! (pk -> control endpoints, services) with a TTL, answers lookups by key and queries of
//! services by kind (the app tracker), and relays small messages to connected clients. Every
//! controlplane runs a [`MessengerClient`] towards the messengers of its config, and keeps
//! answering lookups from its cache while all of them are down.
//!
//! - [`record`]: the signed record and its canonical encoding.
//! - [`wire`]: the request/answer messages.
//! - [`server`]: the sans-IO server (rate limits, expiry, counters by reject reason).
//! - [`client`]: the sans-IO client (registration, cache, failover).
//! - [`net`]: blocking TCP glue (Noise link handshake, then encrypted messages).
//! - [`metrics`]: the server's Prometheus metrics (`messenger --metrics IP:PORT`).

pub mod client;
mod codec;
pub mod metrics;
pub mod net;
pub mod record;
pub mod server;
pub mod wire;

pub use client::{ClientConfig, ClientCounters, ClientError, ClientEvent, MessengerClient};
pub use codec::DecodeError;
pub use record::{Record, RecordError, Service};
pub use server::{MessengerServer, ServerConfig, ServerCounters};
pub use wire::{Msg, Reject};

#[cfg(test)]
mod tests;
