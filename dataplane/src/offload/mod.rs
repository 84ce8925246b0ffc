//! TUN offloads, sans I/O: the `virtio_net_hdr` a TUN opened with `IFF_VNET_HDR` puts in front
//! of every packet, completing a partial checksum (`NEEDS_CSUM`), and splitting a TCP GSO
//! super-packet (up to 64 KiB, `GSO_TCPV4` / `GSO_TCPV6`) into MSS-sized segments the way the
//! kernel's TSO would: per segment the IPv4 total length, id and header checksum or the IPv6
//! payload length, the TCP sequence number, the flags (FIN/PSH only on the last segment, CWR
//! only on the first) and the full TCP checksum.
//!
//! The other way, [`Coalescer`] merges consecutive in-order TCP segments of one flow into one
//! super-packet with a GSO vnet header, like the kernel's GRO, for one write to the TUN.
//!
//! Every function takes buffers from the caller, allocates nothing, and reports a malformed
//! header or packet as an [`OffloadError`], never by panicking.
//!
//! Modules: [`vnet`] has the header ([`VnetHdr`]) and [`OffloadError`]; [`segment`] has
//! [`prepare`] and [`Gso::write`] (segmentation, checksum completion); [`coalesce`] has
//! [`Coalescer`]; `tcp` has the checksum and the TCP header fields both directions use.

pub mod coalesce;
pub mod segment;
mod tcp;
pub mod vnet;

pub use coalesce::Coalescer;
pub use segment::{Gso, Prepared, prepare};
pub use tcp::{complete_csum, fold, sum};
pub use vnet::{
    F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, OffloadError,
    VNET_HDR_LEN, VnetHdr,
};

#[cfg(test)]
mod tests;
