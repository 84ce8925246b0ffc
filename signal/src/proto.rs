//! The signal messages and their compact binary encoding.
//!
//! Every record is `version: u8 | type: u8 | fields...`, integers little-endian, strings as
//! `u16 length | UTF-8 bytes`. Decoding is total: any byte string gives a message or a
//! [`DecodeError`]; an unknown type is its own error so a receiver can report it and carry on.

use netbase::bytes;
use std::fmt;

/// Encoding version this build writes and reads.
pub const PROTO_VERSION: u8 = 1;
/// Longest string field.
pub const MAX_STR: usize = 16 * 1024;
/// Most counters one usage report carries.
pub const MAX_COUNTERS: usize = 256;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd that was handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn from_u8(v: u8) -> Option<Level> {
        Some(match v {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warn,
            3 => Level::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Resource usage of a component, as it reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    /// CPU use since the previous report (or since start), percent of one core.
    pub cpu_percent: f32,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Thread count.
    pub threads: u32,
    /// Time since the process started.
    pub uptime_ms: u64,
    /// The component's own counters.
    pub counters: Vec<(String, u64)>,
}

/// One signal message.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// Client -> server, first message: readiness.
    Register {
        /// The sequence id viscript gave this client (0 when attaching; the server assigns).
        id: u64,
        /// Component kind, e.g. `skywire-node`.
        kind: String,
        /// The client's process id.
        pid: u32,
        /// The component's version string.
        version: String,
    },
    /// Liveness probe (either direction).
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Answer to [`Msg::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Server -> client: report resource usage.
    UsageRequest {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// Client -> server: the answer to [`Msg::UsageRequest`].
    Usage {
        /// The request's nonce.
        nonce: u64,
        /// The figures.
        usage: Usage,
    },
    /// Server -> client: finish up and exit within `deadline_ms`.
    Shutdown {
        /// Milliseconds the client has before it is sent SIGTERM.
        deadline_ms: u64,
    },
    /// Client -> server: shutdown received, exiting.
    ShutdownAck,
    /// Client -> server: a log line.
    Log {
        /// Severity.
        level: Level,
        /// The text (no trailing newline).
        line: String,
    },
    /// Server -> client: a named inspection (e.g. `routes`, `peers`); answered by
    /// [`Msg::QueryReply`].
    Query {
        /// Echoed.
        nonce: u64,
        /// What to show.
        name: String,
    },
    /// Client -> server: the text of a query's answer (or why there is none).
    QueryReply {
        /// The query's nonce.
        nonce: u64,
        /// Human-readable answer.
        text: String,
    },
    /// Client -> server: something happened worth showing the operator.
    Event {
        /// Short name, e.g. `link-up`.
        name: String,
        /// Free-form detail.
        data: String,
    },
}

mod ty {
    pub const REGISTER: u8 = 1;
    pub const PING: u8 = 2;
    pub const PONG: u8 = 3;
    pub const USAGE_REQ: u8 = 4;
    pub const USAGE: u8 = 5;
    pub const SHUTDOWN: u8 = 6;
    pub const SHUTDOWN_ACK: u8 = 7;
    pub const LOG: u8 = 8;
    pub const EVENT: u8 = 9;
    pub const QUERY: u8 = 10;
    pub const QUERY_REPLY: u8 = 11;
}

/// Why a record is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero-length record.
    #[error("empty record")]
    Empty,
    /// Written by an incompatible encoder.
    #[error("protocol version {0}, this build speaks {PROTO_VERSION}")]
    Version(u8),
    /// A type this build does not know (a newer peer, or garbage).
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A field runs past the end of the record.
    #[error("truncated message")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A string field is not UTF-8 or too long.
    #[error("bad string field")]
    BadString,
    /// A field value is out of its range.
    #[error("bad field value: {0}")]
    BadValue(&'static str),
}

impl From<bytes::Error> for DecodeError {
    fn from(e: bytes::Error) -> Self {
        match e {
            bytes::Error::Truncated => DecodeError::Truncated,
            bytes::Error::Trailing(n) => DecodeError::Trailing(n),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string over [`MAX_STR`] bytes.
    #[error("string field of {0} bytes is over the {MAX_STR}-byte limit")]
    StringTooLong(usize),
    /// More than [`MAX_COUNTERS`] counters.
    #[error("{0} counters is over the limit of {MAX_COUNTERS}")]
    TooManyCounters(usize),
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    if s.len() > MAX_STR {
        return Err(EncodeError::StringTooLong(s.len()));
    }
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Msg {
    /// Appends the encoding of `self` to `out` (which is cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.clear();
        out.push(PROTO_VERSION);
        match self {
            Msg::Register {
                id,
                kind,
                pid,
                version,
            } => {
                out.push(ty::REGISTER);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
                put_str(out, kind)?;
                put_str(out, version)?;
            }
            Msg::Ping { nonce } => {
                out.push(ty::PING);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Msg::Pong { nonce } => {
                out.push(ty::PONG);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Msg::UsageRequest { nonce } => {
                out.push(ty::USAGE_REQ);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Msg::Usage { nonce, usage } => {
                if usage.counters.len() > MAX_COUNTERS {
                    return Err(EncodeError::TooManyCounters(usage.counters.len()));
                }
                out.push(ty::USAGE);
                out.extend_from_slice(&nonce.to_le_bytes());
                out.extend_from_slice(&usage.cpu_percent.to_le_bytes());
                out.extend_from_slice(&usage.rss_bytes.to_le_bytes());
                out.extend_from_slice(&usage.threads.to_le_bytes());
                out.extend_from_slice(&usage.uptime_ms.to_le_bytes());
                out.extend_from_slice(&(usage.counters.len() as u16).to_le_bytes());
                for (name, value) in &usage.counters {
                    put_str(out, name)?;
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
            Msg::Shutdown { deadline_ms } => {
                out.push(ty::SHUTDOWN);
                out.extend_from_slice(&deadline_ms.to_le_bytes());
            }
            Msg::ShutdownAck => out.push(ty::SHUTDOWN_ACK),
            Msg::Log { level, line } => {
                out.push(ty::LOG);
                out.push(*level as u8);
                put_str(out, line)?;
            }
            Msg::Query { nonce, name } => {
                out.push(ty::QUERY);
                out.extend_from_slice(&nonce.to_le_bytes());
                put_str(out, name)?;
            }
            Msg::QueryReply { nonce, text } => {
                out.push(ty::QUERY_REPLY);
                out.extend_from_slice(&nonce.to_le_bytes());
                put_str(out, text)?;
            }
            Msg::Event { name, data } => {
                out.push(ty::EVENT);
                put_str(out, name)?;
                put_str(out, data)?;
            }
        }
        Ok(())
    }

    /// Parses one record.
    pub fn decode(rec: &[u8]) -> Result<Msg, DecodeError> {
        let mut r = Reader(bytes::Reader::new(rec));
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != PROTO_VERSION {
            return Err(DecodeError::Version(version));
        }
        let msg = match r.u8()? {
            ty::REGISTER => {
                let id = r.u64()?;
                let pid = r.u32()?;
                Msg::Register {
                    id,
                    pid,
                    kind: r.str()?,
                    version: r.str()?,
                }
            }
            ty::PING => Msg::Ping { nonce: r.u64()? },
            ty::PONG => Msg::Pong { nonce: r.u64()? },
            ty::USAGE_REQ => Msg::UsageRequest { nonce: r.u64()? },
            ty::USAGE => {
                let nonce = r.u64()?;
                let cpu_percent = f32::from_bits(r.u32()?);
                if !cpu_percent.is_finite() || cpu_percent < 0.0 {
                    return Err(DecodeError::BadValue("cpu_percent"));
                }
                let rss_bytes = r.u64()?;
                let threads = r.u32()?;
                let uptime_ms = r.u64()?;
                let n = r.u16()? as usize;
                if n > MAX_COUNTERS {
                    return Err(DecodeError::BadValue("counter count"));
                }
                let mut counters = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.str()?;
                    counters.push((name, r.u64()?));
                }
                Msg::Usage {
                    nonce,
                    usage: Usage {
                        cpu_percent,
                        rss_bytes,
                        threads,
                        uptime_ms,
                        counters,
                    },
                }
            }
            ty::SHUTDOWN => Msg::Shutdown {
                deadline_ms: r.u64()?,
            },
            ty::SHUTDOWN_ACK => Msg::ShutdownAck,
            ty::LOG => {
                let level = Level::from_u8(r.u8()?).ok_or(DecodeError::BadValue("log level"))?;
                Msg::Log {
                    level,
                    line: r.str()?,
                }
            }
            ty::EVENT => Msg::Event {
                name: r.str()?,
                data: r.str()?,
            },
            ty::QUERY => Msg::Query {
                nonce: r.u64()?,
                name: r.str()?,
            },
            ty::QUERY_REPLY => Msg::QueryReply {
                nonce: r.u64()?,
                text: r.str()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.0.finish()?;
        Ok(msg)
    }
}

/// The signal protocol's reader: the shared byte reader (little endian) plus strings.
struct Reader<'a>(bytes::Reader<'a>);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.0.u8()?)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(self.0.u16_le()?)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.0.u32_le()?)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.0.u64_le()?)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        if n > MAX_STR {
            return Err(DecodeError::BadString);
        }
        let b = self.0.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_str() -> impl Strategy<Value = String> {
        proptest::string::string_regex(".{0,40}").unwrap()
    }

    fn arb_msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (any::<u64>(), arb_str(), any::<u32>(), arb_str()).prop_map(
                |(id, kind, pid, version)| Msg::Register {
                    id,
                    kind,
                    pid,
                    version
                }
            ),
            any::<u64>().prop_map(|nonce| Msg::Ping { nonce }),
            any::<u64>().prop_map(|nonce| Msg::Pong { nonce }),
            any::<u64>().prop_map(|nonce| Msg::UsageRequest { nonce }),
            (
                any::<u64>(),
                0f32..6400.0,
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                proptest::collection::vec((arb_str(), any::<u64>()), 0..8)
            )
                .prop_map(
                    |(nonce, cpu_percent, rss_bytes, threads, uptime_ms, counters)| Msg::Usage {
                        nonce,
                        usage: Usage {
                            cpu_percent,
                            rss_bytes,
                            threads,
                            uptime_ms,
                            counters
                        },
                    }
                ),
            any::<u64>().prop_map(|deadline_ms| Msg::Shutdown { deadline_ms }),
            Just(Msg::ShutdownAck),
            (0u8..4, arb_str()).prop_map(|(l, line)| Msg::Log {
                level: Level::from_u8(l).unwrap(),
                line
            }),
            (arb_str(), arb_str()).prop_map(|(name, data)| Msg::Event { name, data }),
            (any::<u64>(), arb_str()).prop_map(|(nonce, name)| Msg::Query { nonce, name }),
            (any::<u64>(), arb_str()).prop_map(|(nonce, text)| Msg::QueryReply { nonce, text }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let mut buf = Vec::new();
            msg.encode(&mut buf).unwrap();
            prop_assert_eq!(Msg::decode(&buf).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Msg::decode(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(msg in arb_msg()) {
            let mut buf = Vec::new();
            msg.encode(&mut buf).unwrap();
            for n in 0..buf.len() {
                prop_assert!(Msg::decode(&buf[..n]).is_err());
            }
        }
    }

    #[test]
    fn unknown_type_is_reported_as_such() {
        assert_eq!(
            Msg::decode(&[PROTO_VERSION, 0x42, 1, 2]),
            Err(DecodeError::UnknownType(0x42))
        );
        assert_eq!(Msg::decode(&[9, 2]), Err(DecodeError::Version(9)));
        assert_eq!(Msg::decode(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn oversized_fields_are_refused_when_encoding() {
        let mut buf = Vec::new();
        let line = "x".repeat(MAX_STR + 1);
        assert_eq!(
            Msg::Log {
                level: Level::Info,
                line
            }
            .encode(&mut buf),
            Err(EncodeError::StringTooLong(MAX_STR + 1))
        );
    }
}
