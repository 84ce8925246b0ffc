//! Link-state adverts: structure, canonical encoding, Ed25519 signatures.
//!
//! Wire/canonical body (all integers big-endian):
//! ```text
//! origin[32] seq:u64 lifetime_ms:u32 flags:u8
//! n_links:u16 { neighbour[32] cost_us:u32 }*   (strictly ascending by neighbour, no self link)
//! n_services:u8 { len:u8 utf8[len] }*
//! sig[64]
//! ```
//! The signature covers `ADVERT_DOMAIN || body` (everything before `sig`).
//! Decoding rejects every non-canonical form, so `decode(b).encode() == b`.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

use super::codec::{DecodeError, Reader};
use super::types::NodeId;

/// Domain separation tag prefixed to the signed bytes.
pub const ADVERT_DOMAIN: &[u8] = b"nm-advert-v1\0";
/// Most links one advert may carry.
pub const MAX_LINKS: usize = 512;
/// Most service names one advert may carry.
pub const MAX_SERVICES: usize = 32;
/// Longest service name, in bytes.
pub const MAX_SERVICE_LEN: usize = 64;
/// Largest encoded advert (body + signature).
pub const MAX_ADVERT_BYTES: usize =
    32 + 8 + 4 + 1 + 2 + MAX_LINKS * 36 + 1 + MAX_SERVICES * (1 + MAX_SERVICE_LEN) + 64;

/// Policy flags carried in an advert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvertFlags {
    /// Never use this node as an intermediate hop for new routes.
    pub no_transit: bool,
    /// Like `no_transit`, and existing routes through it should move away.
    pub drain: bool,
}

impl AdvertFlags {
    fn to_byte(self) -> u8 {
        u8::from(self.no_transit) | (u8::from(self.drain) << 1)
    }
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        if b & !0b11 != 0 {
            return Err(DecodeError::UnknownFlags);
        }
        Ok(Self {
            no_transit: b & 1 != 0,
            drain: b & 2 != 0,
        })
    }
    /// May this node be an intermediate hop of a new route?
    pub fn transit_ok(self) -> bool {
        !self.no_transit && !self.drain
    }
}

/// A signed link-state advert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub origin: NodeId,
    pub seq: u64,
    pub lifetime_ms: u32,
    /// (neighbour, cost in microseconds), strictly ascending by neighbour.
    pub links: Vec<(NodeId, u32)>,
    pub flags: AdvertFlags,
    pub services: Vec<String>,
    pub sig: [u8; 64],
}

