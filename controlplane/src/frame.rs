//! TCP framing of links and messenger connections: `u16 length (big endian) | bytes`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

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

/// Reads into all of `b` by `deadline`: the socket's read timeout is set to the time left
/// before each read, so a peer that trickles bytes cannot stretch it.
fn read_exact_by(s: &mut TcpStream, mut b: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !b.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(b) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => b = b.get_mut(n..).unwrap_or_default(),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`read_frame`], all of it by `deadline` (`TimedOut` after). Leaves the read timeout set.
pub(crate) fn read_frame_by(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<()> {
    let mut len = [0u8; 2];
    read_exact_by(s, &mut len, deadline)?;
    let n = usize::from(u16::from_be_bytes(len));
    buf.resize(n, 0);
    read_exact_by(s, buf, deadline)
}

/// [`write_frame`], by `deadline` (`TimedOut` after). Leaves the write timeout set.
pub(crate) fn write_frame_by(s: &mut TcpStream, b: &[u8], deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    s.set_write_timeout(Some(left))?;
    write_frame(s, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn a_trickled_frame_times_out_at_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let t = std::thread::spawn(move || {
            // A 100-byte frame, one byte every 50 ms (each read alone is quick).
            let _ = c.write_all(&[0, 100]);
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(50));
                if c.write_all(&[7]).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut buf = Vec::new();
        let e = read_frame_by(&mut s, &mut buf, started + Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600), "{took:?}");
        t.join().unwrap();
    }
}
