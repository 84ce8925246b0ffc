//! Messages between messenger clients and servers, carried one per encrypted frame.
//!
//! Every message starts with [`VERSION`] and a type byte; big-endian integers.
//! ```text
//! client -> server                       server -> client
//!  1 Register  record                     0x81 Registered  pk [32] | seq u64
//!  2 Lookup    pk [32]                    0x82 Found       record
//!  3 Query     kind_len u8 | kind         0x83 NotFound    pk [32]
//!  4 Relay     to [32] | len u16 | bytes  0x84 Services    kind_len u8 | kind | truncated u8
//!                                                          | n u8 | n * (len u16 | record)
//!                                         0x85 Relayed     from [32] | len u16 | bytes
//!                                         0x86 Error       code u8 | 0 or 1 | pk [32]
//! ```
//! Decoding is total: any input gives a message or a [`DecodeError`], never a panic.

use super::codec::{DecodeError, Reader, put_bytes16, put_str8};
use super::record::{MAX_KIND, MAX_RECORD_LEN, Record};
use crate::identity::NodeId;

/// Protocol version, the first byte of every message.
pub const VERSION: u8 = 1;
/// Largest relayed payload.
pub const MAX_RELAY: usize = 1024;
/// Most records in one [`Msg::Services`] answer.
pub const MAX_QUERY_RESULTS: usize = 8;
/// Largest message (a Noise transport message is at most 65535 bytes including its 16-byte tag).
pub const MAX_MSG_LEN: usize = 65535 - 16;

const T_REGISTER: u8 = 1;
const T_LOOKUP: u8 = 2;
const T_QUERY: u8 = 3;
const T_RELAY: u8 = 4;
const T_REGISTERED: u8 = 0x81;
const T_FOUND: u8 = 0x82;
const T_NOT_FOUND: u8 = 0x83;
const T_SERVICES: u8 = 0x84;
const T_RELAYED: u8 = 0x85;
const T_ERROR: u8 = 0x86;

/// Why a server rejected a request (sent in [`Msg::Error`] and counted by reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reject {
    /// The request did not decode.
    Malformed = 1,
    /// A valid message that a server does not accept (a server-to-client type).
    Unexpected = 2,
    /// The record's signature does not verify.
    BadSignature = 3,
    /// The record carries no signature (all zeroes).
    Unsigned = 4,
    /// The record is for another key than the authenticated sender.
    WrongSigner = 5,
    /// The record's seq is older than the one held.
    Stale = 6,
    /// The record's seq equals the one held (a replay or a re-use).
    Replay = 7,
    /// Too many requests from this client.
    RateLimited = 8,
    /// TTL zero or above the server's maximum.
    BadTtl = 9,
    /// The server holds as many records (or clients) as it may.
    Full = 10,
    /// The relay target is not connected.
    Unreachable = 11,
    /// The relayed payload is too large.
    TooLarge = 12,
    /// The client's address already holds as many records as one address may.
    SourceFull = 13,
}

impl Reject {
    /// All reasons, in code order.
    pub const ALL: [Reject; 13] = [
        Reject::Malformed,
        Reject::Unexpected,
        Reject::BadSignature,
        Reject::Unsigned,
        Reject::WrongSigner,
        Reject::Stale,
        Reject::Replay,
        Reject::RateLimited,
        Reject::BadTtl,
        Reject::Full,
        Reject::Unreachable,
        Reject::TooLarge,
        Reject::SourceFull,
    ];

    /// From its wire code.
    pub fn from_code(c: u8) -> Option<Reject> {
        Reject::ALL.iter().copied().find(|r| *r as u8 == c)
    }

    /// Index into a counter array (0-based).
    pub fn index(self) -> usize {
        usize::from(self as u8 - 1)
    }
}

/// A messenger message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Client: publish my record (must be signed by the authenticated client).
    Register(Record),
    /// Client: whose record is `pk`?
    Lookup {
        /// Wanted.
        pk: NodeId,
    },
    /// Client: which nodes offer services of `kind`?
    Query {
        /// Service kind.
        kind: String,
    },
    /// Client: deliver `bytes` to `to`.
    Relay {
        /// Target.
        to: NodeId,
        /// Payload, at most [`MAX_RELAY`].
        bytes: Vec<u8>,
    },
    /// Server: the record `pk`/`seq` is registered.
    Registered {
        /// Whose.
        pk: NodeId,
        /// Which.
        seq: u64,
    },
    /// Server: the record asked for.
    Found(Record),
    /// Server: no record for `pk`.
    NotFound {
        /// Asked for.
        pk: NodeId,
    },
    /// Server: records offering `kind`.
    Services {
        /// Asked for.
        kind: String,
        /// At most [`MAX_QUERY_RESULTS`].
        records: Vec<Record>,
        /// Whether more records matched than were sent.
        truncated: bool,
    },
    /// Server: a message relayed from `from`.
    Relayed {
        /// Sender (authenticated by the server).
        from: NodeId,
        /// Payload.
        bytes: Vec<u8>,
    },
    /// Server: a request was rejected.
    Error {
        /// Why.
        code: Reject,
        /// The record's pk (Register), the target (Relay), the key (Lookup) if any.
        subject: Option<NodeId>,
    },
}

