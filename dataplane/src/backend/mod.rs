//! The I/O backends and what they share.
//!
//! A backend moves one shard's packets between its TUN queue and its UDP socket; what happens to
//! a packet is [`Shard`]'s business, and the batching of frames into sends is in the
//! backend-neutral modules here. Each backend ([`epoll`], [`uring`]) provides:
//!
//! - `pub fn run(io: ShardIo) -> io::Result<()>`: runs the shard on the calling thread until
//!   [`ShardIo::stop`] is set, noticing it (and a table change) within about 100 ms on an idle
//!   shard. The fds are the shard's own: nobody else reads or writes them meanwhile.
//! - Optionally `pub fn probe() -> io::Result<()>`: whether it can run on this kernel / sandbox
//!   at all (the caller then picks another).
//!
//! and in its loop:
//!
//! - Buffers of [`BUF_SIZE`] bytes, each handed to one [`pump::Pump`] by index
//!   ([`pump::Buffers`]): a TUN read at [`pump::tun_read_at`] (the vnet header first with
//!   offloads) to [`pump::Pump::from_tun`], a UDP datagram (a GRO train of frames with
//!   offloads) at offset 0 to [`pump::Pump::from_udp`]. The pump hands packets to the [`Shard`],
//!   carries out every [`Verdict`] with its outcome counted once, and does the offload batching;
//!   a buffer is the backend's again once [`pump::Pump::planned`] is 0, and at the latest after
//!   [`pump::Pump::finish`], which ends every batch.
//! - With offloads ([`ShardIo::offload`], the TUN opened with a vnet header), UDP GRO turned on
//!   on the socket ([`crate::mmsg::enable_gro`]) and the segment size of every datagram passed.
//! - [`Shard::refresh`] once per loop turn, and bounded work per turn (each bound a named
//!   constant in the backend).
//!
//! Backend-neutral pieces: [`ShardIo`] (what a shard thread owns), [`pump`] (verdicts and
//! sends), [`plan`] (frames of a batch of buffers collected for one batched send) and [`gso`]
//! (segments of one super-packet sealed back to back for one UDP GSO send). The backends depend
//! on these and never on each other.
//!
//! [`BUF_SIZE`]: crate::shard::BUF_SIZE
//! [`HEADROOM`]: crate::shard::HEADROOM
//! [`TAILROOM`]: crate::shard::TAILROOM
//! [`Verdict`]: crate::shard::Verdict
//! [`Shard`]: crate::shard::Shard

pub mod epoll;
pub mod gso;
pub mod plan;
pub mod pump;
#[allow(unsafe_code)] // io_uring submissions and their buffers
pub mod uring;

use crate::punt::PuntGate;
use crate::shard::Shard;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Everything one shard thread owns.
pub struct ShardIo {
    /// Packet logic.
    pub shard: Shard,
    /// This shard's TUN queue (non-blocking).
    pub tun: OwnedFd,
    /// This shard's UDP socket (non-blocking).
    pub udp: UdpSocket,
    /// Set to end the loop.
    pub stop: Arc<AtomicBool>,
    /// The TUN was opened with a vnet header and offloads (see [`crate::tun::Tun::create_with`]).
    pub offload: bool,
    /// Where packets the shard punts ([`crate::shard::Verdict::Punt`]) go; `None`: they are
    /// only dropped.
    pub punt: Option<PuntGate>,
}
