//! The `virtio_net_hdr` a TUN opened with `IFF_VNET_HDR` puts in front of every packet, and why a
//! packet read with one cannot be used.

use thiserror::Error;

/// Length of `struct virtio_net_hdr` (no `num_buffers`): what TUNSETVNETHDRSZ is set to.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: checksum from `csum_start` to the end, stored at
/// `csum_start + csum_offset` (that field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (or-ed into the type).
pub const GSO_ECN: u8 = 0x80;

/// Why a packet read with a vnet header cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OffloadError {
    /// Shorter than its headers claim.
    #[error("packet truncated")]
    Truncated,
    /// A GSO type this node did not enable (UDP, unknown).
    #[error("unsupported gso type {0}")]
    GsoType(u8),
    /// `csum_start` / `csum_offset` outside the packet or not at the TCP checksum.
    #[error("bad checksum offsets")]
    CsumOffsets,
    /// IP header that does not fit the GSO type (version, header length, fragment, protocol).
    #[error("bad ip header for gso")]
    Ip,
    /// TCP header length out of range.
    #[error("bad tcp header")]
    Tcp,
    /// `gso_size` zero, or a GSO packet without payload.
    #[error("bad gso size")]
    GsoSize,
    /// The output buffer cannot take the segment.
    #[error("output buffer too small")]
    OutTooSmall,
}

/// `struct virtio_net_hdr` (native byte order, as a legacy TUN uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*`.
    pub gso_type: u8,
    /// Header length (advisory: recomputed here).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS).
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where, after `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<VnetHdr, OffloadError> {
        let Some(h) = b.first_chunk::<VNET_HDR_LEN>() else {
            return Err(OffloadError::Truncated);
        };
        let u = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        Ok(VnetHdr {
            flags: h[0],
            gso_type: h[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The wire form.
    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}
