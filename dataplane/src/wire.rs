//! Data-frame wire format and its AEAD, sealed and opened in place.
//!
//! UDP payload of a data frame:
//!
//! ```text
//! offset 0      type u8 (1 = DATA; anything else is an error for now)
//!        1..4   reserved, zero on send, ignored on receive (but authenticated as AAD)
//!        4..8   receiver session index, u32 LE (the index the RECEIVER chose)
//!        8..16  counter u64 LE (per session, per direction, starts at 0, never reused)
//!        16..   AEAD ciphertext of (label u32 LE ++ inner IP packet), then a 16-byte tag
//! ```
//!
//! AAD = the 16 header bytes. Nonce = 4 zero bytes ++ counter LE (8 bytes).
//!
//! Everything is done in the caller's buffer: the dataplane reads an inner packet
//! into `buf[PAYLOAD_OFFSET..]` (leaving [`PAYLOAD_OFFSET`] bytes of headroom and
//! [`TAG_LEN`] bytes of tailroom), and [`SealKey::seal`] writes header and label in
//! front, encrypts in place and appends the tag. [`OpenKey::open`] decrypts in place
//! and hands back a sub-slice of the frame. [`reseal`] does both for a relay, with
//! no copy of the packet.
//!
//! Anti-replay is NOT done here: the caller checks the counter from
//! [`parse_header`] against its replay window before [`OpenKey::open`] and
//! updates the window only after `open` succeeded.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;

/// Frame type of a data frame.
pub const TYPE_DATA: u8 = 1;
/// Length of the cleartext header (type, reserved, receiver index, counter).
pub const HEADER_LEN: usize = 16;
/// Length of the encrypted label in front of the inner packet.
pub const LABEL_LEN: usize = 4;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to the inner packet: header + label + tag.
pub const OVERHEAD: usize = HEADER_LEN + LABEL_LEN + TAG_LEN;
/// Offset of the inner packet in a frame (headroom the caller leaves).
pub const PAYLOAD_OFFSET: usize = HEADER_LEN + LABEL_LEN;
/// Longest frame [`SealKey::seal`] will produce: no UDP payload can be longer.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// First counter value that may never be used: 2^64 - 2^13 - 1.
///
/// Sealing refuses counters `>= MAX_COUNTER` (the caller must rekey) and
/// opening rejects them.
pub const MAX_COUNTER: u64 = u64::MAX - (1 << 13);

const _: () = assert!(OVERHEAD == 36);
const _: () = assert!(MAX_COUNTER == 18_446_744_073_709_543_423);

/// Why a frame could not be sealed or opened. The Display texts are meant for a
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
    /// Counter reached [`MAX_COUNTER`]: on send the session must rekey; on
    /// receive the frame is rejected.
    #[error("counter exhausted")]
    CounterExhausted,
    /// Buffer too small for header + label + payload + tag.
    #[error("buffer too small for frame")]
    BufferTooSmall,
    /// The frame would be longer than [`MAX_FRAME_LEN`].
    #[error("frame too long")]
    TooLong,
}

/// The AEAD key could not be built (cannot happen for the supported ciphers'
/// 32-byte keys; reported instead of panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("AEAD key rejected")]
pub struct KeyError;

/// AEAD used by a session.
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

/// Cleartext header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Frame type ([`TYPE_DATA`]).
    pub ty: u8,
    /// Session index chosen by the receiver of the frame.
    pub receiver: u32,
    /// Per-session, per-direction counter (also the nonce).
    pub counter: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let r = self.receiver.to_le_bytes();
        let c = self.counter.to_le_bytes();
        [
            self.ty, 0, 0, 0, r[0], r[1], r[2], r[3], c[0], c[1], c[2], c[3], c[4], c[5], c[6],
            c[7],
        ]
    }
}

/// Parses the cleartext header. Checks that the frame is at least [`OVERHEAD`]
/// long (a frame with an empty inner packet is allowed) and that its type is
/// [`TYPE_DATA`]. Nothing is authenticated yet. Never panics.
pub fn parse_header(frame: &[u8]) -> Result<Header, WireError> {
    if frame.len() < OVERHEAD {
        return Err(WireError::TooShort);
    }
    let Some((bytes, _)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort);
    };
    let [ty, _, _, _, r0, r1, r2, r3, c0, c1, c2, c3, c4, c5, c6, c7] = *bytes;
    if ty != TYPE_DATA {
        return Err(WireError::UnknownType(ty));
    }
    Ok(Header {
        ty,
        receiver: u32::from_le_bytes([r0, r1, r2, r3]),
        counter: u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
    })
}

