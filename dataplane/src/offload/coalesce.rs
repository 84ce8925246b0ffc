//! Coalescing: consecutive in-order TCP segments of one flow merged into one super-packet with a
//! GSO vnet header, like the kernel's GRO, for one write to the TUN.

use super::tcp::{ACK, PSH, TCP, TCP_CSUM_OFFSET, fold, pseudo, rd16, sum, wr16};
use super::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN, VnetHdr};

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