impl Msg {
    /// The wire encoding. Oversized fields (over the decoder's limits) are cut, so such a
    /// message will not decode as the same message; build messages within the limits.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.push(VERSION);
        match self {
            Msg::Register(r) => {
                v.push(T_REGISTER);
                r.encode_into(&mut v);
            }
            Msg::Lookup { pk } => {
                v.push(T_LOOKUP);
                v.extend_from_slice(&pk.0);
            }
            Msg::Query { kind } => {
                v.push(T_QUERY);
                put_str8(&mut v, kind);
            }
            Msg::Relay { to, bytes } => {
                v.push(T_RELAY);
                v.extend_from_slice(&to.0);
                put_bytes16(&mut v, bytes);
            }
            Msg::Registered { pk, seq } => {
                v.push(T_REGISTERED);
                v.extend_from_slice(&pk.0);
                v.extend_from_slice(&seq.to_be_bytes());
            }
            Msg::Found(r) => {
                v.push(T_FOUND);
                r.encode_into(&mut v);
            }
            Msg::NotFound { pk } => {
                v.push(T_NOT_FOUND);
                v.extend_from_slice(&pk.0);
            }
            Msg::Services {
                kind,
                records,
                truncated,
            } => {
                v.push(T_SERVICES);
                put_str8(&mut v, kind);
                v.push(u8::from(*truncated));
                let recs = &records[..records.len().min(MAX_QUERY_RESULTS)];
                v.push(recs.len() as u8);
                for r in recs {
                    let b = r.encode();
                    put_bytes16(&mut v, &b);
                }
            }
            Msg::Relayed { from, bytes } => {
                v.push(T_RELAYED);
                v.extend_from_slice(&from.0);
                put_bytes16(&mut v, bytes);
            }
            Msg::Error { code, subject } => {
                v.push(T_ERROR);
                v.push(*code as u8);
                match subject {
                    Some(pk) => {
                        v.push(1);
                        v.extend_from_slice(&pk.0);
                    }
                    None => v.push(0),
                }
            }
        }
        v
    }

    /// Decodes one message; total.
    pub fn decode(b: &[u8]) -> Result<Msg, DecodeError> {
        if b.len() > MAX_MSG_LEN {
            return Err(DecodeError::Limit);
        }
        let mut r = Reader::new(b);
        let ver = r.u8()?;
        if ver != VERSION {
            return Err(DecodeError::Version(ver));
        }
        let msg = match r.u8()? {
            T_REGISTER => Msg::Register(Record::read(&mut r)?),
            T_LOOKUP => Msg::Lookup {
                pk: NodeId(r.array()?),
            },
            T_QUERY => Msg::Query {
                kind: r.str8(MAX_KIND)?,
            },
            // Over-long relays decode so the server can reject them as `TooLarge`.
            T_RELAY => Msg::Relay {
                to: NodeId(r.array()?),
                bytes: r.bytes16(usize::from(u16::MAX))?,
            },
            T_REGISTERED => Msg::Registered {
                pk: NodeId(r.array()?),
                seq: r.u64()?,
            },
            T_FOUND => Msg::Found(Record::read(&mut r)?),
            T_NOT_FOUND => Msg::NotFound {
                pk: NodeId(r.array()?),
            },
            T_SERVICES => {
                let kind = r.str8(MAX_KIND)?;
                let truncated = match r.u8()? {
                    0 => false,
                    1 => true,
                    t => return Err(DecodeError::Tag(t)),
                };
                let n = usize::from(r.u8()?);
                if n > MAX_QUERY_RESULTS {
                    return Err(DecodeError::Limit);
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let b = r.bytes16(MAX_RECORD_LEN)?;
                    records.push(Record::decode(&b)?);
                }
                Msg::Services {
                    kind,
                    records,
                    truncated,
                }
            }
            T_RELAYED => Msg::Relayed {
                from: NodeId(r.array()?),
                bytes: r.bytes16(MAX_RELAY)?,
            },
            T_ERROR => {
                let c = r.u8()?;
                let code = Reject::from_code(c).ok_or(DecodeError::Tag(c))?;
                let subject = match r.u8()? {
                    0 => None,
                    1 => Some(NodeId(r.array()?)),
                    t => return Err(DecodeError::Tag(t)),
                };
                Msg::Error { code, subject }
            }
            t => return Err(DecodeError::Tag(t)),
        };
        r.finish()?;
        debug_assert!(r.remaining().is_empty());
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::arb_record;
    use super::*;
    use proptest::prelude::*;

    fn arb_pk() -> impl Strategy<Value = NodeId> {
        any::<[u8; 32]>().prop_map(NodeId)
    }

    fn arb_msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            arb_record().prop_map(Msg::Register),
            arb_pk().prop_map(|pk| Msg::Lookup { pk }),
            "[a-z]{0,32}".prop_map(|kind| Msg::Query { kind }),
            (
                arb_pk(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_RELAY)
            )
                .prop_map(|(to, bytes)| Msg::Relay { to, bytes }),
            (arb_pk(), any::<u64>()).prop_map(|(pk, seq)| Msg::Registered { pk, seq }),
            arb_record().prop_map(Msg::Found),
            arb_pk().prop_map(|pk| Msg::NotFound { pk }),
            (
                "[a-z]{0,32}",
                proptest::collection::vec(arb_record(), 0..=MAX_QUERY_RESULTS),
                any::<bool>()
            )
                .prop_map(|(kind, records, truncated)| Msg::Services {
                    kind,
                    records,
                    truncated
                }),
            (
                arb_pk(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_RELAY)
            )
                .prop_map(|(from, bytes)| Msg::Relayed { from, bytes }),
            (
                proptest::sample::select(Reject::ALL.to_vec()),
                proptest::option::of(arb_pk())
            )
                .prop_map(|(code, subject)| Msg::Error { code, subject }),
        ]
    }

    #[test]
    fn reject_codes_round_trip_and_index_densely() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(Reject::from_code(*r as u8), Some(*r));
            assert_eq!(r.index(), i);
        }
        assert_eq!(Reject::from_code(0), None);
        assert_eq!(Reject::from_code(Reject::ALL.len() as u8 + 1), None);
    }

    #[test]
    fn version_and_type_are_checked() {
        let m = Msg::Lookup {
            pk: NodeId([1; 32]),
        }
        .encode();
        let mut bad = m.clone();
        bad[0] = 2;
        assert_eq!(Msg::decode(&bad), Err(DecodeError::Version(2)));
        bad = m.clone();
        bad[1] = 0x7f;
        assert_eq!(Msg::decode(&bad), Err(DecodeError::Tag(0x7f)));
        assert_eq!(Msg::decode(&[]), Err(DecodeError::Truncated));
        // A relayed payload over the limit is refused by the decoder.
        let mut over = vec![VERSION, 0x85];
        over.extend_from_slice(&[0; 32]);
        over.extend_from_slice(&((MAX_RELAY + 1) as u16).to_be_bytes());
        over.extend_from_slice(&[0; MAX_RELAY + 1]);
        assert_eq!(Msg::decode(&over), Err(DecodeError::Limit));
    }

    #[test]
    fn largest_services_answer_fits_a_frame() {
        // 8 maximal records in a Services answer stay under a Noise frame.
        let worst = 2 + 1 + MAX_KIND + 1 + 1 + MAX_QUERY_RESULTS * (2 + MAX_RECORD_LEN);
        assert!(worst <= MAX_MSG_LEN, "{worst}");
    }

    proptest! {
        #[test]
        fn msg_round_trips(m in arb_msg()) {
            let b = m.encode();
            prop_assert_eq!(Msg::decode(&b), Ok(m));
            for n in 0..b.len().min(40) {
                prop_assert!(Msg::decode(&b[..n]).is_err());
            }
        }

        #[test]
        fn msg_decode_of_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(m) = Msg::decode(&b) {
                prop_assert_eq!(m.encode(), b);
            }
        }

        #[test]
        fn msg_decode_of_garbage_with_valid_header_never_panics(
            t in prop_oneof![1u8..=4, 0x81u8..=0x86],
            rest in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut b = vec![VERSION, t];
            b.extend_from_slice(&rest);
            if let Ok(m) = Msg::decode(&b) {
                prop_assert_eq!(m.encode(), b);
            }
        }

        #[test]
        fn msg_decode_of_mutated_msg_never_panics(m in arb_msg(), i in any::<usize>(), x in any::<u8>()) {
            let mut b = m.encode();
            let n = b.len();
            b[i % n] ^= x;
            if let Ok(d) = Msg::decode(&b) {
                prop_assert_eq!(d.encode(), b);
            }
        }
    }
}
