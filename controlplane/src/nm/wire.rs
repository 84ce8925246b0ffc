//! Controlplane messages exchanged between neighbours.
//!
//! Every message starts with `VERSION:u8 TYPE:u8`. Decoding is total: any
//! byte string yields `Ok(msg)` or `Err(DecodeError)`, never a panic, and
//! non-canonical encodings (trailing bytes, unsorted links, ...) are errors.
//! Integers are big endian; `rid` is `origin:[u8;32] counter:u64`.
//!
//! Version 2 (route setups carry the end-to-end handshake of
//! [`super::session`]; version 1 had no `hs`, `seq` or `mac`):
//!
//! | type | name      | fields after the type byte                                        |
//! |------|-----------|-------------------------------------------------------------------|
//! | 1    | Advert    | the signed advert ([`super::advert`])                             |
//! | 2    | LsaAck    | `origin:[u8;32] seq:u64`                                          |
//! | 3    | Setup     | `rid rev_label:u32 n:u8 path:n*[u8;32] hs_len:u16 hs` (n 2..=64, path\[0\] = rid.origin, no repeats; hs <= 256: Noise IK message 1, origin -> egress) |
//! | 4    | SetupAck  | `rid label:u32 hs_len:u16 hs` (hs: Noise IK message 2, egress -> origin, carried unchanged upstream) |
//! | 5    | Keepalive | `rid seq:u64 mac:[u8;16]` (mac: HMAC-SHA256(route control key, 5 \|\| rid \|\| seq)\[..16\]; checked at the egress) |
//! | 6    | Teardown  | `rid upstream:u8` (0 towards the egress, 1 back to the origin)    |

use super::advert::Advert;
pub use super::codec::DecodeError;
use super::codec::Reader;
use super::session::{MAC_LEN, MAX_HANDSHAKE};
use super::types::{NodeId, RouteId};

/// Protocol version byte (2: route setups carry the end-to-end handshake, keepalives a MAC).
pub const VERSION: u8 = 2;
/// Longest route (nodes, including both ends) a Setup may carry.
pub const MAX_PATH: usize = 64;

const T_ADVERT: u8 = 1;
const T_ACK: u8 = 2;
const T_SETUP: u8 = 3;
const T_SETUP_ACK: u8 = 4;
pub(super) const T_KEEPALIVE: u8 = 5;
const T_TEARDOWN: u8 = 6;

/// A controlplane message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A link-state advert being flooded.
    Advert(Advert),
    /// Acknowledges receipt of `origin`'s advert `seq` (stops retransmits).
    LsaAck { origin: NodeId, seq: u64 },
    /// Route setup travelling from the ingress (`path[0]`) to the egress.
    /// `rev_label` is the label the sender allocated for reverse-direction
    /// traffic arriving from the receiver.
    /// `hs` is the origin's first handshake message to the egress (carried unchanged).
    Setup {
        rid: RouteId,
        path: Vec<NodeId>,
        rev_label: u32,
        hs: Vec<u8>,
    },
    /// Travelling back upstream: `label` is the label the sender allocated
    /// for forward traffic arriving from the receiver; `hs` the egress's
    /// answer to the handshake (carried unchanged).
    SetupAck {
        rid: RouteId,
        label: u32,
        hs: Vec<u8>,
    },
    /// Ingress refresh of a route, forwarded hop by hop downstream; `seq`
    /// and `mac` (route control key) let the egress tell the origin's own.
    Keepalive {
        rid: RouteId,
        seq: u64,
        mac: [u8; MAC_LEN],
    },
    /// Remove route state. `upstream == false`: travelling from the ingress
    /// side towards the egress; `true`: an error travelling back to the
    /// ingress (broken link, unknown route, refused setup).
    Teardown { rid: RouteId, upstream: bool },
}

/// A `u16`-length-prefixed handshake message; ours are at most MAX_HANDSHAKE (longer
/// hand-built ones are cut, and then fail to decode at the other end).
fn put_hs(out: &mut Vec<u8>, hs: &[u8]) {
    let n = hs.len().min(MAX_HANDSHAKE);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&hs[..n]);
}

fn read_hs(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > MAX_HANDSHAKE {
        return Err(DecodeError::TooLarge);
    }
    Ok(r.bytes(n)?.to_vec())
}

fn put_rid(out: &mut Vec<u8>, rid: &RouteId) {
    out.extend_from_slice(&rid.origin.0);
    out.extend_from_slice(&rid.counter.to_be_bytes());
}

