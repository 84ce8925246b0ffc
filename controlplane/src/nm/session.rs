//! End-to-end route sessions: the Noise handshake a route's Setup and SetupAck carry between
//! its two ends, and the keys it yields. Sans-IO, no clock.
//!
//! The origin knows the destination's public key, so the Setup carries the first message of
//! `Noise_IK_25519_ChaChaPoly_BLAKE2s` (static keys: the X25519 forms of the nodes' Ed25519
//! keys) and the SetupAck the answer. Both payloads start with the route's binding: SHA-256 of
//! the route id and the path, so a message cannot be moved to another route or path. Then one
//! byte: in the Setup whether the origin's CPU has AES instructions (1) or not (0), in the
//! SetupAck the data cipher the egress chose (1 AES-256-GCM, only when both have AES; 2
//! ChaCha20-Poly1305). The handshake authenticates both, so no relay can downgrade the cipher. The egress
//! installs its deliver rule only once the first message shows that the sender holds the
//! origin's key; transit nodes carry the messages unchanged and learn nothing from them.
//!
//! A route's keys: `tx`/`rx` for its data (origin -> egress and back; for the end-to-end data
//! layer) and `ctrl`, the key of the route control messages' MACs (keepalives).

use super::types::{NodeId, RouteId};
use dataplane::wire::Cipher;
use ring::{digest, hkdf, hmac};

/// The handshake pattern.
pub const NOISE: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"skywire route v1";
/// Longest handshake message on the wire (IK: 96 + 16-byte tags + payload, first message;
/// 48 + payload, second): the decoder refuses longer ones.
pub const MAX_HANDSHAKE: usize = 256;
/// Length of a route control message's MAC.
pub const MAC_LEN: usize = 16;

/// Why a route handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not a valid Noise message (forged, modified, truncated or for another key).
    #[error("bad handshake message")]
    Handshake,
    /// The message opened, but its sender is not the route's origin.
    #[error("handshake sender is not the route origin")]
    NotOrigin,
    /// The message was made for another route id or path.
    #[error("handshake bound to another route")]
    Binding,
    /// The destination's key is not a valid Ed25519 point.
    #[error("destination key has no X25519 form")]
    BadKey,
}

/// The keys of one established route, as seen from one end.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteKeys {
    /// The data cipher both ends use.
    pub cipher: Cipher,
    /// Data this end sends.
    pub tx: [u8; 32],
    /// Data this end receives.
    pub rx: [u8; 32],
    /// MAC key of the route's control messages (both directions).
    pub ctrl: [u8; 32],
}

impl std::fmt::Debug for RouteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteKeys(..)")
    }
}

/// The origin's half-done handshake, kept until the SetupAck.
pub struct Initiator {
    hs: snow::HandshakeState,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator(..)")
    }
}

/// The X25519 private key of a node's Ed25519 seed: clamp(SHA-512(seed)[..32]) (clamping is
/// done by the X25519 function itself).
pub fn x25519_private(seed: &[u8; 32]) -> [u8; 32] {
    let h = digest::digest(&digest::SHA512, seed);
    let mut k = [0u8; 32];
    k.copy_from_slice(&h.as_ref()[..32]);
    k
}

fn x25519_public(id: &NodeId) -> Option<[u8; 32]> {
    Some(
        curve25519_dalek::edwards::CompressedEdwardsY(id.0)
            .decompress()?
            .to_montgomery()
            .to_bytes(),
    )
}

