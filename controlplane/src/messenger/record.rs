//! Signed records: what a node publishes about itself (control endpoints and services), signed
//! with its Ed25519 key over a canonical encoding with a domain tag.
//!
//! Encoding (big-endian), which is also what is signed after [`RECORD_DOMAIN`]:
//! ```text
//! pk [32] | seq u64 | ttl_ms u32
//! | n_endpoints u8 | n * (4 | ip [4] | port u16  or  6 | ip [16] | port u16)
//! | n_services u8  | n * (kind_len u8 | kind | port u16 | meta_len u8 | meta)
//! ```
//! followed by `sig [64]` on the wire. The encoding has no slack (one tag per family, exact
//! lengths, no trailing bytes), so a decoded record re-encodes to the same bytes.

use super::codec::{DecodeError, Reader, put_addr, put_str8};
use crate::identity::{Identity, NodeId, PublicKey};
use std::net::SocketAddr;

/// Signed before the record body so a record signature can never be mistaken for any other
/// signature made with the node key.
pub const RECORD_DOMAIN: &[u8] = b"skywire messenger record v1\0";
/// Most endpoints in a record.
pub const MAX_ENDPOINTS: usize = 16;
/// Most services in a record.
pub const MAX_SERVICES: usize = 32;
/// Longest service kind, bytes.
pub const MAX_KIND: usize = 32;
/// Longest service metadata, bytes.
pub const MAX_META: usize = 128;
/// Longest encoded record (with signature).
pub const MAX_RECORD_LEN: usize =
    32 + 8 + 4 + 1 + MAX_ENDPOINTS * 19 + 1 + MAX_SERVICES * (1 + MAX_KIND + 2 + 1 + MAX_META) + 64;

/// A service a node offers (e.g. an app the app tracker finds by kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    /// The service type, e.g. `"vpn"`, `"skychat"`; at most [`MAX_KIND`] bytes.
    pub kind: String,
    /// Its port (meaning is up to the service).
    pub port: u16,
    /// Free-form metadata; at most [`MAX_META`] bytes.
    pub meta: String,
}

/// What a record may not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// More than [`MAX_ENDPOINTS`].
    #[error("too many endpoints")]
    TooManyEndpoints,
    /// More than [`MAX_SERVICES`].
    #[error("too many services")]
    TooManyServices,
    /// A kind longer than [`MAX_KIND`] or empty.
    #[error("bad service kind")]
    BadKind,
    /// Metadata longer than [`MAX_META`].
    #[error("service metadata too long")]
    MetaTooLong,
}

/// A node's signed record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Whose record (and who signed it).
    pub pk: NodeId,
    /// Sequence number; a newer record has a larger one.
    pub seq: u64,
    /// How long the record is valid after a messenger accepts it.
    pub ttl_ms: u32,
    /// Control endpoints (where to reach the node's controlplane).
    pub endpoints: Vec<SocketAddr>,
    /// Services offered.
    pub services: Vec<Service>,
    /// Ed25519 signature by `pk` over [`RECORD_DOMAIN`] ++ body.
    pub sig: [u8; 64],
}

