//! Byte-level helpers shared by the record and message codecs: a bounds-checked reader that
//! never panics, and the matching writers. All integers are big-endian.

use netbase::bytes;
use std::net::{IpAddr, SocketAddr};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input ended early.
    #[error("truncated")]
    Truncated,
    /// Bytes left over after the value.
    #[error("trailing bytes")]
    Trailing,
    /// Unknown protocol version.
    #[error("unsupported version {0}")]
    Version(u8),
    /// Unknown message type or enum tag.
    #[error("unknown tag {0}")]
    Tag(u8),
    /// A count or length over its limit.
    #[error("over limit")]
    Limit,
    /// A string that is not UTF-8.
    #[error("invalid utf-8")]
    Utf8,
}

impl From<bytes::Error> for DecodeError {
    fn from(e: bytes::Error) -> Self {
        match e {
            bytes::Error::Truncated => DecodeError::Truncated,
            bytes::Error::Trailing(_) => DecodeError::Trailing,
        }
    }
}

/// A cursor over input bytes: the shared byte reader (big endian) plus the messenger's
/// strings and addresses.
pub(crate) struct Reader<'a>(bytes::Reader<'a>);

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader(bytes::Reader::new(b))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        Ok(self.0.take(n)?)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.0.array()?)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.0.u8()?)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(self.0.u16_be()?)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.0.u32_be()?)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.0.u64_be()?)
    }

    /// A `u8`-length-prefixed UTF-8 string of at most `max` bytes.
    pub(crate) fn str8(&mut self, max: usize) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > max {
            return Err(DecodeError::Limit);
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8)
    }

    /// A `u16`-length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes16(&mut self, max: usize) -> Result<Vec<u8>, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(DecodeError::Limit);
        }
        Ok(self.take(n)?.to_vec())
    }

    pub(crate) fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let mut peek = self.0.clone();
        let family = peek.u8()?;
        let ip = self.0.ip()?.ok_or(DecodeError::Tag(family))?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.0.rest()
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        Ok(self.0.finish()?)
    }
}

/// Appends a `u8`-length-prefixed string; callers have checked the length limit (longer
/// strings are cut at 255 bytes, which the decoder's limit would reject anyway).
pub(crate) fn put_str8(v: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(255);
    v.push(n as u8);
    v.extend_from_slice(&b[..n]);
}

/// Appends a `u16`-length-prefixed byte string (cut at 65535 bytes).
pub(crate) fn put_bytes16(v: &mut Vec<u8>, b: &[u8]) {
    let n = b.len().min(usize::from(u16::MAX));
    v.extend_from_slice(&(n as u16).to_be_bytes());
    v.extend_from_slice(&b[..n]);
}

pub(crate) fn put_addr(v: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(4);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(6);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&a.port().to_be_bytes());
}