/// What both payloads carry: the route id and the path, hashed.
pub fn binding(rid: &RouteId, path: &[NodeId]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"skywire route binding");
    ctx.update(&rid.origin.0);
    ctx.update(&rid.counter.to_be_bytes());
    for n in path {
        ctx.update(&n.0);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A handshake payload: the binding and one byte.
fn payload(rid: &RouteId, path: &[NodeId], byte: u8) -> [u8; 33] {
    let mut p = [0u8; 33];
    p[..32].copy_from_slice(&binding(rid, path));
    p[32] = byte;
    p
}

fn cipher_code(c: Cipher) -> u8 {
    match c {
        Cipher::Aes256Gcm => 1,
        Cipher::ChaCha20Poly1305 => 2,
    }
}

fn noise_params() -> snow::params::NoiseParams {
    // The pattern string is a constant this module's tests parse.
    NOISE.parse().expect("valid Noise pattern")
}

/// Origin: the first handshake message of route `rid` along `path` to `dst`; `local` is the
/// origin's X25519 private key ([`x25519_private`]).
/// `aes`: whether this CPU has AES instructions ([`dataplane::wire::preferred`]).
pub fn initiate(
    local: &[u8; 32],
    dst: &NodeId,
    rid: &RouteId,
    path: &[NodeId],
    aes: bool,
) -> Result<(Initiator, Vec<u8>), SessionError> {
    let remote = x25519_public(dst).ok_or(SessionError::BadKey)?;
    let mut hs = snow::Builder::new(noise_params())
        .prologue(PROLOGUE)
        .and_then(|b| b.local_private_key(local))
        .and_then(|b| b.remote_public_key(&remote))
        .and_then(|b| b.build_initiator())
        .map_err(|_| SessionError::Handshake)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    let n = hs
        .write_message(&payload(rid, path, u8::from(aes)), &mut buf)
        .map_err(|_| SessionError::Handshake)?;
    buf.truncate(n);
    Ok((Initiator { hs }, buf))
}

/// Egress: checks the first message of route `rid` along `path` (it must come from the key of
/// `rid.origin` and be bound to this route) and answers it; `aes` as for [`initiate`].
pub fn respond(
    local: &[u8; 32],
    rid: &RouteId,
    path: &[NodeId],
    msg1: &[u8],
    aes: bool,
) -> Result<(RouteKeys, Vec<u8>), SessionError> {
    if msg1.len() > MAX_HANDSHAKE {
        return Err(SessionError::Handshake);
    }
    let mut hs = snow::Builder::new(noise_params())
        .prologue(PROLOGUE)
        .and_then(|b| b.local_private_key(local))
        .and_then(|b| b.build_responder())
        .map_err(|_| SessionError::Handshake)?;
    let mut payload = [0u8; MAX_HANDSHAKE];
    let n = hs
        .read_message(msg1, &mut payload)
        .map_err(|_| SessionError::Handshake)?;
    let origin = x25519_public(&rid.origin).ok_or(SessionError::NotOrigin)?;
    if hs.get_remote_static() != Some(&origin[..]) {
        return Err(SessionError::NotOrigin);
    }
    let got = payload.get(..n).ok_or(SessionError::Binding)?;
    let (bind, origin_aes) = match got {
        [b @ .., f] if b.len() == 32 && *f <= 1 => (b, *f == 1),
        _ => return Err(SessionError::Binding),
    };
    if *bind != binding(rid, path) {
        return Err(SessionError::Binding);
    }
    let cipher = if aes && origin_aes {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    };
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    let n = hs
        .write_message(&self::payload(rid, path, cipher_code(cipher)), &mut buf)
        .map_err(|_| SessionError::Handshake)?;
    buf.truncate(n);
    let (i2r, r2i, ctrl) = split(hs)?;
    Ok((
        RouteKeys {
            cipher,
            tx: r2i,
            rx: i2r,
            ctrl,
        },
        buf,
    ))
}

/// Origin: checks the egress's answer and derives the route's keys.
pub fn finish(
    init: Initiator,
    rid: &RouteId,
    path: &[NodeId],
    msg2: &[u8],
) -> Result<RouteKeys, SessionError> {
    if msg2.len() > MAX_HANDSHAKE {
        return Err(SessionError::Handshake);
    }
    let mut hs = init.hs;
    let mut payload = [0u8; MAX_HANDSHAKE];
    let n = hs
        .read_message(msg2, &mut payload)
        .map_err(|_| SessionError::Handshake)?;
    let got = payload.get(..n).ok_or(SessionError::Binding)?;
    let cipher = match got {
        [b @ .., 1] if b.len() == 32 => Cipher::Aes256Gcm,
        [b @ .., 2] if b.len() == 32 => Cipher::ChaCha20Poly1305,
        _ => return Err(SessionError::Binding),
    };
    if got[..32] != binding(rid, path) {
        return Err(SessionError::Binding);
    }
    let (i2r, r2i, ctrl) = split(hs)?;
    Ok(RouteKeys {
        cipher,
        tx: i2r,
        rx: r2i,
        ctrl,
    })
}

/// (initiator -> responder, responder -> initiator, control) keys.
type SplitKeys = ([u8; 32], [u8; 32], [u8; 32]);

/// The keys of a finished handshake, each expanded from Noise's split with its own label.
fn split(mut hs: snow::HandshakeState) -> Result<SplitKeys, SessionError> {
    if !hs.is_handshake_finished() {
        return Err(SessionError::Handshake);
    }
    let hash = hs.get_handshake_hash().to_vec();
    let (k1, k2) = hs.dangerously_get_raw_split();
    let expand = |k: &[u8], label: &[u8]| {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &hash).extract(k);
        let mut out = [0u8; 32];
        // 32 bytes from HKDF-SHA256 cannot fail (its limit is 255 * 32).
        if let Ok(okm) = prk.expand(&[label], hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    };
    Ok((
        expand(&k1, b"skywire route data i2r"),
        expand(&k2, b"skywire route data r2i"),
        expand(&k1, b"skywire route control"),
    ))
}

/// The MAC of a route control message: HMAC-SHA256 with the route's control key over the
/// message type, the route id and the sender's sequence number, cut to [`MAC_LEN`].
pub fn control_mac(ctrl: &[u8; 32], kind: u8, rid: &RouteId, seq: u64) -> [u8; MAC_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, ctrl);
    let mut m = [0u8; 1 + 32 + 8 + 8];
    m[0] = kind;
    m[1..33].copy_from_slice(&rid.origin.0);
    m[33..41].copy_from_slice(&rid.counter.to_be_bytes());
    m[41..49].copy_from_slice(&seq.to_be_bytes());
    let tag = hmac::sign(&key, &m);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    out
}

