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

/// Reads frames across read timeouts: a timeout in the middle of a frame keeps what was read,
/// so the next call goes on where this one stopped ([`read_frame`] loses the bytes it read
/// before a timeout, and the stream is out of step after it).
#[derive(Default)]
pub(crate) struct FrameReader {
    head: [u8; 2],
    /// Bytes of the current frame read so far, its length prefix included.
    got: usize,
    body: Vec<u8>,
}

impl FrameReader {
    /// Reads until a whole frame is in: `Some(frame)`, or `None` when the read timed out first
    /// (what was read is kept). EOF and other errors are errors.
    pub(crate) fn read(&mut self, s: &mut impl Read) -> io::Result<Option<&[u8]>> {
        loop {
            let into = if self.got < 2 {
                self.head.get_mut(self.got..).unwrap_or_default()
            } else {
                let n = usize::from(u16::from_be_bytes(self.head));
                if self.got == 2 + n {
                    self.got = 0;
                    return Ok(self.body.get(..n));
                }
                self.body.resize(n, 0);
                self.body.get_mut(self.got - 2..n).unwrap_or_default()
            };
            match s.read(into) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => self.got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its chunks one read at a time, a timeout before each.
    struct Chunks(std::collections::VecDeque<Vec<u8>>, bool);

    impl Read for Chunks {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let Some(mut c) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = c.len().min(b.len());
            b[..n].copy_from_slice(&c[..n]);
            if n < c.len() {
                self.0.push_front(c.split_off(n));
            }
            Ok(n)
        }
    }

    #[test]
    fn a_frame_split_by_timeouts_is_read_whole() {
        let wire = [&[0, 3][..], b"abc", &[0, 0], &[0, 2], b"de"].concat();
        // One byte per read, a timeout before every byte.
        let mut s = Chunks(wire.iter().map(|b| vec![*b]).collect(), false);
        let mut r = FrameReader::default();
        let mut frames = Vec::new();
        for _ in 0..100 {
            match r.read(&mut s) {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                    break;
                }
            }
        }
        assert_eq!(frames, [b"abc".to_vec(), vec![], b"de".to_vec()]);
    }
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
