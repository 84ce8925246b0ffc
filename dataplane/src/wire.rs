//! Data-frame wire format (version 2): two layers, sealed, checked and opened in place.
//!
//! A route's data is protected end to end by the route's key, which only its two ends hold;
//! each hop adds a MAC with the key of the link it crosses. A relay checks the hop MAC,
//! swaps the label, re-MACs for the next hop and sends: it never decrypts, re-encrypts or
//! copies the payload, and it holds no key that could.
//!
//! UDP payload of a data frame:
//!
//! ```text
//! offset  size  field                      layer  authenticated by
//! 0       1     type (2 = DATA v2)         hop    hop MAC
//! 1       3     reserved, 0 on send        hop    hop MAC (ignored on receive)
//! 4       4     receiver session, u32 LE   hop    hop MAC (the index the RECEIVER chose)
//! 8       8     hop counter, u64 LE        hop    hop MAC (per link session and direction)
//! 16      4     label, u32 LE              hop    hop MAC (swapped at every relay)
//! 20      8     route counter, u64 LE      route  route AEAD (its nonce) and hop MAC
//! 28      n     inner IP packet, encrypted route  route AEAD
//! 28+n    16    route tag                  route  (checked by the egress only)
//! 44+n    16    hop tag                    hop    -
//! ```
//!
//! - Route layer: AEAD (AES-256-GCM or ChaCha20-Poly1305, as the route's handshake chose)
//!   with the route key of this direction, nonce = 4 zero bytes ++ route counter LE, no AAD.
//!   Sealed once by the ingress, opened once by the egress.
//! - Hop layer: the same AEAD with the link session's key, nonce = 4 zero bytes ++ hop
//!   counter LE, empty plaintext, AAD = bytes 0..28 ++ the route tag: a MAC over the header
//!   and the route tag, not over the payload (the route tag already covers it).
//!
//! Both counters carry the sending shard in their top 8 bits (see [`crate::shard`]).
//! Everything is done in the caller's buffer: the dataplane reads an inner packet into
//! `buf[PAYLOAD_OFFSET..]` (leaving [`PAYLOAD_OFFSET`] bytes of headroom and [`TRAILER_LEN`]
//! bytes of tailroom).
//!
//! Anti-replay is NOT done here: the caller checks the hop counter from [`parse_header`]
//! against its replay window before [`HopKey::verify`], the route counter against the route's
//! window before [`RouteKey::open`], and updates each window only after the check passed.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;

/// Frame type of a (version 2) data frame. Version 1 frames (type 1, one layer) are refused.
pub const TYPE_DATA: u8 = 2;
/// Offset of the label.
pub const LABEL_OFFSET: usize = 16;
/// Label of a liveness probe ([`crate::liveness`]): a frame with no payload and no route
/// layer (route counter = the sending shard's stream, route tag zero), authenticated by its
/// hop tag and consumed by the hop that receives it. Labels below 16 are never allocated to
/// routes.
pub const LABEL_PROBE: u32 = 1;
/// Offset of the route counter.
pub const ROUTE_COUNTER_OFFSET: usize = 20;
/// Length of the cleartext header (type .. route counter).
pub const HEADER_LEN: usize = 28;
/// Length of an AEAD tag (route tag and hop tag alike).
pub const TAG_LEN: usize = 16;
/// Bytes after the inner packet: route tag + hop tag.
pub const TRAILER_LEN: usize = 2 * TAG_LEN;
/// Bytes a frame adds to the inner packet: header + route tag + hop tag.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// Offset of the inner packet in a frame (headroom the caller leaves).
pub const PAYLOAD_OFFSET: usize = HEADER_LEN;
/// Longest frame sealing will produce: no UDP payload can be longer.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// First counter value that may never be used: 2^64 - 2^13 - 1 (hop and route counters).
///
/// Sealing refuses counters `>= MAX_COUNTER` (the caller must rekey) and checking rejects
/// them.
pub const MAX_COUNTER: u64 = u64::MAX - (1 << 13);
/// What the hop MAC covers: the header and the route tag.
const HOP_AAD_LEN: usize = HEADER_LEN + TAG_LEN;

