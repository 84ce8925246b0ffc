//! What every Skywire crate shares, and nothing else:
//!
//! - [`bytes`]: a bounds-checked byte reader and a writer, with one error type, under every
//!   binary codec (signal records, the fib protocol, node-manager messages, messenger records).
//! - [`NodeId`]: a node's public key, its hex form and its overlay address.
//! - [`Prefix`]: an IPv4 or IPv6 prefix (host bits cleared on construction).
//! - [`private_socket`]: a unix socket only its owner may use.
//! - [`netlink`]: a minimal rtnetlink client (devices, addresses, routes) for the host network.
//! - [`netns`]: running a closure inside a new network namespace (tests).
//! - [`pidfd`]: whether another process (the peer of a socket) exited.
//! - [`metrics_http`]: the small bounded HTTP/1.x server of `GET /metrics` (Prometheus).
//!
//! `unsafe` lives only in [`netns`] (one syscall).

#![warn(missing_docs)]
// unsafe only in the syscall modules below, each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod bytes;
pub mod metrics_http;
#[allow(missing_docs)]
#[allow(unsafe_code)] // syscalls
pub mod netlink;
#[allow(unsafe_code)] // syscalls
pub mod netns;
mod node_id;
pub mod pidfd;
mod prefix;
pub mod private_socket;

pub use node_id::{NodeId, OVERLAY_PREFIX};
pub use prefix::Prefix;
