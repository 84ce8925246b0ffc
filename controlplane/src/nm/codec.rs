//! The node manager's field reader: the shared byte reader (big endian) plus node and route
//! ids, and the decode error of every node-manager message and advert.

use super::types::{NodeId, RouteId};
use netbase::bytes;

/// Why bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message truncated")]
    Truncated,
    #[error("trailing bytes after message")]
    Trailing,
    #[error("unknown protocol version {0}")]
    BadVersion(u8),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("unknown flag bits")]
    UnknownFlags,
    #[error("too many elements")]
    TooMany,
    #[error("element or message too large")]
    TooLarge,
    #[error("non-canonical encoding")]
    NonCanonical,
    #[error("invalid UTF-8")]
    BadUtf8,
    #[error("invalid path")]
    BadPath,
}

impl From<bytes::Error> for DecodeError {
    fn from(e: bytes::Error) -> Self {
        match e {
            bytes::Error::Truncated => DecodeError::Truncated,
            bytes::Error::Trailing(_) => DecodeError::Trailing,
        }
    }
}

/// Bounds-checked big-endian reader.
pub struct Reader<'a>(bytes::Reader<'a>);

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self(bytes::Reader::new(buf))
    }
    pub fn remaining(&self) -> usize {
        self.0.remaining()
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        Ok(self.0.take(n)?)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.0.u8()?)
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(self.0.u16_be()?)
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.0.u32_be()?)
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.0.u64_be()?)
    }
    pub fn id(&mut self) -> Result<NodeId, DecodeError> {
        Ok(NodeId(self.0.array()?))
    }
    pub fn route_id(&mut self) -> Result<RouteId, DecodeError> {
        Ok(RouteId {
            origin: self.id()?,
            counter: self.u64()?,
        })
    }
    /// Error unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        Ok(self.0.finish()?)
    }
}