impl Record {
    /// Builds and signs a record for `id`. IPv6 flow info and scope ids are dropped (they are
    /// not part of the encoding).
    pub fn sign(
        id: &Identity,
        seq: u64,
        ttl_ms: u32,
        endpoints: Vec<SocketAddr>,
        services: Vec<Service>,
    ) -> Result<Record, RecordError> {
        let mut r = Record {
            pk: id.id(),
            seq,
            ttl_ms,
            endpoints: endpoints
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), a.port()))
                .collect(),
            services,
            sig: [0; 64],
        };
        r.check_limits()?;
        r.sig = id.sign(&r.signed_bytes());
        Ok(r)
    }

    /// Checks the size limits.
    pub fn check_limits(&self) -> Result<(), RecordError> {
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(RecordError::TooManyEndpoints);
        }
        if self.services.len() > MAX_SERVICES {
            return Err(RecordError::TooManyServices);
        }
        for s in &self.services {
            if s.kind.is_empty() || s.kind.len() > MAX_KIND {
                return Err(RecordError::BadKind);
            }
            if s.meta.len() > MAX_META {
                return Err(RecordError::MetaTooLong);
            }
        }
        Ok(())
    }

    fn put_body(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&self.pk.0);
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.ttl_ms.to_be_bytes());
        let eps = &self.endpoints[..self.endpoints.len().min(MAX_ENDPOINTS)];
        v.push(eps.len() as u8);
        for a in eps {
            put_addr(v, a);
        }
        let svcs = &self.services[..self.services.len().min(MAX_SERVICES)];
        v.push(svcs.len() as u8);
        for s in svcs {
            put_str8(v, &s.kind);
            v.extend_from_slice(&s.port.to_be_bytes());
            put_str8(v, &s.meta);
        }
    }

    /// The bytes the signature covers: [`RECORD_DOMAIN`] ++ body.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(RECORD_DOMAIN);
        self.put_body(&mut v);
        v
    }

    /// Whether `sig` is `pk`'s signature over this record.
    pub fn verify(&self) -> bool {
        self.check_limits().is_ok() && self.pk.verify(&self.signed_bytes(), &self.sig)
    }

    /// Whether the signature is all zeroes (an unsigned record).
    pub fn is_unsigned(&self) -> bool {
        self.sig == [0; 64]
    }

    /// Whether it offers a service of `kind`.
    pub fn offers(&self, kind: &str) -> bool {
        self.services.iter().any(|s| s.kind == kind)
    }

    /// Appends the wire encoding (body ++ sig). Only records within the limits encode
    /// faithfully (over-long lists and strings are cut, which breaks the signature).
    pub fn encode_into(&self, v: &mut Vec<u8>) {
        self.put_body(v);
        v.extend_from_slice(&self.sig);
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        self.encode_into(&mut v);
        v
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Record, DecodeError> {
        let pk = NodeId(r.array()?);
        let seq = r.u64()?;
        let ttl_ms = r.u32()?;
        let ne = usize::from(r.u8()?);
        if ne > MAX_ENDPOINTS {
            return Err(DecodeError::Limit);
        }
        let mut endpoints = Vec::with_capacity(ne);
        for _ in 0..ne {
            endpoints.push(r.addr()?);
        }
        let ns = usize::from(r.u8()?);
        if ns > MAX_SERVICES {
            return Err(DecodeError::Limit);
        }
        let mut services = Vec::with_capacity(ns);
        for _ in 0..ns {
            let kind = r.str8(MAX_KIND)?;
            if kind.is_empty() {
                return Err(DecodeError::Limit);
            }
            let port = r.u16()?;
            let meta = r.str8(MAX_META)?;
            services.push(Service { kind, port, meta });
        }
        let sig = r.array()?;
        Ok(Record {
            pk,
            seq,
            ttl_ms,
            endpoints,
            services,
            sig,
        })
    }

    /// Decodes exactly one record; total (never panics). Does not verify the signature.
    pub fn decode(b: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader::new(b);
        let rec = Record::read(&mut r)?;
        r.finish()?;
        Ok(rec)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((a, p))),
        ]
    }

    pub(crate) fn arb_service() -> impl Strategy<Value = Service> {
        ("[a-z]{1,32}", any::<u16>(), "\\PC{0,30}")
            .prop_filter("meta length", |(_, _, m)| m.len() <= MAX_META)
            .prop_map(|(kind, port, meta)| Service { kind, port, meta })
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(arb_addr(), 0..=MAX_ENDPOINTS),
            proptest::collection::vec(arb_service(), 0..=4),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(pk, seq, ttl_ms, endpoints, services, s1, s2)| {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&s1);
                sig[32..].copy_from_slice(&s2);
                Record {
                    pk: NodeId(pk),
                    seq,
                    ttl_ms,
                    endpoints,
                    services,
                    sig,
                }
            })
    }

    fn svc(kind: &str) -> Service {
        Service {
            kind: kind.into(),
            port: 1,
            meta: String::new(),
        }
    }

    #[test]
    fn signed_record_verifies_and_tampering_breaks_it() {
        let id = Identity::from_seed([3; 32]).unwrap();
        let r = Record::sign(
            &id,
            7,
            1000,
            vec!["1.2.3.4:5".parse().unwrap()],
            vec![svc("vpn")],
        )
        .unwrap();
        assert!(r.verify());
        assert!(!r.is_unsigned());
        let mut t = r.clone();
        t.seq = 8;
        assert!(!t.verify());
        let mut t = r.clone();
        t.services[0].port = 2;
        assert!(!t.verify());
        let mut t = r.clone();
        t.pk = Identity::from_seed([4; 32]).unwrap().id();
        assert!(!t.verify());
        // The signature is over the domain-tagged encoding, not the bare body.
        let body = &r.encode()[..r.encode().len() - 64];
        assert!(!r.pk.verify(body, &r.sig));
    }

    #[test]
    fn limits_are_enforced_when_signing() {
        let id = Identity::from_seed([3; 32]).unwrap();
        let ep: SocketAddr = "1.2.3.4:5".parse().unwrap();
        assert_eq!(
            Record::sign(&id, 1, 1, vec![ep; MAX_ENDPOINTS + 1], vec![]),
            Err(RecordError::TooManyEndpoints)
        );
        assert_eq!(
            Record::sign(&id, 1, 1, vec![], vec![svc("a"); MAX_SERVICES + 1]),
            Err(RecordError::TooManyServices)
        );
        assert_eq!(
            Record::sign(&id, 1, 1, vec![], vec![svc(&"k".repeat(MAX_KIND + 1))]),
            Err(RecordError::BadKind)
        );
        assert_eq!(
            Record::sign(&id, 1, 1, vec![], vec![svc("")]),
            Err(RecordError::BadKind)
        );
        let full = Record::sign(
            &id,
            1,
            1,
            vec!["[::1]:5".parse().unwrap(); MAX_ENDPOINTS],
            vec![
                Service {
                    kind: "k".repeat(MAX_KIND),
                    port: 9,
                    meta: "m".repeat(MAX_META)
                };
                MAX_SERVICES
            ],
        )
        .unwrap();
        assert_eq!(full.encode().len(), MAX_RECORD_LEN);
        assert_eq!(Record::decode(&full.encode()).unwrap(), full);
    }

    proptest! {
        #[test]
        fn record_round_trips(r in arb_record()) {
            let b = r.encode();
            prop_assert_eq!(Record::decode(&b), Ok(r.clone()));
            prop_assert_eq!(Record::decode(&b).map(|d| d.encode()), Ok(b.clone()));
            // Any strict prefix is truncated, never a panic or a different record.
            for n in [0, b.len() / 2, b.len() - 1] {
                prop_assert!(Record::decode(&b[..n]).is_err());
            }
            let mut longer = b.clone();
            longer.push(0);
            prop_assert_eq!(Record::decode(&longer), Err(DecodeError::Trailing));
        }

        #[test]
        fn record_decode_of_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(r) = Record::decode(&b) {
                prop_assert_eq!(r.encode(), b);
            }
        }

        #[test]
        fn record_decode_of_mutated_record_never_panics(r in arb_record(), i in any::<usize>(), x in any::<u8>()) {
            let mut b = r.encode();
            let n = b.len();
            b[i % n] ^= x;
            if let Ok(d) = Record::decode(&b) {
                prop_assert_eq!(d.encode(), b);
            }
        }
    }
}
