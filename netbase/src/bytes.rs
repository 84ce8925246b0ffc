//! The byte reader and writer under every binary codec of the project.
//!
//! [`Reader`] never panics: every read is bounds-checked and fails with [`Error`]. Codecs
//! wrap it (each protocol's decode error has a `From<Error>`) and add their own field types;
//! integers are read in the byte order the protocol names (`*_le` / `*_be`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why the bytes ran out or were left over: the only two ways reading can fail below the
/// protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field runs past the end of the input.
    #[error("truncated")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// A cursor over input bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `b` from its start.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(Error::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    /// Little-endian `u16`.
    pub fn u16_le(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Little-endian `u32`.
    pub fn u32_le(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Little-endian `u64`.
    pub fn u64_le(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Big-endian `u16`.
    pub fn u16_be(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Big-endian `u32`.
    pub fn u32_be(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Big-endian `u64`.
    pub fn u64_be(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// An IP address in the form [`Writer::ip`] writes (`4 | 4 bytes` or `6 | 16 bytes`);
    /// `Ok(None)` for an unknown family byte, which the caller refuses in its own terms.
    pub fn ip(&mut self) -> Result<Option<IpAddr>, Error> {
        Ok(match self.u8()? {
            4 => Some(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => None,
        })
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.b.len()
    }

    /// The bytes left (not consumed).
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }

    /// Error unless every byte was consumed.
    pub fn finish(&self) -> Result<(), Error> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::Trailing(self.b.len()))
        }
    }
}

/// Appends fields to a buffer.
#[derive(Debug)]
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    /// Little-endian `u16`.
    pub fn u16_le(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Little-endian `u32`.
    pub fn u32_le(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Little-endian `u64`.
    pub fn u64_le(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Big-endian `u16`.
    pub fn u16_be(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// Big-endian `u32`.
    pub fn u32_be(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// Big-endian `u64`.
    pub fn u64_be(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// An IP address: `4 | 4 bytes` or `6 | 16 bytes`.
    pub fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.bytes(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.bytes(&a.octets());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_round_trip_in_both_byte_orders() {
        let mut v = Vec::new();
        let mut w = Writer(&mut v);
        w.u8(1);
        w.u16_le(0x0203);
        w.u32_be(0x0405_0607);
        w.u64_le(u64::MAX - 1);
        w.u64_be(9);
        w.u16_be(7);
        w.u32_le(8);
        w.ip("10.0.0.1".parse().unwrap());
        w.ip("fd73::1".parse().unwrap());
        assert_eq!(&v[1..3], &[3, 2]);
        assert_eq!(&v[3..7], &[4, 5, 6, 7]);
        let mut r = Reader::new(&v);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16_le(), Ok(0x0203));
        assert_eq!(r.u32_be(), Ok(0x0405_0607));
        assert_eq!(r.u64_le(), Ok(u64::MAX - 1));
        assert_eq!(r.u64_be(), Ok(9));
        assert_eq!(r.u16_be(), Ok(7));
        assert_eq!(r.u32_le(), Ok(8));
        assert_eq!(r.ip(), Ok(Some("10.0.0.1".parse().unwrap())));
        assert_eq!(r.ip(), Ok(Some("fd73::1".parse().unwrap())));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.u8(), Err(Error::Truncated));
    }

    #[test]
    fn short_input_and_leftovers_are_errors() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32_le(), Err(Error::Truncated));
        assert_eq!(r.remaining(), 3, "a failed read consumes nothing");
        assert_eq!(r.u16_be(), Ok(0x0102));
        assert_eq!(r.finish(), Err(Error::Trailing(1)));
        assert_eq!(r.rest(), &[3]);
        assert_eq!(Reader::new(&[5, 1]).ip(), Ok(None));
        assert_eq!(Reader::new(&[6, 1]).ip(), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn reading_never_panics(b: Vec<u8>, ops: Vec<u8>) {
            let mut r = Reader::new(&b);
            for op in ops {
                let _ = match op % 6 {
                    0 => r.u8().map(u64::from),
                    1 => r.u16_be().map(u64::from),
                    2 => r.u32_le().map(u64::from),
                    3 => r.u64_be(),
                    4 => r.take(usize::from(op)).map(|s| s.len() as u64),
                    _ => r.ip().map(|_| 0),
                };
            }
            prop_assert!(r.remaining() <= b.len());
        }
    }
}
