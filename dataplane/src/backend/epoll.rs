//! The portable backend: epoll readiness, recvmmsg batches on the UDP socket, one read per
//! packet on the TUN queue; what is read goes to [`Pump`] (sendmmsg batches, TUN writes, the
//! offload batching). Used when io_uring cannot be set up, or by flag.
//!
//! With offloads (`ShardIo::offload`, the TUN opened with a vnet header) a read may be a TCP
//! super-packet and a received datagram a UDP GRO train of frames: see [`crate::backend::pump`].

use crate::backend::ShardIo;
use crate::backend::pump::{self, Pump};
use crate::mmsg::{self, BATCH};
use crate::shard::BUF_SIZE;
use rustix::event::epoll;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Batches per side per wake-up before the other side gets a turn.
const ROUNDS: usize = 4;
/// Longest sleep: how fast a stop request or a table change is noticed on an idle shard.
const IDLE: Duration = Duration::from_millis(100);

const T_UDP: u64 = 1;
const T_TUN: u64 = 2;

struct Bufs {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// UDP GRO segment size of each received datagram (0: a single frame).
    segs: [usize; BATCH],
}

impl Bufs {
    fn new() -> Bufs {
        Bufs {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; BUF_SIZE].into_boxed_slice())
                .collect(),
            lens: [0; BATCH],
            segs: [0; BATCH],
        }
    }
}

/// Runs a shard until `stop` is set.
pub fn run(mut io: ShardIo) -> io::Result<()> {
    pump::prepare_udp(&io)?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &ep,
        io.udp.as_fd(),
        epoll::EventData::new_u64(T_UDP),
        epoll::EventFlags::IN,
    )?;
    epoll::add(
        &ep,
        io.tun.as_fd(),
        epoll::EventData::new_u64(T_TUN),
        epoll::EventFlags::IN,
    )?;
    let mut b = Bufs::new();
    let mut pump = Pump::new();
    let mut events = Vec::with_capacity(4);
    let idle = rustix::time::Timespec::try_from(IDLE).unwrap_or(rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    });
    while !io.stop.load(Ordering::Relaxed) {
        events.clear();
        match epoll::wait(
            &ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&idle),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        io.shard.refresh();
        for ev in &events {
            match ev.data.u64() {
                T_UDP => udp_side(&mut io, &mut b, &mut pump)?,
                T_TUN => tun_side(&mut io, &mut b, &mut pump)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn udp_side(io: &mut ShardIo, b: &mut Bufs, pump: &mut Pump) -> io::Result<()> {
    let mut r = Ok(());
    for _ in 0..ROUNDS {
        let got = {
            let mut views: [&mut [u8]; BATCH] = Default::default();
            for (v, buf) in views.iter_mut().zip(b.bufs.iter_mut()) {
                *v = &mut buf[..];
            }
            if io.offload {
                mmsg::recv_batch_gro(io.udp.as_fd(), &mut views, &mut b.lens, &mut b.segs)
            } else {
                b.segs = [0; BATCH];
                mmsg::recv_batch(io.udp.as_fd(), &mut views, &mut b.lens)
            }
        };
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                r = Err(e);
                break;
            }
        };
        for i in 0..n {
            pump.from_udp(io, &mut b.bufs[..], i, b.lens[i], b.segs[i]);
        }
        // The next round reuses the buffers: send what refers to them.
        pump.flush(io, &b.bufs[..]);
        if n < BATCH {
            break;
        }
    }
    pump.finish(io, &b.bufs[..]);
    r
}

fn tun_side(io: &mut ShardIo, b: &mut Bufs, pump: &mut Pump) -> io::Result<()> {
    let (at, max) = (
        pump::tun_read_at(io.offload),
        pump::tun_read_len(io.offload),
    );
    for _ in 0..ROUNDS {
        let mut reads = 0;
        while reads < BATCH {
            // A buffer no planned frame refers to: planned frames are in bufs[..planned].
            if pump.planned() == BATCH {
                pump.flush(io, &b.bufs[..]);
            }
            let k = pump.planned();
            let n = match rustix::io::read(&io.tun, &mut b.bufs[k][at..at + max]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            reads += 1;
            pump.from_tun(io, &mut b.bufs[..], k, n);
        }
        pump.flush(io, &b.bufs[..]);
        if reads < BATCH {
            break;
        }
    }
    Ok(())
}