/// Sending half of a session: our sending key, the peer's session index and the
/// next counter to use.
#[derive(Debug)]
pub struct SealKey {
    key: LessSafeKey,
    cipher: Cipher,
    receiver: u32,
    next: u64,
}

impl SealKey {
    /// Key for sending to the peer whose session index is `receiver`; the
    /// counter starts at 0.
    pub fn new(cipher: Cipher, key: &[u8; 32], receiver: u32) -> Result<Self, KeyError> {
        Ok(SealKey {
            key: make_key(cipher, key)?,
            cipher,
            receiver,
            next: 0,
        })
    }

    /// Cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The peer's session index written into every frame.
    pub fn receiver(&self) -> u32 {
        self.receiver
    }

    /// Counter the next successful [`seal`](Self::seal) will use.
    pub fn next_counter(&self) -> u64 {
        self.next
    }

    /// Seals in place. `buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload_len]` holds
    /// the inner packet. Writes the header at `0..16` and `label` at `16..20`,
    /// encrypts `16..20 + payload_len`, appends the tag, and returns the frame
    /// length `OVERHEAD + payload_len`.
    ///
    /// The counter advances only on success. Errors: [`WireError::BufferTooSmall`],
    /// [`WireError::TooLong`], [`WireError::CounterExhausted`] (rekey).
    pub fn seal(
        &mut self,
        label: u32,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, WireError> {
        let counter = self.next;
        let len = self.seal_with_counter(counter, label, buf, payload_len)?;
        // seal_with_counter succeeded, so counter < MAX_COUNTER < u64::MAX.
        self.next = counter.saturating_add(1);
        Ok(len)
    }

    /// Like [`seal`](Self::seal) with an explicit counter and without advancing
    /// the internal one. For tests and benchmarks: sealing two different frames
    /// with the same counter under one key destroys confidentiality and
    /// integrity.
    pub fn seal_with_counter(
        &self,
        counter: u64,
        label: u32,
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
        let (header, rest) = frame
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(WireError::BufferTooSmall)?;
        let (body, tag_out) = rest
            .split_at_mut_checked(LABEL_LEN + payload_len)
            .ok_or(WireError::BufferTooSmall)?;
        let (label_out, _) = body
            .split_first_chunk_mut::<LABEL_LEN>()
            .ok_or(WireError::BufferTooSmall)?;

        *header = Header {
            ty: TYPE_DATA,
            receiver: self.receiver,
            counter,
        }
        .encode();
        *label_out = label.to_le_bytes();

        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&header[..]), body)
            .map_err(|_| WireError::TooLong)?;
        let tag = tag.as_ref();
        if tag_out.len() != tag.len() {
            return Err(WireError::BufferTooSmall);
        }
        tag_out.copy_from_slice(tag);
        Ok(frame_len)
    }
}

/// Receiving half of a session.
#[derive(Debug)]
pub struct OpenKey {
    key: LessSafeKey,
    cipher: Cipher,
}

/// A frame opened in place.
#[derive(Debug)]
pub struct Opened<'a> {
    /// Decrypted label.
    pub label: u32,
    /// Authenticated counter (feed it to the replay window).
    pub counter: u64,
    /// Decrypted inner packet: `frame[PAYLOAD_OFFSET..len - TAG_LEN]`.
    pub packet: &'a mut [u8],
}

impl OpenKey {
    /// Key for receiving.
    pub fn new(cipher: Cipher, key: &[u8; 32]) -> Result<Self, KeyError> {
        Ok(OpenKey {
            key: make_key(cipher, key)?,
            cipher,
        })
    }

