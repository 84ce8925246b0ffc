//! skywire-node: forwards IP packets between the TUN device `sky0` and encrypted UDP links.
//!
//! - [`wire`]: the frame format and its AEAD (in place, zero copy); [`replay`]: anti-replay.
//! - [`fib`]: sessions, label rules and prefix routes as an immutable snapshot.
//! - [`shard`]: what a shard does to one packet, independent of I/O.
//! - [`backend`]: what every I/O backend provides and what they share; [`backend::epoll`]: the
//!   epoll + recvmmsg/sendmmsg backend; [`backend::uring`]: the io_uring backend
//!   (provided-buffer ring, multishot recvmsg, batched submissions).
//! - [`tun`]: the device (its addresses through `netbase::netlink`); [`offload`]: TUN offloads (vnet
//!   header, checksum completion, TCP segmentation), sans I/O.
//! - [`liveness`]: fast failure detection of link sessions (probes), sans I/O.
//! - [`punt`]: packets with no route, rate-limited on their way to the controlplane.
//! - [`config`]: the static mode file.

#![warn(missing_docs)]
// unsafe only in the syscall modules (mmsg, tun, backend::uring), each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod fib;
pub mod fibproto;
pub mod fibring;
pub mod fixtures;
pub mod liveness;
#[allow(unsafe_code)] // sendmmsg/recvmmsg and their cmsg buffers
pub mod mmsg;
pub mod offload;
pub mod packet;
pub mod punt;
pub mod replay;
pub mod shard;
pub mod stats;
#[cfg(test)]
mod testutil;
#[allow(unsafe_code)] // TUN ioctls
pub mod tun;
pub mod wire;
