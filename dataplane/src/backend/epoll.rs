//! The portable backend: epoll readiness, recvmmsg/sendmmsg batches on the UDP socket, one
//! read/write per packet on the TUN queue. Used when io_uring cannot be set up, or by flag.
//!
//! With offloads (`ShardIo::offload`, the TUN opened with a vnet header): a read may be a TCP
//! super-packet; it is cut into segments ([`crate::offload`]), each sealed into its own frame,
//! and the frames, back to back in one buffer ([`GsoBatch`]), go out as one UDP GSO send
//! (`UDP_SEGMENT`), or one by one with sendmmsg where the kernel refuses that. A received UDP GRO
//! datagram whose frames are all relayed to one peer goes out again whole ([`GroRelay`]). Packets written to the TUN get a
//! (zero) vnet header in front, in the headroom the frame header left.

use crate::backend::ShardIo;
use crate::backend::gso::{self, GroRelay, GsoBatch, Relayed};
use crate::backend::plan::SendPlan;
use crate::mmsg::{self, BATCH};
use crate::offload::{self, Coalescer, Prepared, VNET_HDR_LEN, VnetHdr};
use crate::shard::TAILROOM;
use crate::shard::{BUF_SIZE, HEADROOM, Verdict};
use crate::stats::DropReason;
use crate::wire::OVERHEAD;
use rustix::event::epoll;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Batches per side per wake-up before the other side gets a turn.
const ROUNDS: usize = 4;
/// Longest sleep: how fast a stop request or a table change is noticed on an idle shard.
const IDLE: Duration = Duration::from_millis(100);

const T_UDP: u64 = 1;
const T_TUN: u64 = 2;

/// The GSO batch of a super-packet's frames, and what the kernel takes.
struct Tx {
    batch: GsoBatch,
    /// Whether the kernel takes UDP GSO sends here (cleared after it refused one).
    udp_gso: bool,
}

impl Tx {
    fn new() -> Tx {
        Tx {
            batch: GsoBatch::new(),
            udp_gso: true,
        }
    }

    /// Sends the group (as one UDP GSO send if it can) and empties it.
    fn send(&mut self, io: &ShardIo) {
        let Some(g) = self.batch.take() else {
            return;
        };
        let (n, first, to) = (g.frames, g.first, g.to);
        if n > 1 && self.udp_gso {
            match mmsg::send_gso(io.udp.as_fd(), g.out, first as u16, &to) {
                Ok(true) => {
                    for i in 0..n {
                        io.shard.sent(g.frame_len(i));
                    }
                    return;
                }
                Ok(false) => {
                    for _ in 0..n {
                        io.shard.discard(DropReason::QueueFull);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        "shard {}: UDP GSO send refused ({e}); sending datagrams one by one",
                        io.shard.id()
                    );
                    self.udp_gso = false;
                }
            }
        }
        let mut done = 0;
        while done < n {
            let k = (n - done).min(BATCH);
            let sent = match mmsg::send_batch(io.udp.as_fd(), k, |i| (g.frame(done + i), to)) {
                Ok(s) => s,
                Err(_) => {
                    for _ in done..n {
                        io.shard.discard(DropReason::SendError);
                    }
                    return;
                }
            };
            for j in done..done + sent {
                io.shard.sent(g.frame_len(j));
            }
            for _ in sent..k {
                io.shard.discard(DropReason::QueueFull);
            }
            done += k;
        }
    }
}

struct Bufs {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// Frames to send from `bufs`.
    plan: SendPlan,
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
            plan: SendPlan::new(),
            segs: [0; BATCH],
        }
    }
}