const _: () = assert!(OVERHEAD == 60);
const _: () = assert!(MAX_COUNTER == 18_446_744_073_709_543_423);

/// Why a frame could not be sealed, checked or opened. The Display texts are meant for a
/// drop-counter listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum WireError {
    /// Frame shorter than [`OVERHEAD`].
    #[error("frame too short")]
    TooShort,
    /// First byte is not a known frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Authentication failed: wrong key, or the frame was altered.
    #[error("bad authentication tag")]
    BadTag,
    /// Counter reached [`MAX_COUNTER`]: on send the session or route must rekey; on receive
    /// the frame is rejected.
    #[error("counter exhausted")]
    CounterExhausted,
    /// Buffer too small for header + payload + trailer.
    #[error("buffer too small for frame")]
    BufferTooSmall,
    /// The frame would be longer than [`MAX_FRAME_LEN`].
    #[error("frame too long")]
    TooLong,
}

/// The AEAD key could not be built (cannot happen for the supported ciphers' 32-byte keys;
/// reported instead of panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("AEAD key rejected")]
pub struct KeyError;

/// AEAD used by a session or a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// AES-256-GCM when the CPU has AES (and carry-less multiply) instructions, else
/// ChaCha20-Poly1305. Both ciphers work on every CPU; this only picks the faster.
pub fn preferred() -> Cipher {
    if cpu_has_aes() {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn cpu_has_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_has_aes() -> bool {
    false
}

fn make_key(cipher: Cipher, key: &[u8; 32]) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(cipher.algorithm(), key)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError)
}

fn nonce(counter: u64) -> Nonce {
    let [c0, c1, c2, c3, c4, c5, c6, c7] = counter.to_le_bytes();
    Nonce::assume_unique_for_key([0, 0, 0, 0, c0, c1, c2, c3, c4, c5, c6, c7])
}

