//! Signal: the link between viscript and every component it supervises.
//!
//! Each component gets a sealed memfd with two single-producer single-consumer rings
//! ([`ring`]) and an eventfd doorbell each way ([`channel`]). Messages ([`proto`]) are small
//! binary records: register, ping/pong, resource usage, shutdown, log lines, events.
//!
//! Components use [`Client`]: `Client::from_env()` when viscript started them, or
//! `Client::attach(socket, name)` when they were started elsewhere, then
//! [`Client::register`] to get a [`Session`] that answers pings and usage requests by itself.
//! viscript uses [`Channel::create`] per client and drives the server halves from its event loop.
//!
//! Both sides treat the other as untrusted: no index, length or record the peer writes can make
//! this side read out of bounds, panic or hang.

#![warn(missing_docs)]
// unsafe only in the shared-memory and syscall modules below, each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod attach;
pub mod channel;
#[allow(unsafe_code)] // syscalls
pub mod client;
pub mod logging;
pub mod proto;
#[allow(unsafe_code)] // the ring in shared memory
pub mod ring;
#[allow(unsafe_code)] // mapping the shared memory
pub mod shm;
mod sync;
#[allow(unsafe_code)] // syscalls
pub mod term;
pub mod usage;

pub use channel::{Channel, ClientFds, RecvError, Rx, SendError, Tx};
pub use client::{Client, ClientError, ENV_FDS, ENV_ID, Session};
pub use proto::{DecodeError, Level, Msg, Usage};