/// Runs a shard until `stop` is set.
pub fn run(mut io: ShardIo) -> io::Result<()> {
    io.udp.set_nonblocking(true)?;
    if io.offload
        && let Err(e) = mmsg::enable_gro(io.udp.as_fd())
    {
        tracing::warn!(
            "shard {}: UDP GRO not available ({e}); receiving frame by frame",
            io.shard.id()
        );
    }
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
    let mut tx = Tx::new();
    let mut co = Coalescer::new();
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
                T_UDP => udp_side(&mut io, &mut b, &mut co)?,
                T_TUN if io.offload => tun_side_offload(&mut io, &mut b, &mut tx)?,
                T_TUN => tun_side(&mut io, &mut b)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn flush(io: &ShardIo, b: &mut Bufs) {
    send_plan(io, &b.bufs, &mut b.plan);
}

/// Sends the frames planned from `bufs` (sendmmsg batches) and empties the plan.
fn send_plan(io: &ShardIo, bufs: &[Box<[u8]>], plan: &mut SendPlan) {
    let n = plan.len();
    if n == 0 {
        return;
    }
    let frames = plan.frames();
    let sent = match mmsg::send_batch(io.udp.as_fd(), n, |i| {
        let (idx, off, to, len) = frames[i];
        (&bufs[idx][off..off + len], to)
    }) {
        Ok(s) => s,
        Err(_) => {
            for _ in 0..n {
                io.shard.discard(DropReason::SendError);
            }
            plan.clear();
            return;
        }
    };
    for &(_, _, _, len) in &frames[..sent] {
        io.shard.sent(len);
    }
    for _ in sent..n {
        io.shard.discard(DropReason::QueueFull);
    }
    plan.clear();
}

/// Offers `pkt`, punted by the shard, to the controlplane (the clock is read only for a punt).
fn punt(io: &mut ShardIo, pkt: &[u8]) {
    if let Some(g) = io.punt.as_mut() {
        g.offer(Instant::now(), pkt);
    }
}

/// Writes `buf[HEADROOM..HEADROOM + len]` to the TUN (with a zero vnet header in front, in the
/// headroom, when offloads are on).
fn write_tun(io: &ShardIo, buf: &mut [u8], len: usize) {
    let from = if io.offload {
        buf[HEADROOM - VNET_HDR_LEN..HEADROOM].copy_from_slice(&VnetHdr::default().encode());
        HEADROOM - VNET_HDR_LEN
    } else {
        HEADROOM
    };
    match rustix::io::write(&io.tun, &buf[from..HEADROOM + len]) {
        Ok(_) => io.shard.delivered(len),
        Err(rustix::io::Errno::AGAIN) => {
            io.shard.discard(DropReason::QueueFull);
        }
        Err(_) => {
            io.shard.discard(DropReason::SendError);
        }
    }
}

/// With offloads, a delivered packet: merged into the super-packet being built, else that one
/// is written and `pkt` starts the next (or is written as it is when it cannot be merged).
fn deliver_offload(io: &ShardIo, co: &mut Coalescer, buf: &mut [u8], len: usize) {
    let pkt = &buf[HEADROOM..HEADROOM + len];
    if co.push(pkt) {
        return;
    }
    write_coalesced(io, co);
    if !co.push(pkt) {
        write_tun(io, buf, len);
    }
}

/// Writes the super-packet being built, if any.
fn write_coalesced(io: &ShardIo, co: &mut Coalescer) {
    let (segs, bytes) = (co.segments() as u64, co.segment_bytes());
    if segs == 0 {
        return;
    }
    match rustix::io::write(&io.tun, co.finish()) {
        Ok(_) => io.shard.delivered_many(segs, bytes),
        Err(rustix::io::Errno::AGAIN) => {
            io.shard.discard(DropReason::QueueFull);
        }
        Err(_) => {
            io.shard.discard(DropReason::SendError);
        }
    }
}

fn udp_side(io: &mut ShardIo, b: &mut Bufs, co: &mut Coalescer) -> io::Result<()> {
    let r = if io.offload {
        udp_rounds_offload(io, b, co)
    } else {
        udp_rounds(io, b, co)
    };
    write_coalesced(io, co);
    r
}

/// [`udp_rounds`] with offloads: a datagram may hold several frames (UDP GRO, every one but the
/// last `segs[i]` bytes long). Delivered packets go through the coalescer. When every frame of
/// a datagram is relayed, unchanged in length, to one peer, the datagram goes out again as it
/// is, as one UDP GSO send; otherwise frame by frame.
fn udp_rounds_offload(io: &mut ShardIo, b: &mut Bufs, co: &mut Coalescer) -> io::Result<()> {
    for _ in 0..ROUNDS {
        let n = {
            let mut views: [&mut [u8]; BATCH] = Default::default();
            for (v, buf) in views.iter_mut().zip(b.bufs.iter_mut()) {
                *v = &mut buf[..];
            }
            mmsg::recv_batch_gro(io.udp.as_fd(), &mut views, &mut b.lens, &mut b.segs)?
        };
        for i in 0..n {
            let total = b.lens[i];
            let seg = if b.segs[i] == 0 { total } else { b.segs[i] };
            let mut off = 0;
            let mut rel = GroRelay::new();
            while off < total {
                let flen = seg.min(total - off);
                match io.shard.from_udp(&mut b.bufs[i][off..], flen) {
                    Verdict::Send { to, len } => {
                        rel.relayed(off, flen, to, len, |f| plan_frames(io, b, i, f));
                    }
                    Verdict::Deliver { len } => {
                        rel.other();
                        deliver_offload(io, co, &mut b.bufs[i][off..], len);
                    }
                    // (`from_udp` never punts.)
                    Verdict::Drop(_) | Verdict::Consumed | Verdict::Punt { .. } => rel.other(),
                }
                off += seg.max(1);
            }
            if let Some(to) = rel.whole(seg) {
                // Send the datagram whole again, after what was planned before it.
                flush(io, b);
                let frames = rel.frames();
                match mmsg::send_gso(io.udp.as_fd(), &b.bufs[i][..total], seg as u16, &to) {
                    Ok(true) => {
                        for k in 0..frames {
                            io.shard.sent(gso::frame_len(k, frames, seg, total));
                        }
                    }
                    Ok(false) => {
                        for _ in 0..frames {
                            io.shard.discard(DropReason::QueueFull);
                        }
                    }
                    Err(_) => plan_frames(io, b, i, rel.relayed_frames()),
                }
            } else {
                plan_frames(io, b, i, rel.relayed_frames());
            }
        }
        flush(io, b);
        if n < BATCH {
            break;
        }
    }
    Ok(())
}

/// Adds frames of buffer `i` to the send plan, sending it whenever full.
fn plan_frames(io: &ShardIo, b: &mut Bufs, i: usize, frames: &[Relayed]) {
    let bufs = &b.bufs;
    b.plan.push_frames(i, frames, |p| send_plan(io, bufs, p));
}

fn udp_rounds(io: &mut ShardIo, b: &mut Bufs, co: &mut Coalescer) -> io::Result<()> {
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
                Verdict::Send { to, len } => b.plan.push(i, 0, to, len),
                Verdict::Deliver { len } if io.offload => {
                    deliver_offload(io, co, &mut b.bufs[i], len)
                }
                Verdict::Deliver { len } => write_tun(io, &mut b.bufs[i], len),
                // (`from_udp` never punts.)
                Verdict::Drop(_) | Verdict::Consumed | Verdict::Punt { .. } => {}
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
            match rustix::io::read(&io.tun, &mut b.bufs[n][HEADROOM..BUF_SIZE - TAILROOM]) {
                Ok(0) => break,
                Ok(len) => {
                    match io.shard.from_tun(&mut b.bufs[n], len) {
                        Verdict::Send { to, len } => b.plan.push(n, 0, to, len),
                        Verdict::Punt { len } => punt(io, &b.bufs[n][HEADROOM..HEADROOM + len]),
                        // A packet from sky0 is never delivered back to sky0.
                        Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {}
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

/// [`tun_side`] with a vnet header on every read: plain packets (their checksum completed if
/// partial) are batched as there; a super-packet is cut into segments, sealed back to back and
/// sent as UDP GSO sends (after what was batched before it, to keep the order).
fn tun_side_offload(io: &mut ShardIo, b: &mut Bufs, tx: &mut Tx) -> io::Result<()> {
    for _ in 0..ROUNDS {
        let mut reads = 0;
        while reads < BATCH {
            let k = b.plan.len();
            let n = match rustix::io::read(
                &io.tun,
                &mut b.bufs[k][HEADROOM - VNET_HDR_LEN..BUF_SIZE - TAILROOM],
            ) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            reads += 1;
            let buf = &mut b.bufs[k];
            let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
                io.shard.discard(DropReason::Malformed);
                continue;
            };
            let prepared = VnetHdr::parse(&buf[HEADROOM - VNET_HDR_LEN..HEADROOM])
                .and_then(|h| offload::prepare(&h, &mut buf[HEADROOM..HEADROOM + len]));
            match prepared {
                Err(_) => {
                    io.shard.discard(DropReason::Malformed);
                }
                Ok(Prepared::Single) => match io.shard.from_tun(buf, len) {
                    Verdict::Send { to, len } => {
                        b.plan.push(k, 0, to, len);
                        if b.plan.is_full() {
                            flush(io, b);
                        }
                    }
                    Verdict::Punt { len } => punt(io, &buf[HEADROOM..HEADROOM + len]),
                    Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {}
                },
                Ok(Prepared::Gso(g)) => {
                    // The super-packet stays in bufs[k]; flush sends only bufs[..k].
                    flush(io, b);
                    let pkt = &b.bufs[k][HEADROOM..HEADROOM + len];
                    for i in 0..g.segments() {
                        if !tx.batch.fits(OVERHEAD + g.seg_len(i)) {
                            tx.send(io);
                        }
                        let (at, frame) = tx.batch.tail();
                        let Ok(sl) = g.write(pkt, i, &mut frame[HEADROOM..]) else {
                            io.shard.discard(DropReason::TooBig);
                            continue;
                        };
                        match io.shard.from_tun(frame, sl) {
                            Verdict::Send { to, len } => {
                                if tx.batch.other_destination(to) {
                                    // Another destination (cannot happen within one flow).
                                    tx.send(io);
                                    tx.batch.move_to_front(at, len);
                                }
                                tx.batch.push(to, len);
                            }
                            Verdict::Punt { len } => {
                                punt(io, &tx.batch.tail().1[HEADROOM..HEADROOM + len]);
                            }
                            Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {}
                        }
                    }
                    tx.send(io);
                }
            }
        }
        flush(io, b);
        if reads < BATCH {
            break;
        }
    }
    Ok(())
}
