//! What segmentation and coalescing both need of IP and TCP: the protocol number, flag bits and
//! checksum offsets, big-endian field access, and the one's-complement checksum with its pseudo
//! header.

use super::vnet::OffloadError;

/// IP protocol number of TCP.
pub(super) const TCP: u8 = 6;
/// Where the checksum is in a TCP header.
pub(super) const TCP_CSUM_OFFSET: usize = 16;
/// Where the checksum is in a UDP header.
pub(super) const UDP_CSUM_OFFSET: usize = 6;
/// TCP flag bits.
pub(super) const FIN: u8 = 0x01;
pub(super) const PSH: u8 = 0x08;
pub(super) const ACK: u8 = 0x10;
pub(super) const CWR: u8 = 0x80;

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

pub(super) fn rd16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

pub(super) fn wr16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Sum of the TCP/UDP pseudo header of `ip` (an IPv4 or IPv6 header) for `l4_len` bytes.
pub(super) fn pseudo(ip: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    let acc = if v6 {
        sum(&ip[8..40], 0)
    } else {
        sum(&ip[12..20], 0)
    };
    // `sum` uses all 64 bits of the accumulator (the addresses alone can make it u64::MAX):
    // add with the end-around carry, as it does.
    add_carry(add_carry(acc, u64::from(proto)), l4_len as u64)
}

/// One's-complement addition of 64-bit words: the carry out goes back in at the bottom.
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    // On a carry s < b <= u64::MAX, so s + 1 does not overflow.
    s + u64::from(c)
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