impl Advert {
    /// Build and sign an advert. Links are sorted, deduplicated (first cost
    /// wins), self links dropped and the lists truncated to the limits, so
    /// the result always encodes canonically.
    pub fn new_signed(
        key: &Ed25519KeyPair,
        origin: NodeId,
        seq: u64,
        lifetime_ms: u32,
        mut links: Vec<(NodeId, u32)>,
        flags: AdvertFlags,
        services: &[String],
    ) -> Self {
        links.retain(|(n, _)| *n != origin);
        links.sort_by_key(|a| a.0);
        links.dedup_by(|a, b| a.0 == b.0);
        links.truncate(MAX_LINKS);
        let services: Vec<String> = services
            .iter()
            .filter(|s| s.len() <= MAX_SERVICE_LEN)
            .take(MAX_SERVICES)
            .cloned()
            .collect();
        let mut adv = Self {
            origin,
            seq,
            lifetime_ms,
            links,
            flags,
            services,
            sig: [0; 64],
        };
        let msg = adv.signed_bytes();
        let sig = key.sign(&msg);
        adv.sig.copy_from_slice(sig.as_ref());
        adv
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.origin.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.lifetime_ms.to_be_bytes());
        out.push(self.flags.to_byte());
        // Lengths are bounded by MAX_LINKS / MAX_SERVICES / MAX_SERVICE_LEN
        // for every advert built by `new_signed` or `decode`; `min` keeps a
        // hand-built oversized advert from wrapping (it then fails decoding).
        let nl = self.links.len().min(u16::MAX as usize) as u16;
        out.extend_from_slice(&nl.to_be_bytes());
        for (n, c) in self.links.iter().take(nl as usize) {
            out.extend_from_slice(&n.0);
            out.extend_from_slice(&c.to_be_bytes());
        }
        let ns = self.services.len().min(u8::MAX as usize) as u8;
        out.push(ns);
        for s in self.services.iter().take(ns as usize) {
            let b = s.as_bytes();
            let l = b.len().min(u8::MAX as usize);
            out.push(l as u8);
            out.extend_from_slice(&b[..l]);
        }
    }

    /// The bytes covered by the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ADVERT_DOMAIN.len() + 64 + self.links.len() * 36);
        out.extend_from_slice(ADVERT_DOMAIN);
        self.encode_body(&mut out);
        out
    }

    /// Append the wire encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        out.extend_from_slice(&self.sig);
    }

    /// Wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 64 + self.links.len() * 36);
        self.encode_into(&mut out);
        out
    }

    /// Decode exactly one advert occupying all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let a = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(a)
    }

    /// Decode an advert from a reader (the signature is not checked).
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.remaining() > MAX_ADVERT_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let origin = r.id()?;
        let seq = r.u64()?;
        let lifetime_ms = r.u32()?;
        let flags = AdvertFlags::from_byte(r.u8()?)?;
        let nl = r.u16()? as usize;
        if nl > MAX_LINKS {
            return Err(DecodeError::TooMany);
        }
        let mut links: Vec<(NodeId, u32)> = Vec::with_capacity(nl.min(r.remaining() / 36));
        for _ in 0..nl {
            let n = r.id()?;
            let c = r.u32()?;
            if n == origin {
                return Err(DecodeError::NonCanonical);
            }
            if let Some((last, _)) = links.last()
                && *last >= n
            {
                return Err(DecodeError::NonCanonical);
            }
            links.push((n, c));
        }
        let ns = r.u8()? as usize;
        if ns > MAX_SERVICES {
            return Err(DecodeError::TooMany);
        }
        let mut services = Vec::with_capacity(ns);
        for _ in 0..ns {
            let l = r.u8()? as usize;
            if l > MAX_SERVICE_LEN {
                return Err(DecodeError::TooLarge);
            }
            let b = r.bytes(l)?;
            let s = std::str::from_utf8(b).map_err(|_| DecodeError::BadUtf8)?;
            services.push(s.to_owned());
        }
        let mut sig = [0u8; 64];
        sig.copy_from_slice(r.bytes(64)?);
        Ok(Self {
            origin,
            seq,
            lifetime_ms,
            links,
            flags,
            services,
            sig,
        })
    }

    /// An all-zero signature: the advert was never signed.
    pub fn is_unsigned(&self) -> bool {
        self.sig.iter().all(|b| *b == 0)
    }

    /// Check the origin's signature.
    pub fn verify(&self) -> bool {
        let msg = self.signed_bytes();
        UnparsedPublicKey::new(&ED25519, &self.origin.0[..])
            .verify(&msg, &self.sig)
            .is_ok()
    }

    /// Cost this advert reports towards `nb`, if it lists it.
    pub fn cost_to(&self, nb: &NodeId) -> Option<u32> {
        self.links
            .binary_search_by(|(n, _)| n.cmp(nb))
            .ok()
            .map(|i| self.links[i].1)
    }
}

/// Ed25519 key pair from a 32-byte seed, and its public key as a [`NodeId`].
pub fn keypair_from_seed(seed: &[u8; 32]) -> (Ed25519KeyPair, NodeId) {
    use ring::signature::KeyPair;
    // Proof for `expect`: ring's `from_seed_unchecked` fails only when the
    // seed slice is not exactly 32 bytes, which `&[u8; 32]` rules out.
    let kp = Ed25519KeyPair::from_seed_unchecked(seed).expect("32-byte Ed25519 seed");
    let mut id = [0u8; 32];
    id.copy_from_slice(kp.public_key().as_ref());
    (kp, NodeId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn roundtrip_and_verify() {
        let (kp, id) = keypair_from_seed(&seed(1));
        let (_, other) = keypair_from_seed(&seed(2));
        let a = Advert::new_signed(
            &kp,
            id,
            7,
            60_000,
            vec![(other, 1500)],
            AdvertFlags {
                no_transit: true,
                drain: false,
            },
            &["dns".to_string()],
        );
        assert!(a.verify());
        let b = a.encode();
        let d = Advert::decode(&b).unwrap();
        assert_eq!(d, a);
        assert_eq!(d.encode(), b);
        assert_eq!(d.cost_to(&other), Some(1500));
        let mut forged = d.clone();
        forged.links[0].1 = 1;
        assert!(!forged.verify());
    }

    #[test]
    fn non_canonical_rejected() {
        let (kp, id) = keypair_from_seed(&seed(1));
        let a = Advert::new_signed(
            &kp,
            id,
            1,
            1000,
            vec![(NodeId([3; 32]), 1), (NodeId([2; 32]), 2)],
            AdvertFlags::default(),
            &[],
        );
        // new_signed sorts: canonical.
        assert!(Advert::decode(&a.encode()).is_ok());
        let mut bad = a.clone();
        bad.links.swap(0, 1);
        assert_eq!(
            Advert::decode(&bad.encode()),
            Err(DecodeError::NonCanonical)
        );
        let mut trailing = a.encode();
        trailing.push(0);
        assert_eq!(Advert::decode(&trailing), Err(DecodeError::Trailing));
    }
}