fn u32_at(frame: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = frame.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u64_at(frame: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = frame.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Cleartext header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Session index chosen by the receiver of the frame (hop layer).
    pub receiver: u32,
    /// Per-link-session, per-direction counter (the hop MAC's nonce).
    pub counter: u64,
    /// Label on this hop.
    pub label: u32,
    /// Per-route, per-direction counter (the route AEAD's nonce).
    pub route_counter: u64,
}

/// Parses the cleartext header. Checks that the frame is at least [`OVERHEAD`] long (a frame
/// with an empty inner packet is allowed) and that its type is [`TYPE_DATA`]. Nothing is
/// authenticated yet. Never panics.
pub fn parse_header(frame: &[u8]) -> Result<Header, WireError> {
    if frame.len() < OVERHEAD {
        return Err(WireError::TooShort);
    }
    let ty = frame.first().copied().ok_or(WireError::TooShort)?;
    if ty != TYPE_DATA {
        return Err(WireError::UnknownType(ty));
    }
    Ok(Header {
        receiver: u32_at(frame, 4),
        counter: u64_at(frame, 8),
        label: u32_at(frame, LABEL_OFFSET),
        route_counter: u64_at(frame, ROUTE_COUNTER_OFFSET),
    })
}

/// The hop MAC's AAD of `frame` (at least [`OVERHEAD`] long): header ++ route tag.
fn hop_aad(frame: &[u8]) -> Result<[u8; HOP_AAD_LEN], WireError> {
    let len = frame.len();
    let tag_at = len.checked_sub(TRAILER_LEN).ok_or(WireError::TooShort)?;
    let (head, route_tag) = (
        frame.get(..HEADER_LEN).ok_or(WireError::TooShort)?,
        frame
            .get(tag_at..tag_at + TAG_LEN)
            .ok_or(WireError::TooShort)?,
    );
    let mut aad = [0u8; HOP_AAD_LEN];
    aad[..HEADER_LEN].copy_from_slice(head);
    aad[HEADER_LEN..].copy_from_slice(route_tag);
    Ok(aad)
}

/// One direction of a link session's hop layer: MACs frames this node sends (the sending
/// half) or checks frames it receives (the receiving half).
#[derive(Debug)]
pub struct HopKey {
    key: LessSafeKey,
    cipher: Cipher,
}

impl HopKey {
    /// The hop key `key` under `cipher`.
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> Result<Self, KeyError> {
        Ok(HopKey {
            key: make_key(cipher, key)?,
            cipher,
        })
    }

    /// Cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Writes the hop fields (type, reserved, `receiver`, `counter`, `label`) of `frame`, a
    /// whole frame whose route layer is sealed, and its hop tag. The route counter, payload
    /// and route tag are left as they are. No payload byte is read or written.
    pub fn stamp(
        &self,
        frame: &mut [u8],
        receiver: u32,
        counter: u64,
        label: u32,
    ) -> Result<(), WireError> {
        if counter >= MAX_COUNTER {
            return Err(WireError::CounterExhausted);
        }
        if frame.len() < OVERHEAD {
            return Err(WireError::TooShort);
        }
        if let Some(h) = frame.get_mut(..ROUTE_COUNTER_OFFSET) {
            h[0] = TYPE_DATA;
            h[1..4].fill(0);
            h[4..8].copy_from_slice(&receiver.to_le_bytes());
            h[8..16].copy_from_slice(&counter.to_le_bytes());
            h[16..20].copy_from_slice(&label.to_le_bytes());
        }
        let aad = hop_aad(frame)?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&aad[..]), &mut [])
            .map_err(|_| WireError::TooLong)?;
        let len = frame.len();
        let out = frame
            .get_mut(len - TAG_LEN..)
            .ok_or(WireError::BufferTooSmall)?;
        out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Checks the hop tag of `frame` and returns its header. Any altered byte of the header
    /// or of the route tag, a wrong key or a truncated frame fails ([`WireError::BadTag`],
    /// [`WireError::TooShort`]; a wrong type byte gives [`WireError::UnknownType`] before any
    /// crypto); counters `>= MAX_COUNTER` are rejected first. The payload is not looked at:
    /// the route layer covers it. Does not check for replays; modifies nothing.
    pub fn verify(&self, frame: &[u8]) -> Result<Header, WireError> {
        let h = parse_header(frame)?;
        if h.counter >= MAX_COUNTER || h.route_counter >= MAX_COUNTER {
            return Err(WireError::CounterExhausted);
        }
        let aad = hop_aad(frame)?;
        let mut tag = [0u8; TAG_LEN];
        let len = frame.len();
        tag.copy_from_slice(frame.get(len - TAG_LEN..).ok_or(WireError::TooShort)?);
        self.key
            .open_in_place(nonce(h.counter), Aad::from(&aad[..]), &mut tag)
            .map_err(|_| WireError::BadTag)?;
        Ok(h)
    }
}

/// One direction of a route's end-to-end key: the ingress seals with it, the egress opens.
#[derive(Debug)]
pub struct RouteKey {
    key: LessSafeKey,
    cipher: Cipher,
}

impl RouteKey {
    /// The route key `key` under `cipher`.
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> Result<Self, KeyError> {
        Ok(RouteKey {
            key: make_key(cipher, key)?,
            cipher,
        })
    }

    /// Cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Seals the route layer in place: `buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload_len]`
    /// holds the inner packet. Writes the route counter, encrypts the packet, writes the
    /// route tag after it and leaves [`TAG_LEN`] bytes for the hop tag; returns the frame
    /// length `OVERHEAD + payload_len`. The hop fields are written by [`HopKey::stamp`].
    ///
    /// Sealing two packets with the same counter under one key destroys confidentiality and
    /// integrity: the caller keeps counters unique. Errors: [`WireError::BufferTooSmall`],
    /// [`WireError::TooLong`], [`WireError::CounterExhausted`] (the route must be replaced).
    pub fn seal(
        &self,
        counter: u64,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, WireError> {
        if counter >= MAX_COUNTER {
            return Err(WireError::CounterExhausted);
        }
        let frame_len = payload_len
            .checked_add(OVERHEAD)
            .ok_or(WireError::TooLong)?;
        if frame_len > MAX_FRAME_LEN {
            return Err(WireError::TooLong);
        }
        let frame = buf.get_mut(..frame_len).ok_or(WireError::BufferTooSmall)?;
        let (head, rest) = frame
            .split_at_mut_checked(PAYLOAD_OFFSET)
            .ok_or(WireError::BufferTooSmall)?;
        let (body, trailer) = rest
            .split_at_mut_checked(payload_len)
            .ok_or(WireError::BufferTooSmall)?;
        head[ROUTE_COUNTER_OFFSET..].copy_from_slice(&counter.to_le_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), body)
            .map_err(|_| WireError::TooLong)?;
        trailer
            .get_mut(..TAG_LEN)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(tag.as_ref());
        Ok(frame_len)
    }

