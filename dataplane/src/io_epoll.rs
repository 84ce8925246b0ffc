//! The portable backend: epoll readiness, recvmmsg/sendmmsg batches on the UDP socket, one
//! read/write per packet on the TUN queue. Used when io_uring cannot be set up, or by flag.

use crate::mmsg::{self, BATCH};
use crate::shard::{BUF_SIZE, HEADROOM, Shard, Verdict};
use crate::stats::DropReason;
use rustix::event::epoll;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Batches per side per wake-up before the other side gets a turn.
const ROUNDS: usize = 4;
/// Longest sleep: how fast a stop request or a table change is noticed on an idle shard.
const IDLE: Duration = Duration::from_millis(100);

const T_UDP: u64 = 1;
const T_TUN: u64 = 2;

/// Everything one shard thread owns.
pub struct ShardIo {
    /// Packet logic.
    pub shard: Shard,
    /// This shard's TUN queue (non-blocking).
    pub tun: OwnedFd,
    /// This shard's UDP socket (non-blocking).
    pub udp: UdpSocket,
    /// Set to end the loop.
    pub stop: Arc<AtomicBool>,
}

struct Bufs {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    plan: [(usize, SocketAddr, usize); BATCH],
    planned: usize,
}

impl Bufs {
    fn new() -> Bufs {
        Bufs {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; BUF_SIZE].into_boxed_slice())
                .collect(),
            lens: [0; BATCH],
            plan: [(0, SocketAddr::from(([0, 0, 0, 0], 0)), 0); BATCH],
            planned: 0,
        }
    }
}

/// Runs a shard until `stop` is set.
pub fn run(mut io: ShardIo) -> io::Result<()> {
    io.udp.set_nonblocking(true)?;
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
                T_UDP => udp_side(&mut io, &mut b)?,
                T_TUN => tun_side(&mut io, &mut b)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn flush(io: &ShardIo, b: &mut Bufs) {
    let n = b.planned;
    if n == 0 {
        return;
    }
    let bufs = &b.bufs;
    let plan = &b.plan;
    let sent = match mmsg::send_batch(io.udp.as_fd(), n, |i| {
        let (idx, to, len) = plan[i];
        (&bufs[idx][..len], to)
    }) {
        Ok(s) => s,
        Err(_) => {
            for _ in 0..n {
                io.shard.discard(DropReason::SendError);
            }
            b.planned = 0;
            return;
        }
    };
    for &(_, _, len) in &plan[..sent] {
        io.shard.sent(len);
    }
    for _ in sent..n {
        io.shard.discard(DropReason::QueueFull);
    }
    b.planned = 0;
}

fn write_tun(io: &ShardIo, pkt: &[u8]) {
    match rustix::io::write(&io.tun, pkt) {
        Ok(_) => io.shard.delivered(pkt.len()),
        Err(rustix::io::Errno::AGAIN) => {
            io.shard.discard(DropReason::QueueFull);
        }
        Err(_) => {
            io.shard.discard(DropReason::SendError);
        }
    }
}

fn udp_side(io: &mut ShardIo, b: &mut Bufs) -> io::Result<()> {
    for _ in 0..ROUNDS {
        let n = {
            let mut views: [&mut [u8]; BATCH] = Default::default();
            for (v, buf) in views.iter_mut().zip(b.bufs.iter_mut()) {
                *v = &mut buf[..];
            }
            mmsg::recv_batch(io.udp.as_fd(), &mut views, &mut b.lens)?
        };
        for i in 0..n {
            let len = b.lens[i];
            match io.shard.from_udp(&mut b.bufs[i], len) {
                Verdict::Send { to, len } => {
                    b.plan[b.planned] = (i, to, len);
                    b.planned += 1;
                }
                Verdict::Deliver { len } => write_tun(io, &b.bufs[i][HEADROOM..HEADROOM + len]),
                Verdict::Drop(_) => {}
            }
        }
        flush(io, b);
        if n < BATCH {
            break;
        }
    }
    Ok(())
}

fn tun_side(io: &mut ShardIo, b: &mut Bufs) -> io::Result<()> {
    for _ in 0..ROUNDS {
        let mut n = 0;
        while n < BATCH {
            match rustix::io::read(
                &io.tun,
                &mut b.bufs[n][HEADROOM..BUF_SIZE - crate::wire::TAG_LEN],
            ) {
                Ok(0) => break,
                Ok(len) => {
                    match io.shard.from_tun(&mut b.bufs[n], len) {
                        Verdict::Send { to, len } => {
                            b.plan[b.planned] = (n, to, len);
                            b.planned += 1;
                        }
                        // A packet from sky0 is never delivered back to sky0.
                        Verdict::Deliver { .. } | Verdict::Drop(_) => {}
                    }
                    n += 1;
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        flush(io, b);
        if n < BATCH {
            break;
        }
    }
    Ok(())
}