/// Whether `mac` is right, in constant time.
pub fn check_mac(ctrl: &[u8; 32], kind: u8, rid: &RouteId, seq: u64, mac: &[u8; MAC_LEN]) -> bool {
    let want = control_mac(ctrl, kind, rid, seq);
    // Every byte is compared whatever the first difference: no timing oracle for a forger.
    want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Route ids an egress accepts per origin: a window of counters, as a data replay window
/// (WireGuard's initiation timestamps do this job there). A Setup whose counter is at or
/// below the window, or already seen in it, is a replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupWindow {
    top: u64,
    seen: u64,
}

impl SetupWindow {
    /// Counters this far below the highest seen are still accepted once (setups of one origin
    /// arrive out of order over different paths: primaries, backups, replacements).
    pub const WIDTH: u64 = 64;

    /// Whether counter `c` is new; if so it is marked seen.
    pub fn accept(&mut self, c: u64) -> bool {
        if self.top == 0 && self.seen == 0 {
            self.top = c;
            self.seen = 1;
            return true;
        }
        if c > self.top {
            let shift = c - self.top;
            self.seen = if shift >= Self::WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = c;
            return true;
        }
        let back = self.top - c;
        if back >= Self::WIDTH {
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::advert::keypair_from_seed;
    use super::*;

    fn node(n: u8) -> ([u8; 32], NodeId) {
        let seed = [n; 32];
        (x25519_private(&seed), keypair_from_seed(&seed).1)
    }

    #[test]
    fn both_ends_agree_and_only_the_origin_can_start() {
        let (sa, a) = node(1);
        let (sc, c) = node(3);
        let (sm, _m) = node(9);
        let path = vec![a, node(2).1, c];
        let rid = RouteId {
            origin: a,
            counter: 7,
        };
        let (init, m1) = initiate(&sa, &c, &rid, &path, true).unwrap();
        assert!(m1.len() <= MAX_HANDSHAKE);
        let (kc, m2) = respond(&sc, &rid, &path, &m1, true).unwrap();
        let ka = finish(init, &rid, &path, &m2).unwrap();
        assert_eq!((ka.tx, ka.rx, ka.ctrl), (kc.rx, kc.tx, kc.ctrl));
        assert_eq!(
            (ka.cipher, kc.cipher),
            (Cipher::Aes256Gcm, Cipher::Aes256Gcm)
        );
        // AES only when both ends have it.
        for (oa, ea) in [(false, true), (true, false), (false, false)] {
            let (init, m1) = initiate(&sa, &c, &rid, &path, oa).unwrap();
            let (kc, m2) = respond(&sc, &rid, &path, &m1, ea).unwrap();
            let ka = finish(init, &rid, &path, &m2).unwrap();
            assert_eq!(ka.cipher, Cipher::ChaCha20Poly1305);
            assert_eq!(kc.cipher, Cipher::ChaCha20Poly1305);
        }
        assert_ne!(ka.tx, ka.rx);
        // A neighbour with its own key claiming a's route: refused.
        let (_, forged) = initiate(&sm, &c, &rid, &path, true).unwrap();
        assert_eq!(
            respond(&sc, &rid, &path, &forged, true).unwrap_err(),
            SessionError::NotOrigin
        );
        // a's genuine message moved to another route id or path: refused.
        let other = RouteId {
            origin: a,
            counter: 8,
        };
        assert_eq!(
            respond(&sc, &other, &path, &m1, true).unwrap_err(),
            SessionError::Binding
        );
        let detour = vec![a, node(4).1, c];
        assert_eq!(
            respond(&sc, &rid, &detour, &m1, true).unwrap_err(),
            SessionError::Binding
        );
        // Modified, truncated or oversized bytes, or another egress: refused, never a panic.
        for i in 0..m1.len() {
            let mut bad = m1.clone();
            bad[i] ^= 0x40;
            assert!(respond(&sc, &rid, &path, &bad, true).is_err(), "byte {i}");
        }
        assert!(respond(&sc, &rid, &path, &m1[..m1.len() - 1], true).is_err());
        assert!(respond(&sc, &rid, &path, &[0u8; MAX_HANDSHAKE + 1], true).is_err());
        assert!(respond(&sm, &rid, &path, &m1, true).is_err());
        // A forged answer does not finish the origin's handshake.
        let (init, _) = initiate(&sa, &c, &rid, &path, true).unwrap();
        let mut bad = m2.clone();
        bad[5] ^= 1;
        assert!(finish(init, &rid, &path, &bad).is_err());
    }

    #[test]
    fn control_macs_bind_key_kind_route_and_sequence() {
        let rid = RouteId {
            origin: node(1).1,
            counter: 1,
        };
        let k = [5u8; 32];
        let m = control_mac(&k, 5, &rid, 9);
        assert!(check_mac(&k, 5, &rid, 9, &m));
        assert!(!check_mac(&k, 5, &rid, 10, &m));
        assert!(!check_mac(&k, 6, &rid, 9, &m));
        assert!(!check_mac(&[6u8; 32], 5, &rid, 9, &m));
        let other = RouteId { counter: 2, ..rid };
        assert!(!check_mac(&k, 5, &other, 9, &m));
    }

    #[test]
    fn the_setup_window_takes_each_counter_once_and_refuses_old_ones() {
        let mut w = SetupWindow::default();
        assert!(w.accept(1000));
        assert!(!w.accept(1000), "replay");
        assert!(w.accept(1002));
        assert!(w.accept(1001), "out of order within the window");
        assert!(!w.accept(1001));
        assert!(w.accept(1002 + SetupWindow::WIDTH));
        assert!(!w.accept(1002), "fell out of the window");
        assert!(!w.accept(3), "far below");
    }
}
