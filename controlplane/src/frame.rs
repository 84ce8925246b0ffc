//! TCP framing of links and messenger connections: `u16 length (big endian) | bytes`.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Writes one `u16 length | bytes` frame (the framing of links and messenger connections).
pub(crate) fn write_frame(s: &mut TcpStream, b: &[u8]) -> io::Result<()> {
    let len = u16::try_from(b.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut buf = Vec::with_capacity(b.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(b);
    s.write_all(&buf)
}

/// Reads one frame written by [`write_frame`] into `buf`.
pub(crate) fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let n = usize::from(u16::from_be_bytes(len));
    buf.resize(n, 0);
    s.read_exact(buf)
}