    /// Verifies and decrypts the route layer of `frame` in place and returns the inner
    /// packet, `frame[PAYLOAD_OFFSET..len - TRAILER_LEN]`. Nothing is returned unless the
    /// route tag verifies ([`WireError::BadTag`]); route counters `>= MAX_COUNTER` are
    /// rejected before decryption. The hop layer is not looked at (check it first with
    /// [`HopKey::verify`]). On error the payload bytes are unspecified. No replay check.
    pub fn open<'a>(&self, frame: &'a mut [u8]) -> Result<&'a mut [u8], WireError> {
        let h = parse_header(frame)?;
        if h.route_counter >= MAX_COUNTER {
            return Err(WireError::CounterExhausted);
        }
        let len = frame.len();
        let sealed = frame
            .get_mut(PAYLOAD_OFFSET..len - TAG_LEN)
            .ok_or(WireError::TooShort)?;
        self.key
            .open_in_place(nonce(h.route_counter), Aad::empty(), sealed)
            .map_err(|_| WireError::BadTag)
    }
}

/// Relay step: checks `frame`'s hop tag with `open` (the inbound session's receive key),
/// then re-stamps it for the next hop with `seal` (the outbound session's send key),
/// `receiver`, `counter` and `label`. Returns the inbound header (its label chose the rule).
/// The payload and the route tag are neither read nor changed.
///
/// The caller does the inbound anti-replay check on the returned header's counter.
pub fn relay(
    open: &HopKey,
    seal: &HopKey,
    frame: &mut [u8],
    receiver: u32,
    counter: u64,
    label: u32,
) -> Result<Header, WireError> {
    let h = open.verify(frame)?;
    seal.stamp(frame, receiver, counter, label)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOP1: [u8; 32] = [0x11; 32];
    const HOP2: [u8; 32] = [0x22; 32];
    const ROUTE: [u8; 32] = [0x33; 32];

    fn cipher() -> impl Strategy<Value = Cipher> {
        prop_oneof![Just(Cipher::Aes256Gcm), Just(Cipher::ChaCha20Poly1305)]
    }

    fn other(c: Cipher) -> Cipher {
        match c {
            Cipher::Aes256Gcm => Cipher::ChaCha20Poly1305,
            Cipher::ChaCha20Poly1305 => Cipher::Aes256Gcm,
        }
    }

    /// Buffer with headroom/tailroom holding `payload` at PAYLOAD_OFFSET.
    fn buf_with(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; OVERHEAD + payload.len()];
        buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        buf
    }

    /// A whole frame: route layer under ROUTE (counter `rc`), hop layer under HOP1.
    fn framed(c: Cipher, payload: &[u8], rc: u64, hc: u64, label: u32) -> Vec<u8> {
        let mut buf = buf_with(payload);
        let n = RouteKey::new(c, &ROUTE)
            .unwrap()
            .seal(rc, &mut buf, payload.len())
            .unwrap();
        assert_eq!(n, buf.len());
        HopKey::new(c, &HOP1)
            .unwrap()
            .stamp(&mut buf, 7, hc, label)
            .unwrap();
        buf
    }

    #[test]
    fn constants() {
        assert_eq!(OVERHEAD, 60);
        assert_eq!(PAYLOAD_OFFSET, 28);
        assert_eq!(u128::from(MAX_COUNTER), (1u128 << 64) - (1 << 13) - 1);
        let _ = preferred();
    }

    #[test]
    fn layout_matches_spec() {
        // Independent re-computation with ring, straight from the table in the module doc.
        for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let payload = b"inner ip packet";
            let (rc, hc) = (0x1112_1314_1516_1718u64, 0x0102_0304_0506_0708u64);
            let buf = framed(c, payload, rc, hc, 0xDEAD_BEEF);
            assert_eq!(buf.len(), OVERHEAD + payload.len());
            let mut header = vec![2, 0, 0, 0, 7, 0, 0, 0];
            header.extend_from_slice(&hc.to_le_bytes());
            header.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
            header.extend_from_slice(&rc.to_le_bytes());
            assert_eq!(buf[..28], header[..]);
            let n12 = |ctr: u64| {
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&ctr.to_le_bytes());
                Nonce::assume_unique_for_key(n)
            };
            let rk = LessSafeKey::new(UnboundKey::new(c.algorithm(), &ROUTE).unwrap());
            let mut inner = payload.to_vec();
            rk.seal_in_place_append_tag(n12(rc), Aad::empty(), &mut inner)
                .unwrap();
            assert_eq!(buf[28..28 + payload.len() + 16], inner[..]);
            let hk = LessSafeKey::new(UnboundKey::new(c.algorithm(), &HOP1).unwrap());
            let mut aad = header.clone();
            aad.extend_from_slice(&inner[payload.len()..]);
            let tag = hk
                .seal_in_place_separate_tag(n12(hc), Aad::from(&aad[..]), &mut [])
                .unwrap();
            assert_eq!(buf[buf.len() - 16..], *tag.as_ref());
        }
    }

    #[test]
    fn version_1_frames_are_refused() {
        let mut buf = framed(Cipher::Aes256Gcm, b"x", 0, 0, 1);
        buf[0] = 1;
        assert_eq!(parse_header(&buf), Err(WireError::UnknownType(1)));
        let hop = HopKey::new(Cipher::Aes256Gcm, &HOP1).unwrap();
        assert_eq!(hop.verify(&buf), Err(WireError::UnknownType(1)));
    }

    #[test]
    fn exhausted_counters() {
        let c = Cipher::ChaCha20Poly1305;
        let seal = RouteKey::new(c, &ROUTE).unwrap();
        let hop = HopKey::new(c, &HOP1).unwrap();
        let mut buf = buf_with(b"x");
        assert_eq!(
            seal.seal(MAX_COUNTER, &mut buf, 1),
            Err(WireError::CounterExhausted)
        );
        seal.seal(MAX_COUNTER - 1, &mut buf, 1).unwrap();
        assert_eq!(
            hop.stamp(&mut buf, 1, u64::MAX, 1),
            Err(WireError::CounterExhausted)
        );
        hop.stamp(&mut buf, 1, MAX_COUNTER - 1, 1).unwrap();
        hop.verify(&buf).unwrap();
        for bad in [MAX_COUNTER, u64::MAX] {
            let mut b = buf.clone();
            b[8..16].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(hop.verify(&b), Err(WireError::CounterExhausted));
            let mut b = buf.clone();
            b[20..28].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(hop.verify(&b), Err(WireError::CounterExhausted));
            let open = RouteKey::new(c, &ROUTE).unwrap();
            assert_eq!(open.open(&mut b).unwrap_err(), WireError::CounterExhausted);
        }
    }

    #[test]
    fn too_long_and_overflow() {
        let s = RouteKey::new(Cipher::Aes256Gcm, &ROUTE).unwrap();
        let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            s.seal(0, &mut buf, MAX_FRAME_LEN - OVERHEAD + 1),
            Err(WireError::TooLong)
        );
        assert_eq!(s.seal(0, &mut buf, usize::MAX), Err(WireError::TooLong));
        let n = s.seal(0, &mut buf, MAX_FRAME_LEN - OVERHEAD).unwrap();
        assert_eq!(n, MAX_FRAME_LEN);
        let hop = HopKey::new(Cipher::Aes256Gcm, &HOP1).unwrap();
        hop.stamp(&mut buf[..n], 1, 0, 1).unwrap();
        hop.verify(&buf[..n]).unwrap();
        let o = RouteKey::new(Cipher::Aes256Gcm, &ROUTE).unwrap();
        assert_eq!(o.open(&mut buf[..n]).unwrap().len(), n - OVERHEAD);
    }

    #[test]
    fn empty_packet_frame_is_60() {
        let mut buf = framed(Cipher::ChaCha20Poly1305, b"", 3, 4, 9);
        assert_eq!(buf.len(), 60);
        let hop = HopKey::new(Cipher::ChaCha20Poly1305, &HOP1).unwrap();
        assert_eq!(hop.verify(&buf[..59]), Err(WireError::TooShort));
        assert_eq!(hop.verify(&buf).unwrap().label, 9);
        let o = RouteKey::new(Cipher::ChaCha20Poly1305, &ROUTE).unwrap();
        assert_eq!(o.open(&mut buf).unwrap().len(), 0);
    }

    #[test]
    fn display_texts() {
        assert_eq!(
            WireError::UnknownType(3).to_string(),
            "unknown frame type 3"
        );
        assert_eq!(WireError::BadTag.to_string(), "bad authentication tag");
    }

    proptest! {
        #[test]
        fn parse_header_total(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let r = parse_header(&bytes);
            if bytes.len() < OVERHEAD {
                prop_assert_eq!(r, Err(WireError::TooShort));
            } else if bytes[0] != TYPE_DATA {
                prop_assert_eq!(r, Err(WireError::UnknownType(bytes[0])));
            } else {
                let h = r.unwrap();
                prop_assert_eq!(&h.receiver.to_le_bytes()[..], &bytes[4..8]);
                prop_assert_eq!(&h.counter.to_le_bytes()[..], &bytes[8..16]);
                prop_assert_eq!(&h.label.to_le_bytes()[..], &bytes[16..20]);
                prop_assert_eq!(&h.route_counter.to_le_bytes()[..], &bytes[20..28]);
            }
        }

        #[test]
        fn checks_total_on_garbage(
            c in cipher(),
            mut bytes in proptest::collection::vec(any::<u8>(), 0..140),
        ) {
            let hop = HopKey::new(c, &HOP1).unwrap();
            prop_assert!(hop.verify(&bytes).is_err());
            let o = RouteKey::new(c, &ROUTE).unwrap();
            prop_assert!(o.open(&mut bytes).is_err());
        }

        #[test]
        fn roundtrip(
            c in cipher(),
            label in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=1500),
            rc in 0..MAX_COUNTER,
            hc in 0..MAX_COUNTER,
            extra in 0usize..40,
        ) {
            let mut buf = buf_with(&payload);
            buf.resize(buf.len() + extra, 0xEE);
            let n = RouteKey::new(c, &ROUTE).unwrap().seal(rc, &mut buf, payload.len()).unwrap();
            prop_assert_eq!(n, OVERHEAD + payload.len());
            prop_assert!(buf[n..].iter().all(|&b| b == 0xEE), "tailroom untouched");
            HopKey::new(c, &HOP1).unwrap().stamp(&mut buf[..n], 7, hc, label).unwrap();
            let h = HopKey::new(c, &HOP1).unwrap().verify(&buf[..n]).unwrap();
            prop_assert_eq!(h, Header { receiver: 7, counter: hc, label, route_counter: rc });
            let o = RouteKey::new(c, &ROUTE).unwrap();
            prop_assert_eq!(&*o.open(&mut buf[..n]).unwrap(), &payload[..]);
        }

        /// A flipped bit anywhere in the header, the route tag or the hop tag fails the hop
        /// check; in the payload it passes the hop check (a relay does not read the payload)
        /// and fails at the egress.
        #[test]
        fn any_bit_flip_fails(
            c in cipher(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut buf = framed(c, &payload, 5, 6, 42);
            let bit = bit.index(buf.len() * 8);
            let byte = bit / 8;
            buf[byte] ^= 1 << (bit % 8);
            let hop = HopKey::new(c, &HOP1).unwrap();
            let o = RouteKey::new(c, &ROUTE).unwrap();
            let in_payload = (PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()).contains(&byte);
            match hop.verify(&buf) {
                Err(WireError::UnknownType(_)) => prop_assert_eq!(byte, 0),
                Err(e) => {
                    prop_assert!(!in_payload);
                    // Counters are small, so a flip cannot reach MAX_COUNTER.
                    prop_assert_eq!(e, WireError::BadTag);
                }
                Ok(_) => {
                    prop_assert!(in_payload);
                    prop_assert_eq!(o.open(&mut buf).unwrap_err(), WireError::BadTag);
                }
            }
        }

        #[test]
        fn wrong_keys_fail(
            c in cipher(),
            key in any::<[u8; 32]>(),
            cross_cipher in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut buf = framed(c, &payload, 1, 1, 1);
            let (oc, ok) = if cross_cipher {
                (other(c), HOP1)
            } else {
                prop_assume!(key != HOP1 && key != ROUTE);
                (c, key)
            };
            prop_assert_eq!(HopKey::new(oc, &ok).unwrap().verify(&buf), Err(WireError::BadTag));
            let ork = if cross_cipher { ROUTE } else { ok };
            let o = RouteKey::new(oc, &ork).unwrap();
            prop_assert_eq!(o.open(&mut buf).unwrap_err(), WireError::BadTag);
            // Nor does the hop key open the route layer.
            let mut buf = framed(c, &payload, 1, 1, 1);
            let o = RouteKey::new(c, &HOP1).unwrap();
            prop_assert_eq!(o.open(&mut buf).unwrap_err(), WireError::BadTag);
        }

        /// Over any number of relays the payload bytes and route tag are carried unchanged,
        /// each hop's tag verifies with that hop's key only, and the egress opens the packet.
        #[test]
        fn relay_chain(
            c1 in cipher(),
            c2 in cipher(),
            label in any::<u32>(),
            new_label in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=1500),
            hc in 0u64..1000,
        ) {
            let mut buf = framed(c1, &payload, 9, hc, label);
            let sealed_part = buf[PAYLOAD_OFFSET..].to_vec();
            let r_in = HopKey::new(c1, &HOP1).unwrap();
            let r_out = HopKey::new(c2, &HOP2).unwrap();
            let h = relay(&r_in, &r_out, &mut buf, 200, hc + 1, new_label).unwrap();
            prop_assert_eq!((h.label, h.counter), (label, hc));
            let n = buf.len();
            prop_assert_eq!(&buf[PAYLOAD_OFFSET..n - TAG_LEN], &sealed_part[..sealed_part.len() - TAG_LEN]);
            prop_assert_eq!(r_in.verify(&buf), Err(WireError::BadTag));
            let h = HopKey::new(c2, &HOP2).unwrap().verify(&buf).unwrap();
            prop_assert_eq!(h, Header { receiver: 200, counter: hc + 1, label: new_label, route_counter: 9 });
            let o = RouteKey::new(c1, &ROUTE).unwrap();
            prop_assert_eq!(&*o.open(&mut buf).unwrap(), &payload[..]);
        }

        #[test]
        fn relay_of_a_bad_frame_changes_nothing(payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut buf = framed(Cipher::Aes256Gcm, &payload, 1, 1, 1);
            let last = buf.len() - 1;
            buf[last] ^= 1;
            let before = buf.clone();
            let r_in = HopKey::new(Cipher::Aes256Gcm, &HOP1).unwrap();
            let r_out = HopKey::new(Cipher::Aes256Gcm, &HOP2).unwrap();
            prop_assert_eq!(relay(&r_in, &r_out, &mut buf, 2, 0, 3), Err(WireError::BadTag));
            prop_assert_eq!(buf, before);
        }

        #[test]
        fn short_buffer_errors(c in cipher(), payload_len in 0usize..200) {
            let s = RouteKey::new(c, &ROUTE).unwrap();
            for size in 0..OVERHEAD + payload_len {
                let mut buf = vec![0u8; size];
                prop_assert_eq!(s.seal(0, &mut buf, payload_len), Err(WireError::BufferTooSmall));
            }
            let mut buf = vec![0u8; OVERHEAD + payload_len];
            prop_assert_eq!(s.seal(0, &mut buf, payload_len), Ok(OVERHEAD + payload_len));
            let hop = HopKey::new(c, &HOP1).unwrap();
            for size in 0..OVERHEAD {
                let mut b = vec![0u8; size];
                prop_assert_eq!(hop.stamp(&mut b, 1, 0, 1), Err(WireError::TooShort));
            }
        }
    }
}
