//! Segmentation: a TCP GSO super-packet read from the TUN (up to 64 KiB, `GSO_TCPV4` /
//! `GSO_TCPV6`) cut into MSS-sized segments the way the kernel's TSO would; a plain packet's
//! partial checksum completed.

use super::tcp::{
    CWR, FIN, PSH, TCP, TCP_CSUM_OFFSET, complete_csum, fold, pseudo, rd16, sum, wr16,
};
use super::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, OffloadError, VnetHdr};

/// A validated TCP GSO super-packet, ready to be cut into [`Gso::segments`] segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    v6: bool,
    /// IP header length (where TCP starts).
    ip_len: usize,
    /// IP + TCP header length.
    hdr_len: usize,
    mss: usize,
    /// Length of the whole super-packet.
    len: usize,
    segs: usize,
}

/// What to do with a packet read from the TUN (after its vnet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// A single packet, complete (its checksum finished if it was partial).
    Single,
    /// A super-packet to segment.
    Gso(Gso),
}

/// Looks at a packet read from the TUN with its vnet header `h`: finishes a partial checksum
/// of a plain packet in place, or validates a TCP GSO super-packet for [`Gso::write`].
pub fn prepare(h: &VnetHdr, pkt: &mut [u8]) -> Result<Prepared, OffloadError> {
    let kind = h.gso_type & !GSO_ECN;
    if kind == GSO_NONE {
        if h.flags & F_NEEDS_CSUM != 0 {
            complete_csum(pkt, usize::from(h.csum_start), usize::from(h.csum_offset))?;
        }
        return Ok(Prepared::Single);
    }
    let v6 = match kind {
        GSO_TCPV4 => false,
        GSO_TCPV6 => true,
        k => return Err(OffloadError::GsoType(k)),
    };
    let first = *pkt.first().ok_or(OffloadError::Truncated)?;
    let ip_len = if v6 {
        if first >> 4 != 6 {
            return Err(OffloadError::Ip);
        }
        if pkt.len() < 40 {
            return Err(OffloadError::Truncated);
        }
        v6_tcp_offset(pkt)?
    } else {
        if first >> 4 != 4 || first & 0x0f < 5 {
            return Err(OffloadError::Ip);
        }
        let ihl = usize::from(first & 0x0f) * 4;
        if pkt.len() < ihl {
            return Err(OffloadError::Truncated);
        }
        // MF set or a fragment offset: not a TCP segment of its own.
        if rd16(pkt, 6) & 0x3fff != 0 || pkt[9] != TCP {
            return Err(OffloadError::Ip);
        }
        ihl
    };
    if h.flags & F_NEEDS_CSUM != 0
        && (usize::from(h.csum_start) != ip_len || usize::from(h.csum_offset) != TCP_CSUM_OFFSET)
    {
        return Err(OffloadError::CsumOffsets);
    }
    let doff_at = ip_len + 12;
    let doff = usize::from(*pkt.get(doff_at).ok_or(OffloadError::Truncated)? >> 4) * 4;
    if doff < 20 {
        return Err(OffloadError::Tcp);
    }
    let hdr_len = ip_len + doff;
    if pkt.len() < hdr_len {
        return Err(OffloadError::Truncated);
    }
    let mss = usize::from(h.gso_size);
    let payload = pkt.len() - hdr_len;
    if mss == 0 || payload == 0 {
        return Err(OffloadError::GsoSize);
    }
    Ok(Prepared::Gso(Gso {
        v6,
        ip_len,
        hdr_len,
        mss,
        len: pkt.len(),
        segs: payload.div_ceil(mss),
    }))
}

/// Where TCP starts in an IPv6 packet: after the fixed header and any hop-by-hop or
/// destination options headers. A routing header (it changes the pseudo-header's
/// destination), a fragment header or anything but TCP at the end is refused.
fn v6_tcp_offset(pkt: &[u8]) -> Result<usize, OffloadError> {
    const HOP_BY_HOP: u8 = 0;
    const DEST_OPTS: u8 = 60;
    let mut next = pkt[6];
    let mut at = 40;
    // A chain longer than a few headers is not something a local TCP sends.
    for _ in 0..4 {
        match next {
            TCP => return Ok(at),
            HOP_BY_HOP | DEST_OPTS => {
                let h = pkt.get(at..at + 2).ok_or(OffloadError::Truncated)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            _ => return Err(OffloadError::Ip),
        }
    }
    Err(OffloadError::Ip)
}

impl Gso {
    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// Length of segment `i` (headers included); 0 past the last.
    pub fn seg_len(&self, i: usize) -> usize {
        if i >= self.segs {
            return 0;
        }
        let start = self.hdr_len + i * self.mss;
        self.hdr_len + (self.len - start).min(self.mss)
    }

    /// Largest segment length (every segment but the last has it).
    pub fn max_seg_len(&self) -> usize {
        self.seg_len(0)
    }

    /// Writes segment `i` of `pkt` (the super-packet given to [`prepare`]) to the start of
    /// `out`, headers fixed and checksums complete. Returns its length.
    pub fn write(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> Result<usize, OffloadError> {
        if pkt.len() != self.len || i >= self.segs {
            return Err(OffloadError::Truncated);
        }
        let total = self.seg_len(i);
        let out = out.get_mut(..total).ok_or(OffloadError::OutTooSmall)?;
        let start = self.hdr_len + i * self.mss;
        let plen = total - self.hdr_len;
        out[..self.hdr_len].copy_from_slice(&pkt[..self.hdr_len]);
        out[self.hdr_len..].copy_from_slice(&pkt[start..start + plen]);
        let (ip, tcp) = out.split_at_mut(self.ip_len);
        if self.v6 {
            wr16(ip, 4, (total - 40) as u16);
        } else {
            wr16(ip, 2, total as u16);
            let id = rd16(ip, 4).wrapping_add(i as u16);
            wr16(ip, 4, id);
            wr16(ip, 10, 0);
            let c = !fold(sum(ip, 0));
            wr16(ip, 10, c);
        }
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])
            .wrapping_add((i * self.mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 != self.segs {
            tcp[13] &= !(FIN | PSH);
        }
        if i != 0 {
            tcp[13] &= !CWR;
        }
        wr16(tcp, TCP_CSUM_OFFSET, 0);
        let c = !fold(sum(tcp, pseudo(ip, self.v6, TCP, tcp.len())));
        wr16(tcp, TCP_CSUM_OFFSET, c);
        Ok(total)
    }
}
