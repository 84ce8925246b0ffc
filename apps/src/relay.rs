//! Copies bytes both ways between two TCP streams, one thread per direction.
//!
//! Half-close: when one side ends its stream (read returns 0), the other side's write half is
//! shut down and the opposite direction keeps flowing until it ends too. An error in either
//! direction shuts both sockets down completely, which wakes the other thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const BUF: usize = 16 * 1024;
/// Stack of the extra thread per relayed connection.
pub const THREAD_STACK: usize = 128 * 1024;

/// Copies `from` to `to` until EOF (then shuts down `to`'s write half) or an error (then shuts
/// down both sockets). Counts the bytes written into `count`.
fn pump(mut from: &TcpStream, mut to: &TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let Some(chunk) = buf.get(..n) else { break };
        if to.write_all(chunk).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Relays `a` <-> `b` until both directions are finished. Bytes from `a` to `b` are counted in
/// `a_to_b`, the others in `b_to_a`. Blocks the calling thread; uses one more thread.
pub fn relay(
    a: TcpStream,
    b: TcpStream,
    a_to_b: Arc<AtomicU64>,
    b_to_a: Arc<AtomicU64>,
) -> io::Result<()> {
    // Handshake timeouts must not cut an idle relayed connection.
    a.set_read_timeout(None)?;
    b.set_read_timeout(None)?;
    a.set_write_timeout(None)?;
    b.set_write_timeout(None)?;
    let a2 = a.try_clone()?;
    let b2 = b.try_clone()?;
    let other = std::thread::Builder::new()
        .name("relay".into())
        .stack_size(THREAD_STACK)
        .spawn(move || pump(&b2, &a2, &b_to_a));
    let other = match other {
        Ok(h) => h,
        Err(e) => {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
            return Err(e);
        }
    };
    pump(&a, &b, &a_to_b);
    // The other thread only returns; a panic there would be a bug in `pump`, which has none.
    let _ = other.join();
    Ok(())
}
