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

const TCP: u8 = 6;
const TCP_CSUM_OFFSET: usize = 16;
const UDP_CSUM_OFFSET: usize = 6;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

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

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
/// added to `acc`; fold with [`fold`].
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut add = |v: u64| {
        let (s, c) = acc.overflowing_add(v);
        acc = s + u64::from(c);
    };
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        add(u64::from_be_bytes(a));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        add(u64::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [b] = rest.remainder() {
        add(u64::from(*b) << 8);
    }
    acc
}

/// Folds a [`sum`] accumulator to 16 bits (not complemented).
pub fn fold(acc: u64) -> u16 {
    let mut s = (acc & 0xffff_ffff) + (acc >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

fn rd16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn wr16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Sum of the TCP/UDP pseudo header of `ip` (an IPv4 or IPv6 header) for `l4_len` bytes.
fn pseudo(ip: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    let acc = if v6 {
        sum(&ip[8..40], 0)
    } else {
        sum(&ip[12..20], 0)
    };
    acc + u64::from(proto) + l4_len as u64
}

/// Completes a partial checksum in place (a non-GSO packet with `NEEDS_CSUM`): sums
/// `pkt[csum_start..]` (whose checksum field already holds the pseudo-header sum) and stores
/// the complement at `csum_start + csum_offset`.
pub fn complete_csum(
    pkt: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let at = csum_start
        .checked_add(csum_offset)
        .filter(|a| a.checked_add(2).is_some_and(|e| e <= pkt.len()))
        .ok_or(OffloadError::CsumOffsets)?;
    let mut c = !fold(sum(&pkt[csum_start..], 0));
    if c == 0 && csum_offset == UDP_CSUM_OFFSET {
        c = 0xffff; // 0 means "no checksum" for UDP
    }
    wr16(pkt, at, c);
    Ok(())
}

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

const ACK: u8 = 0x10;
/// Largest super-packet the coalescer builds (IP total / payload length is 16 bits).
const MAX_SUPER: usize = 65535;

/// Where a coalescable TCP segment's parts are.
struct Seg {
    v6: bool,
    ip_len: usize,
    hdr_len: usize,
    seq: u32,
    flags: u8,
}

/// A TCP segment the coalescer may merge: IPv4 without options or fragmentation, or IPv6
/// without extension headers; flags ACK and maybe PSH only; some payload; lengths consistent.
fn seg_of(p: &[u8]) -> Option<Seg> {
    if p.len() > MAX_SUPER {
        return None;
    }
    let (v6, ip_len) = match p.first()? >> 4 {
        4 if p.len() >= 20
            && p[0] == 0x45
            && p[9] == TCP
            && rd16(p, 6) & 0x3fff == 0
            && usize::from(rd16(p, 2)) == p.len() =>
        {
            (false, 20)
        }
        6 if p.len() >= 40 && p[6] == TCP && usize::from(rd16(p, 4)) + 40 == p.len() => (true, 40),
        _ => return None,
    };
    let doff = usize::from(*p.get(ip_len + 12)? >> 4) * 4;
    let hdr_len = ip_len + doff;
    if doff < 20 || p.len() <= hdr_len {
        return None;
    }
    let flags = p[ip_len + 13];
    if flags & !PSH != ACK {
        return None;
    }
    let t = ip_len;
    Some(Seg {
        v6,
        ip_len,
        hdr_len,
        seq: u32::from_be_bytes([p[t + 4], p[t + 5], p[t + 6], p[t + 7]]),
        flags,
    })
}

/// Merges consecutive in-order TCP segments of one flow (same addresses, ports, ack, window,
/// options; each but the last of the same size) into one super-packet, like the kernel's GRO.
/// The result is written to the TUN with a GSO vnet header in front (the kernel segments it
/// again if it must); a lone segment gets a zero vnet header and goes out unchanged.
pub struct Coalescer {
    /// Vnet header, then the super-packet.
    buf: Box<[u8]>,
    /// Packet length in `buf` (after the vnet header); 0 when empty.
    len: usize,
    segs: usize,
    mss: usize,
    v6: bool,
    ip_len: usize,
    hdr_len: usize,
    next_seq: u32,
    /// A short or PSH segment was merged: nothing may follow.
    closed: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    /// An empty coalescer (allocates its 64 KiB buffer once).
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0u8; VNET_HDR_LEN + MAX_SUPER].into_boxed_slice(),
            len: 0,
            segs: 0,
            mss: 0,
            v6: false,
            ip_len: 0,
            hdr_len: 0,
            next_seq: 0,
            closed: false,
        }
    }

    /// Segments merged into the current super-packet.
    pub fn segments(&self) -> usize {
        if self.len == 0 { 0 } else { self.segs }
    }

    /// Total length of the segments merged into the current super-packet (headers of each
    /// counted), i.e. what writing them one by one would have written.
    pub fn segment_bytes(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            self.len + (self.segs - 1) * self.hdr_len
        }
    }

    /// Whether a super-packet is being built.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes `pkt` (copies it) if it starts a super-packet or continues the current one;
    /// `false` if not (then [`finish`](Self::finish) the current one first, and try again or
    /// write `pkt` as it is).
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        let Some(s) = seg_of(pkt) else {
            return false;
        };
        let payload = pkt.len() - s.hdr_len;
        if self.len == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
            self.len = pkt.len();
            self.segs = 1;
            self.mss = payload;
            self.v6 = s.v6;
            self.ip_len = s.ip_len;
            self.hdr_len = s.hdr_len;
            self.next_seq = s.seq.wrapping_add(payload as u32);
            self.closed = s.flags & PSH != 0;
            return true;
        }
        let cur = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.hdr_len];
        let (il, hl) = (self.ip_len, self.hdr_len);
        let same_ip = if s.v6 {
            // version, traffic class, flow label; next header, hop limit; addresses
            cur[..4] == pkt[..4] && cur[6..40] == pkt[6..40]
        } else {
            // tos; flags; ttl, protocol; addresses (not length, id, checksum)
            cur[1] == pkt[1] && cur[6..10] == pkt[6..10] && cur[12..20] == pkt[12..20]
        };
        let ok = !self.closed
            && s.v6 == self.v6
            && s.hdr_len == hl
            && same_ip
            && s.seq == self.next_seq
            && payload <= self.mss
            && self.len + payload <= MAX_SUPER
            // ports; ack; data offset; window; urgent pointer; options (not seq, flags, csum)
            && cur[il..il + 4] == pkt[il..il + 4]
            && cur[il + 8..il + 13] == pkt[il + 8..il + 13]
            && cur[il + 14..il + 16] == pkt[il + 14..il + 16]
            && cur[il + 18..hl] == pkt[il + 18..hl];
        if !ok {
            return false;
        }
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + payload].copy_from_slice(&pkt[hl..]);
        self.len += payload;
        self.segs += 1;
        self.next_seq = s.seq.wrapping_add(payload as u32);
        if s.flags & PSH != 0 {
            self.buf[VNET_HDR_LEN + il + 13] |= PSH;
            self.closed = true;
        }
        if payload < self.mss {
            self.closed = true;
        }
        true
    }

    /// Ends the current super-packet: returns vnet header + packet, ready for one TUN write,
    /// and empties the coalescer. Empty slice when nothing was pushed.
    pub fn finish(&mut self) -> &[u8] {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            return &[];
        }
        let (il, v6) = (self.ip_len, self.v6);
        let h = if self.segs == 1 {
            VnetHdr::default()
        } else {
            let pkt = &mut self.buf[VNET_HDR_LEN..VNET_HDR_LEN + len];
            let (ip, tcp) = pkt.split_at_mut(il);
            if v6 {
                wr16(ip, 4, (len - 40) as u16);
            } else {
                wr16(ip, 2, len as u16);
                wr16(ip, 10, 0);
                let c = !fold(sum(ip, 0));
                wr16(ip, 10, c);
            }
            let ps = fold(pseudo(ip, v6, TCP, tcp.len()));
            wr16(tcp, TCP_CSUM_OFFSET, ps);
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: self.hdr_len as u16,
                gso_size: self.mss as u16,
                csum_start: il as u16,
                csum_offset: TCP_CSUM_OFFSET as u16,
            }
        };
        self.buf[..VNET_HDR_LEN].copy_from_slice(&h.encode());
        &self.buf[..VNET_HDR_LEN + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP packet (v4 or v6) with `payload`, checksums valid, flags `flags`.
    fn tcp_packet(v6: bool, seq: u32, flags: u8, opts: usize, payload: &[u8]) -> Vec<u8> {
        let ip_len = if v6 { 40 } else { 20 };
        let doff = 20 + opts;
        let total = ip_len + doff + payload.len();
        let mut p = vec![0u8; total];
        if v6 {
            p[0] = 0x60;
            wr16(&mut p, 4, (total - 40) as u16);
            p[6] = TCP;
            p[7] = 64;
            p[8] = 0xfd;
            p[23] = 1;
            p[24] = 0xfd;
            p[39] = 2;
        } else {
            p[0] = 0x45;
            wr16(&mut p, 2, total as u16);
            wr16(&mut p, 4, 0x1234);
            p[6] = 0x40; // DF
            p[8] = 64;
            p[9] = TCP;
            p[12..16].copy_from_slice(&[10, 0, 0, 1]);
            p[16..20].copy_from_slice(&[10, 0, 0, 2]);
            let c = !fold(sum(&p[..20], 0));
            wr16(&mut p, 10, c);
        }
        let t = ip_len;
        wr16(&mut p, t, 40000);
        wr16(&mut p, t + 2, 5201);
        p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        p[t + 12] = ((doff / 4) as u8) << 4;
        p[t + 13] = flags;
        wr16(&mut p, t + 14, 65000);
        for k in 0..opts {
            p[t + 20 + k] = 1; // NOP
        }
        p[ip_len + doff..].copy_from_slice(payload);
        let c = !fold(sum(&p[t..], pseudo(&p[..ip_len], v6, TCP, total - t)));
        wr16(&mut p, t + 16, c);
        p
    }

    /// Whether the IP (v4) and TCP checksums of `p` verify.
    fn verifies(p: &[u8]) -> bool {
        let v6 = p[0] >> 4 == 6;
        let ip_len = if v6 { 40 } else { usize::from(p[0] & 15) * 4 };
        if !v6 && fold(sum(&p[..ip_len], 0)) != 0xffff {
            return false;
        }
        fold(sum(
            &p[ip_len..],
            pseudo(&p[..ip_len], v6, TCP, p.len() - ip_len),
        )) == 0xffff
    }

    /// The kernel's form of a GSO packet: TCP checksum field holds the pseudo-header sum only.
    fn as_gso(mut p: Vec<u8>, mss: u16) -> (VnetHdr, Vec<u8>) {
        let v6 = p[0] >> 4 == 6;
        let ip_len = if v6 { 40 } else { 20 };
        let ps = fold(pseudo(&p[..ip_len], v6, TCP, p.len() - ip_len));
        wr16(&mut p, ip_len + 16, ps);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: 0,
            gso_size: mss,
            csum_start: ip_len as u16,
            csum_offset: 16,
        };
        (h, p)
    }

    #[test]
    fn header_roundtrip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 66,
            gso_size: 1380,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.encode()).unwrap(), h);
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::Truncated));
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(
            fold(sum(&d[..7], 0)),
            fold(sum(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0], 0))
        );
    }

    #[test]
    fn partial_checksum_is_completed() {
        for v6 in [false, true] {
            let good = tcp_packet(v6, 7, PSH, 0, b"hello, world");
            let (mut h, mut p) = as_gso(good.clone(), 0);
            h.gso_type = GSO_NONE;
            assert_eq!(prepare(&h, &mut p), Ok(Prepared::Single));
            assert_eq!(p, good);
        }
    }

    #[test]
    fn segments_v4_flags_ids_seq() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let p = tcp_packet(false, 0xffff_f000, PSH | FIN | CWR | 0x10, 12, &payload);
        let (h, mut p) = as_gso(p, 1400);
        let Ok(Prepared::Gso(g)) = prepare(&h, &mut p) else {
            panic!()
        };
        assert_eq!(g.segments(), 4);
        let mut out = vec![0u8; 2000];
        let mut got = Vec::new();
        for i in 0..4 {
            let n = g.write(&p, i, &mut out).unwrap();
            let s = &out[..n];
            assert!(verifies(s), "segment {i}");
            assert_eq!(usize::from(rd16(s, 2)), n);
            assert_eq!(rd16(s, 4), 0x1234 + i as u16);
            let seq = u32::from_be_bytes(s[24..28].try_into().unwrap());
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1400 * i as u32));
            let fl = s[33];
            assert_eq!(fl & (FIN | PSH) != 0, i == 3);
            assert_eq!(fl & CWR != 0, i == 0);
            assert_eq!(fl & 0x10, 0x10);
            got.extend_from_slice(&s[52..]);
        }
        assert_eq!(got, payload);
        assert_eq!(g.write(&p, 4, &mut out), Err(OffloadError::Truncated));
        assert_eq!(
            g.write(&p, 0, &mut out[..100]),
            Err(OffloadError::OutTooSmall)
        );
    }

    /// Segments of a super-packet built from `payload`.
    fn segments_of(
        v6: bool,
        seq: u32,
        flags: u8,
        opts: usize,
        mss: u16,
        payload: &[u8],
    ) -> Vec<Vec<u8>> {
        let (h, mut p) = as_gso(tcp_packet(v6, seq, flags, opts, payload), mss);
        let Ok(Prepared::Gso(g)) = prepare(&h, &mut p) else {
            panic!("not gso")
        };
        let mut out = vec![0u8; 70000];
        (0..g.segments())
            .map(|i| {
                let n = g.write(&p, i, &mut out).unwrap();
                out[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn coalescer_stops_at_gaps_other_flows_and_non_tcp() {
        let segs = segments_of(false, 100, ACK, 12, 1000, &[7u8; 4000]);
        let mut c = Coalescer::new();
        assert!(c.push(&segs[0]));
        assert!(!c.push(&segs[2]), "gap in sequence");
        let mut other = segs[1].clone();
        other[20] ^= 1; // another source port
        assert!(!c.push(&other));
        assert!(c.push(&segs[1]));
        assert_eq!(c.segments(), 2);
        assert_eq!(c.segment_bytes(), segs[0].len() + segs[1].len());
        let out = c.finish().to_vec();
        let h = VnetHdr::parse(&out).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1000, 52));
        assert!(c.is_empty());
        assert!(c.finish().is_empty());
        // A lone segment goes out unchanged with a zero header.
        assert!(c.push(&segs[3]));
        let out = c.finish();
        assert_eq!(VnetHdr::parse(out).unwrap(), VnetHdr::default());
        assert_eq!(&out[VNET_HDR_LEN..], &segs[3][..]);
        // UDP and SYN are not taken.
        let mut syn = segs[0].clone();
        syn[33] = 0x02;
        assert!(!c.push(&syn));
        let mut udp = segs[0].clone();
        udp[9] = 17;
        assert!(!c.push(&udp));
        assert!(!c.push(&[]));
    }

    #[test]
    fn v6_with_destination_options_is_segmented() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let plain = tcp_packet(true, 1, ACK, 0, &payload);
        // Insert an 8-byte destination options header (PadN) between IPv6 and TCP.
        let mut p = plain[..40].to_vec();
        p[6] = 60;
        p.extend_from_slice(&[TCP, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&plain[40..]);
        let l = (p.len() - 40) as u16;
        wr16(&mut p, 4, l);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 0,
            gso_size: 1000,
            csum_start: 48,
            csum_offset: 16,
        };
        let Ok(Prepared::Gso(g)) = prepare(&h, &mut p) else {
            panic!("not gso")
        };
        assert_eq!(g.segments(), 3);
        let mut out = vec![0u8; 2000];
        let mut got = Vec::new();
        for i in 0..3 {
            let n = g.write(&p, i, &mut out).unwrap();
            let s = &out[..n];
            assert_eq!(usize::from(rd16(s, 4)), n - 40);
            let tcp = &s[48..];
            assert_eq!(
                fold(sum(tcp, pseudo(&s[..40], true, TCP, tcp.len()))),
                0xffff
            );
            got.extend_from_slice(&tcp[20..]);
        }
        assert_eq!(got, payload);
        // A routing header is refused.
        p[6] = 43;
        assert_eq!(prepare(&h, &mut p), Err(OffloadError::Ip));
    }

    fn arb_hdr() -> impl Strategy<Value = VnetHdr> {
        (
            any::<u8>(),
            prop_oneof![
                Just(0u8),
                Just(1),
                Just(3),
                Just(4),
                Just(0x81),
                any::<u8>()
            ],
            any::<u16>(),
            prop_oneof![Just(0u16), 1u16..3000, any::<u16>()],
            prop_oneof![Just(20u16), Just(40), any::<u16>()],
            prop_oneof![Just(16u16), Just(6), any::<u16>()],
        )
            .prop_map(
                |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VnetHdr {
                    flags,
                    gso_type,
                    hdr_len,
                    gso_size,
                    csum_start,
                    csum_offset,
                },
            )
    }

    proptest! {
        /// Segmenting, then concatenating the payloads, gives back the original payload; every
        /// segment verifies and has the right length, sequence number and flags.
        #[test]
        fn segment_and_reassemble(
            v6 in any::<bool>(),
            seq in any::<u32>(),
            flags in any::<u8>(),
            opts in (0usize..=10).prop_map(|o| o * 4),
            mss in 1u16..2000,
            payload in proptest::collection::vec(any::<u8>(), 1..20000),
        ) {
            let p = tcp_packet(v6, seq, flags, opts, &payload);
            let (h, mut p) = as_gso(p, mss);
            let Ok(Prepared::Gso(g)) = prepare(&h, &mut p) else {
                return Err(TestCaseError::fail("not gso"));
            };
            let hl = if v6 { 40 } else { 20 } + 20 + opts;
            prop_assert_eq!(g.segments(), payload.len().div_ceil(usize::from(mss)));
            let mut out = vec![0u8; hl + usize::from(mss)];
            let mut got = Vec::new();
            for i in 0..g.segments() {
                let n = g.write(&p, i, &mut out).unwrap();
                prop_assert_eq!(n, g.seg_len(i));
                let s = &out[..n];
                prop_assert!(verifies(s));
                let t = hl - 20 - opts;
                let sq = u32::from_be_bytes(s[t + 4..t + 8].try_into().unwrap());
                prop_assert_eq!(sq, seq.wrapping_add((i * usize::from(mss)) as u32));
                let last = i + 1 == g.segments();
                prop_assert_eq!(s[t + 13] & (FIN | PSH), if last { flags & (FIN | PSH) } else { 0 });
                prop_assert_eq!(s[t + 13] & CWR, if i == 0 { flags & CWR } else { 0 });
                prop_assert_eq!(s[t + 13] & !(FIN | PSH | CWR), flags & !(FIN | PSH | CWR));
                got.extend_from_slice(&s[hl..]);
            }
            prop_assert_eq!(got, payload);
        }

        /// Segments of one flow, coalesced, then segmented again: the same segments.
        #[test]
        fn coalesce_then_segment_is_identity(
            v6 in any::<bool>(),
            seq in any::<u32>(),
            psh in any::<bool>(),
            opts in (0usize..=10).prop_map(|o| o * 4),
            mss in 1u16..1500,
            payload in proptest::collection::vec(any::<u8>(), 1..30000),
        ) {
            let flags = ACK | if psh { PSH } else { 0 };
            let segs = segments_of(v6, seq, flags, opts, mss, &payload);
            let mut c = Coalescer::new();
            let mut back = Vec::new();
            let mut out = vec![0u8; 70000];
            let mut drain = |sup: &[u8], back: &mut Vec<Vec<u8>>| {
                let h = VnetHdr::parse(sup).unwrap();
                let mut p = sup[VNET_HDR_LEN..].to_vec();
                match prepare(&h, &mut p).unwrap() {
                    Prepared::Single => back.push(p),
                    Prepared::Gso(g) => {
                        for i in 0..g.segments() {
                            let n = g.write(&p, i, &mut out).unwrap();
                            back.push(out[..n].to_vec());
                        }
                    }
                }
            };
            for s in &segs {
                if !c.push(s) {
                    drain(c.finish(), &mut back);
                    prop_assert!(c.push(s));
                }
            }
            drain(c.finish(), &mut back);
            prop_assert_eq!(back.len(), segs.len());
            for (a, b) in back.iter().zip(&segs) {
                prop_assert_eq!(a, b);
            }
        }

        /// Arbitrary packets into the coalescer: never a panic.
        #[test]
        fn coalescer_takes_garbage(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut c = Coalescer::new();
            for mut p in pkts {
                if p.len() >= 40 && p[0] & 1 == 0 {
                    // make some plausible: v6 TCP with right length
                    p[0] = 0x60;
                    p[6] = TCP;
                    let l = (p.len() - 40) as u16;
                    wr16(&mut p, 4, l);
                }
                if !c.push(&p) {
                    let _ = c.finish();
                    let _ = c.push(&p);
                }
            }
            let _ = c.finish();
        }

        /// Any header with any bytes: an answer, never a panic; what is accepted writes.
        #[test]
        fn arbitrary_input_never_panics(
            h in arb_hdr(),
            mut pkt in proptest::collection::vec(any::<u8>(), 0..3000),
            v in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()],
            proto in prop_oneof![Just(6u8), any::<u8>()],
        ) {
            if let Some(b) = pkt.first_mut() { *b = v; }
            if pkt.len() > 9 { pkt[9] = proto; }
            if pkt.len() > 6 && v == 0x60 { pkt[6] = proto; }
            if let Ok(Prepared::Gso(g)) = prepare(&h, &mut pkt) {
                let mut out = vec![0u8; 4000];
                for i in 0..g.segments().min(8) {
                    let _ = g.write(&pkt, i, &mut out);
                }
            }
            let _ = VnetHdr::parse(&pkt);
        }
    }
}
