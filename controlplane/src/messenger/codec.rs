//! Byte-level helpers shared by the record and message codecs: a bounds-checked reader that
//! never panics, and the matching writers. All integers are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// A cursor over input bytes.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
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
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            t => return Err(DecodeError::Tag(t)),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.b
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
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