    /// Cipher of this key.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Verifies and decrypts `frame` in place. Nothing is returned unless the tag
    /// verifies; a wrong key or any altered byte (header included) gives
    /// [`WireError::BadTag`] (except the type byte, which gives
    /// [`WireError::UnknownType`] before any crypto). Counters `>= MAX_COUNTER`
    /// are rejected with [`WireError::CounterExhausted`] before decryption.
    ///
    /// On error the contents of `frame` past the header are unspecified.
    /// This does not check for replays.
    pub fn open<'a>(&self, frame: &'a mut [u8]) -> Result<Opened<'a>, WireError> {
        let header = parse_header(frame)?;
        if header.counter >= MAX_COUNTER {
            return Err(WireError::CounterExhausted);
        }
        let (aad, rest) = frame
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(WireError::TooShort)?;
        let plain = self
            .key
            .open_in_place(nonce(header.counter), Aad::from(&aad[..]), rest)
            .map_err(|_| WireError::BadTag)?;
        let (label, packet) = plain
            .split_first_chunk_mut::<LABEL_LEN>()
            .ok_or(WireError::TooShort)?;
        Ok(Opened {
            label: u32::from_le_bytes(*label),
            counter: header.counter,
            packet,
        })
    }
}

/// Relay step: opens `frame` with `open` (the inbound session), and re-seals the
/// same bytes in place with `seal` (the outbound session, next counter) under
/// `new_label`. Returns the new frame length, always `frame.len()`.
///
/// The caller does the inbound anti-replay check: read the counter with
/// [`parse_header`] first, check it, and update the window after this returned
/// `Ok`. (A relay that must see the old label before choosing the next hop uses
/// [`OpenKey::open`] then [`SealKey::seal`] on the same buffer instead.)
pub fn reseal(
    open: &OpenKey,
    seal: &mut SealKey,
    new_label: u32,
    frame: &mut [u8],
) -> Result<usize, WireError> {
    let payload_len = open.open(frame)?.packet.len();
    seal.seal(new_label, frame, payload_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K1: [u8; 32] = [0x11; 32];
    const K2: [u8; 32] = [0x22; 32];

    fn cipher() -> impl Strategy<Value = Cipher> {
        prop_oneof![Just(Cipher::Aes256Gcm), Just(Cipher::ChaCha20Poly1305)]
    }

    /// Buffer with headroom/tailroom holding `payload` at PAYLOAD_OFFSET.
    fn buf_with(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; OVERHEAD + payload.len()];
        buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        buf
    }

    fn sealed(c: Cipher, key: &[u8; 32], label: u32, payload: &[u8]) -> Vec<u8> {
        let mut s = SealKey::new(c, key, 7).unwrap();
        let mut buf = buf_with(payload);
        let n = s.seal(label, &mut buf, payload.len()).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn constants() {
        assert_eq!(OVERHEAD, 36);
        assert_eq!(PAYLOAD_OFFSET, 20);
        assert_eq!(u128::from(MAX_COUNTER), (1u128 << 64) - (1 << 13) - 1);
        let _ = preferred();
    }

    #[test]
    fn layout_matches_spec() {
        // Independent re-computation with ring, straight from the spec.
        for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            let s = SealKey::new(c, &K1, 0xA1B2_C3D4).unwrap();
            let payload = b"inner ip packet";
            let mut buf = buf_with(payload);
            let counter = 0x0102_0304_0506_0708;
            let n = s
                .seal_with_counter(counter, 0xDEAD_BEEF, &mut buf, payload.len())
                .unwrap();
            assert_eq!(n, OVERHEAD + payload.len());

            let header = [1, 0, 0, 0, 0xD4, 0xC3, 0xB2, 0xA1, 8, 7, 6, 5, 4, 3, 2, 1];
            assert_eq!(buf[..16], header);
            let mut expect = 0xDEAD_BEEFu32.to_le_bytes().to_vec();
            expect.extend_from_slice(payload);
            let mut n12 = [0u8; 12];
            n12[4..].copy_from_slice(&counter.to_le_bytes());
            let k = LessSafeKey::new(UnboundKey::new(c.algorithm(), &K1).unwrap());
            k.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(n12),
                Aad::from(&header[..]),
                &mut expect,
            )
            .unwrap();
            assert_eq!(buf[16..], expect[..]);
        }
    }

    #[test]
    fn counter_advances_and_exhausts() {
        let mut s = SealKey::new(Cipher::ChaCha20Poly1305, &K1, 1).unwrap();
        let o = OpenKey::new(Cipher::ChaCha20Poly1305, &K1).unwrap();
        for want in 0..3u64 {
            let mut buf = buf_with(b"x");
            s.seal(5, &mut buf, 1).unwrap();
            assert_eq!(parse_header(&buf).unwrap().counter, want);
            assert_eq!(o.open(&mut buf).unwrap().counter, want);
        }
        s.next = MAX_COUNTER - 1;
        let mut buf = buf_with(b"x");
        s.seal(5, &mut buf, 1).unwrap();
        assert_eq!(o.open(&mut buf).unwrap().counter, MAX_COUNTER - 1);
        let mut buf = buf_with(b"x");
        assert_eq!(s.seal(5, &mut buf, 1), Err(WireError::CounterExhausted));
        assert_eq!(s.next_counter(), MAX_COUNTER);
        assert_eq!(
            s.seal_with_counter(u64::MAX, 5, &mut buf, 1),
            Err(WireError::CounterExhausted)
        );
    }

    #[test]
    fn open_rejects_exhausted_counter() {
        let mut buf = sealed(Cipher::Aes256Gcm, &K1, 1, b"abc");
        for c in [MAX_COUNTER, MAX_COUNTER + 1, u64::MAX] {
            buf[8..16].copy_from_slice(&c.to_le_bytes());
            let o = OpenKey::new(Cipher::Aes256Gcm, &K1).unwrap();
            assert_eq!(o.open(&mut buf).unwrap_err(), WireError::CounterExhausted);
        }
    }

    #[test]
    fn too_long_and_overflow() {
        let s = SealKey::new(Cipher::Aes256Gcm, &K1, 1).unwrap();
        let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            s.seal_with_counter(0, 0, &mut buf, MAX_FRAME_LEN - OVERHEAD + 1),
            Err(WireError::TooLong)
        );
        assert_eq!(
            s.seal_with_counter(0, 0, &mut buf, usize::MAX),
            Err(WireError::TooLong)
        );
        let n = s
            .seal_with_counter(0, 0, &mut buf, MAX_FRAME_LEN - OVERHEAD)
            .unwrap();
        assert_eq!(n, MAX_FRAME_LEN);
        let o = OpenKey::new(Cipher::Aes256Gcm, &K1).unwrap();
        assert_eq!(o.open(&mut buf[..n]).unwrap().packet.len(), n - OVERHEAD);
    }

    #[test]
    fn empty_packet_frame_is_36() {
        let mut buf = sealed(Cipher::ChaCha20Poly1305, &K1, 9, b"");
        assert_eq!(buf.len(), 36);
        let o = OpenKey::new(Cipher::ChaCha20Poly1305, &K1).unwrap();
        let op = o.open(&mut buf).unwrap();
        assert_eq!((op.label, op.packet.len()), (9, 0));
        assert_eq!(
            o.open(&mut buf[..35]).unwrap_err(),
            WireError::TooShort,
            "35 bytes"
        );
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
        fn parse_header_total(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let r = parse_header(&bytes);
            if bytes.len() < OVERHEAD {
                prop_assert_eq!(r, Err(WireError::TooShort));
            } else if bytes[0] != TYPE_DATA {
                prop_assert_eq!(r, Err(WireError::UnknownType(bytes[0])));
            } else {
                let h = r.unwrap();
                prop_assert_eq!(&h.receiver.to_le_bytes()[..], &bytes[4..8]);
                prop_assert_eq!(&h.counter.to_le_bytes()[..], &bytes[8..16]);
            }
        }

        #[test]
        fn open_total_on_garbage(
            c in cipher(),
            mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let o = OpenKey::new(c, &K1).unwrap();
            prop_assert!(o.open(&mut bytes).is_err());
        }

        #[test]
        fn seal_open_roundtrip(
            c in cipher(),
            label in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=1500),
            receiver in any::<u32>(),
            extra in 0usize..40,
        ) {
            let mut s = SealKey::new(c, &K1, receiver).unwrap();
            let o = OpenKey::new(c, &K1).unwrap();
            let mut buf = buf_with(&payload);
            buf.resize(buf.len() + extra, 0xEE);
            let n = s.seal(label, &mut buf, payload.len()).unwrap();
            prop_assert_eq!(n, OVERHEAD + payload.len());
            prop_assert!(buf[n..].iter().all(|&b| b == 0xEE), "tailroom untouched");
            let h = parse_header(&buf[..n]).unwrap();
            prop_assert_eq!(h, Header { ty: TYPE_DATA, receiver, counter: 0 });
            let op = o.open(&mut buf[..n]).unwrap();
            prop_assert_eq!(op.label, label);
            prop_assert_eq!(op.counter, 0);
            prop_assert_eq!(&*op.packet, &payload[..]);
        }

        #[test]
        fn any_bit_flip_fails(
            c in cipher(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut buf = sealed(c, &K1, 42, &payload);
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            let o = OpenKey::new(c, &K1).unwrap();
            let err = o.open(&mut buf).unwrap_err();
            if bit / 8 == 0 {
                prop_assert!(matches!(err, WireError::UnknownType(_)));
            } else {
                // Counter is 0, so a flip cannot reach MAX_COUNTER.
                prop_assert_eq!(err, WireError::BadTag);
            }
        }

        #[test]
        fn wrong_key_fails(
            c in cipher(),
            other in any::<[u8; 32]>(),
            cross_cipher in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut buf = sealed(c, &K1, 1, &payload);
            let (oc, ok) = if cross_cipher {
                let oc = match c {
                    Cipher::Aes256Gcm => Cipher::ChaCha20Poly1305,
                    Cipher::ChaCha20Poly1305 => Cipher::Aes256Gcm,
                };
                (oc, K1)
            } else {
                prop_assume!(other != K1);
                (c, other)
            };
            let o = OpenKey::new(oc, &ok).unwrap();
            prop_assert_eq!(o.open(&mut buf).unwrap_err(), WireError::BadTag);
        }

        #[test]
        fn reseal_relay_roundtrip(
            c1 in cipher(),
            c2 in cipher(),
            label in any::<u32>(),
            new_label in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=1500),
            rounds in 1u64..4,
        ) {
            let mut a = SealKey::new(c1, &K1, 100).unwrap();
            let r_in = OpenKey::new(c1, &K1).unwrap();
            let mut r_out = SealKey::new(c2, &K2, 200).unwrap();
            let b = OpenKey::new(c2, &K2).unwrap();
            for round in 0..rounds {
                let mut buf = buf_with(&payload);
                let n = a.seal(label, &mut buf, payload.len()).unwrap();
                let m = reseal(&r_in, &mut r_out, new_label, &mut buf[..n]).unwrap();
                prop_assert_eq!(m, n);
                let h = parse_header(&buf[..m]).unwrap();
                prop_assert_eq!((h.receiver, h.counter), (200, round));
                // The old key no longer opens it.
                let mut copy = buf.clone();
                prop_assert_eq!(r_in.open(&mut copy).unwrap_err(), WireError::BadTag);
                let op = b.open(&mut buf[..m]).unwrap();
                prop_assert_eq!(op.label, new_label);
                prop_assert_eq!(&*op.packet, &payload[..]);
            }
        }

        #[test]
        fn reseal_bad_frame_does_not_consume_counter(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut buf = sealed(Cipher::Aes256Gcm, &K1, 1, &payload);
            let last = buf.len() - 1;
            buf[last] ^= 1;
            let r_in = OpenKey::new(Cipher::Aes256Gcm, &K1).unwrap();
            let mut r_out = SealKey::new(Cipher::Aes256Gcm, &K2, 2).unwrap();
            prop_assert_eq!(reseal(&r_in, &mut r_out, 3, &mut buf), Err(WireError::BadTag));
            prop_assert_eq!(r_out.next_counter(), 0);
        }

        #[test]
        fn short_buffer_errors(c in cipher(), payload_len in 0usize..200) {
            let mut s = SealKey::new(c, &K1, 1).unwrap();
            for size in 0..OVERHEAD + payload_len {
                let mut buf = vec![0u8; size];
                prop_assert_eq!(
                    s.seal(1, &mut buf, payload_len),
                    Err(WireError::BufferTooSmall)
                );
            }
            prop_assert_eq!(s.next_counter(), 0);
            let mut buf = vec![0u8; OVERHEAD + payload_len];
            prop_assert_eq!(s.seal(1, &mut buf, payload_len), Ok(OVERHEAD + payload_len));
            prop_assert_eq!(s.next_counter(), 1);
        }
    }
}