impl Msg {
    /// Short name of the message type, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Advert(_) => "advert",
            Msg::LsaAck { .. } => "ack",
            Msg::Setup { .. } => "setup",
            Msg::SetupAck { .. } => "setup_ack",
            Msg::Keepalive { .. } => "keepalive",
            Msg::Teardown { .. } => "teardown",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        match self {
            Msg::Advert(a) => {
                out.push(T_ADVERT);
                a.encode_into(&mut out);
            }
            Msg::LsaAck { origin, seq } => {
                out.push(T_ACK);
                out.extend_from_slice(&origin.0);
                out.extend_from_slice(&seq.to_be_bytes());
            }
            Msg::Setup {
                rid,
                path,
                rev_label,
                hs,
            } => {
                out.push(T_SETUP);
                put_rid(&mut out, rid);
                out.extend_from_slice(&rev_label.to_be_bytes());
                // Paths we build are at most MAX_PATH long; `min` guards the
                // cast for hand-built messages (which then fail to decode).
                let n = path.len().min(u8::MAX as usize);
                out.push(n as u8);
                for n in path.iter().take(n) {
                    out.extend_from_slice(&n.0);
                }
                put_hs(&mut out, hs);
            }
            Msg::SetupAck { rid, label, hs } => {
                out.push(T_SETUP_ACK);
                put_rid(&mut out, rid);
                out.extend_from_slice(&label.to_be_bytes());
                put_hs(&mut out, hs);
            }
            Msg::Keepalive { rid, seq, mac } => {
                out.push(T_KEEPALIVE);
                put_rid(&mut out, rid);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(mac);
            }
            Msg::Teardown { rid, upstream } => {
                out.push(T_TEARDOWN);
                put_rid(&mut out, rid);
                out.push(u8::from(*upstream));
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::BadVersion(v));
        }
        let t = r.u8()?;
        let m = match t {
            T_ADVERT => Msg::Advert(Advert::decode_from(&mut r)?),
            T_ACK => Msg::LsaAck {
                origin: r.id()?,
                seq: r.u64()?,
            },
            T_SETUP => {
                let rid = r.route_id()?;
                let rev_label = r.u32()?;
                let n = r.u8()? as usize;
                if !(2..=MAX_PATH).contains(&n) {
                    return Err(DecodeError::BadPath);
                }
                let mut path = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.id()?;
                    if path.contains(&id) {
                        return Err(DecodeError::BadPath);
                    }
                    path.push(id);
                }
                if path[0] != rid.origin {
                    return Err(DecodeError::BadPath);
                }
                Msg::Setup {
                    rid,
                    path,
                    rev_label,
                    hs: read_hs(&mut r)?,
                }
            }
            T_SETUP_ACK => Msg::SetupAck {
                rid: r.route_id()?,
                label: r.u32()?,
                hs: read_hs(&mut r)?,
            },
            T_KEEPALIVE => {
                let rid = r.route_id()?;
                let seq = r.u64()?;
                let mut mac = [0u8; MAC_LEN];
                mac.copy_from_slice(r.bytes(MAC_LEN)?);
                Msg::Keepalive { rid, seq, mac }
            }
            T_TEARDOWN => {
                let rid = r.route_id()?;
                let upstream = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::NonCanonical),
                };
                Msg::Teardown { rid, upstream }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::advert::{AdvertFlags, keypair_from_seed};
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Msg> {
        let (kp, id) = keypair_from_seed(&[9; 32]);
        let rid = RouteId {
            origin: id,
            counter: 5,
        };
        vec![
            Msg::Advert(Advert::new_signed(
                &kp,
                id,
                3,
                1000,
                vec![(NodeId([1; 32]), 10), (NodeId([2; 32]), 20)],
                AdvertFlags::default(),
                &["a".into()],
            )),
            Msg::LsaAck { origin: id, seq: 3 },
            Msg::Setup {
                rid,
                path: vec![id, NodeId([1; 32]), NodeId([2; 32])],
                rev_label: 77,
                hs: vec![7; 96],
            },
            Msg::SetupAck {
                rid,
                label: 99,
                hs: vec![8; 48],
            },
            Msg::Keepalive {
                rid,
                seq: 4,
                mac: [3; MAC_LEN],
            },
            Msg::Teardown {
                rid,
                upstream: true,
            },
        ]
    }

    #[test]
    fn roundtrip_all() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(Msg::decode(&b).unwrap(), m, "{}", m.kind());
            // Every strict prefix is an error, never a panic.
            for i in 0..b.len() {
                assert!(Msg::decode(&b[..i]).is_err());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decode_total(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Msg::decode(&bytes);
            let _ = Advert::decode(&bytes);
        }

        #[test]
        fn decode_mutated(idx in 0usize..6, pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut b = samples()[idx].encode();
            let p = pos % b.len();
            b[p] = val;
            let c = cut % (b.len() + 1);
            if let Ok(m) = Msg::decode(&b[..c]) {
                // Anything accepted is canonical.
                prop_assert_eq!(m.encode(), b[..c].to_vec());
            }
        }
    }
}
