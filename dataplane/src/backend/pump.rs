//! What both backends do with a buffer once it is in: hand it to the shard and carry out the
//! verdicts (UDP sends, TUN writes, punts), with the offload batching (a TUN super-packet cut
//! into segments and sent with UDP GSO, a UDP GRO datagram relayed whole, delivered segments
//! merged into one TUN write). A backend only fills buffers and hands them in; the sends here
//! are plain non-blocking syscalls in the order the packets came, so a flow keeps its order
//! whichever backend received it.
//!
//! Buffers stay the backend's: [`Pump`] reaches them through [`Buffers`] by index, and a frame
//! planned for a batched send refers to its buffer until the plan is sent ([`Pump::planned`]
//! is 0 again). A backend must not reuse (or lend the kernel) a buffer it handed in before that.

use crate::backend::ShardIo;
use crate::backend::gso::{self, GroRelay, GsoBatch, Relayed};
use crate::backend::plan::SendPlan;
use crate::mmsg::{self, BATCH};
use crate::offload::{self, Coalescer, Prepared, VNET_HDR_LEN, VnetHdr};
use crate::shard::{BUF_SIZE, HEADROOM, TAILROOM, Verdict};
use crate::stats::DropReason;
use crate::wire::OVERHEAD;
use std::os::fd::AsFd;
use std::time::Instant;

/// Where a TUN read goes in a buffer: at [`HEADROOM`], or with offloads the vnet header just
/// before it.
#[inline]
pub fn tun_read_at(offload: bool) -> usize {
    if offload {
        HEADROOM - VNET_HDR_LEN
    } else {
        HEADROOM
    }
}

/// Longest TUN read into a [`BUF_SIZE`] buffer at [`tun_read_at`] (leaving [`TAILROOM`]).
#[inline]
pub fn tun_read_len(offload: bool) -> usize {
    BUF_SIZE - TAILROOM - tun_read_at(offload)
}

/// Sets the shard's UDP socket up the way the pump sends and both backends receive:
/// non-blocking, and with offloads UDP GRO on (a warning if the kernel refuses it: then
/// datagrams come frame by frame).
pub fn prepare_udp(io: &ShardIo) -> std::io::Result<()> {
    io.udp.set_nonblocking(true)?;
    if io.offload
        && let Err(e) = mmsg::enable_gro(io.udp.as_fd())
    {
        tracing::warn!(
            "shard {}: UDP GRO not available ({e}); receiving frame by frame",
            io.shard.id()
        );
    }
    Ok(())
}

/// A backend's packet buffers, by index, each [`BUF_SIZE`] bytes.
pub trait Buffers {
    /// Buffer `i`, to work on.
    fn get_mut(&mut self, i: usize) -> &mut [u8];
    /// Buffer `i`, to send from.
    fn get(&self, i: usize) -> &[u8];
}

impl Buffers for [Box<[u8]>] {
    #[inline]
    fn get_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self[i]
    }
    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        &self[i]
    }
}

/// The sending half of a shard: frames planned for one batched send, the GSO batch of a
/// super-packet's frames, the super-packet being merged for sky0.
pub struct Pump {
    plan: SendPlan,
    gso: GsoBatch,
    /// Whether the kernel takes UDP GSO sends here (cleared after it refused one).
    udp_gso: bool,
    co: Coalescer,
}

impl Default for Pump {
    fn default() -> Self {
        Pump::new()
    }
}

impl Pump {
    /// Empty (allocates its two 64 KiB buffers once).
    pub fn new() -> Pump {
        Pump {
            plan: SendPlan::new(),
            gso: GsoBatch::new(),
            udp_gso: true,
            co: Coalescer::new(),
        }
    }

    /// Frames planned and not sent yet (their buffers are still referred to).
    #[inline]
    pub fn planned(&self) -> usize {
        self.plan.len()
    }

    /// Sends what is planned and writes the super-packet being merged: call when a batch of
    /// received buffers is done. Every buffer handed in is free again afterwards.
    pub fn finish(&mut self, io: &ShardIo, bufs: &(impl Buffers + ?Sized)) {
        self.flush(io, bufs);
        self.write_coalesced(io);
    }

    /// Sends the planned frames (sendmmsg batches) and empties the plan.
    pub fn flush(&mut self, io: &ShardIo, bufs: &(impl Buffers + ?Sized)) {
        let n = self.plan.len();
        if n == 0 {
            return;
        }
        let frames = self.plan.frames();
        let sent = match mmsg::send_batch(io.udp.as_fd(), n, |i| {
            let (idx, off, to, len) = frames[i];
            (&bufs.get(idx)[off..off + len], to)
        }) {
            Ok(s) => s,
            Err(_) => {
                for _ in 0..n {
                    io.shard.discard(DropReason::SendError);
                }
                self.plan.clear();
                return;
            }
        };
        for &(_, _, _, len) in &frames[..sent] {
            io.shard.sent(len);
        }
        for _ in sent..n {
            io.shard.discard(DropReason::QueueFull);
        }
        self.plan.clear();
    }

    fn plan(&mut self, io: &ShardIo, bufs: &(impl Buffers + ?Sized), frames: &[Relayed], i: usize) {
        for &(off, to, len) in frames {
            if self.plan.is_full() {
                self.flush(io, bufs);
            }
            self.plan.push(i, off, to, len);
        }
    }

    /// `n` bytes read from the TUN into buffer `i` at [`tun_read_at`]`(io.offload)`. A packet to
    /// send is planned (or, a super-packet, segmented and sent at once after what was planned).
    pub fn from_tun(
        &mut self,
        io: &mut ShardIo,
        bufs: &mut (impl Buffers + ?Sized),
        i: usize,
        n: usize,
    ) {
        if self.plan.is_full() {
            self.flush(io, bufs);
        }
        let buf = bufs.get_mut(i);
        let len = if io.offload {
            let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
                io.shard.discard(DropReason::Malformed);
                return;
            };
            let prepared = VnetHdr::parse(&buf[HEADROOM - VNET_HDR_LEN..HEADROOM])
                .and_then(|h| offload::prepare(&h, &mut buf[HEADROOM..HEADROOM + len]));
            match prepared {
                Err(_) => {
                    io.shard.discard(DropReason::Malformed);
                    return;
                }
                Ok(Prepared::Single) => len,
                Ok(Prepared::Gso(g)) => {
                    // After what was planned before it, to keep the order.
                    self.flush(io, bufs);
                    let pkt = &bufs.get(i)[HEADROOM..HEADROOM + len];
                    self.send_super(io, &g, pkt);
                    return;
                }
            }
        } else {
            n
        };
        match io.shard.from_tun(buf, len) {
            Verdict::Send { to, len } => self.plan.push(i, 0, to, len),
            Verdict::Punt { len } => punt(io, &buf[HEADROOM..HEADROOM + len]),
            // A packet from sky0 is never delivered back to sky0.
            Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {}
        }
    }

    /// The segments of TCP super-packet `pkt`, each sealed into its own frame, back to back in
    /// the GSO batch, sent as UDP GSO sends.
    fn send_super(&mut self, io: &mut ShardIo, g: &offload::Gso, pkt: &[u8]) {
        for s in 0..g.segments() {
            if !self.gso.fits(OVERHEAD + g.seg_len(s)) {
                self.send_gso(io);
            }
            let (at, frame) = self.gso.tail();
            let Ok(sl) = g.write(pkt, s, &mut frame[HEADROOM..]) else {
                io.shard.discard(DropReason::TooBig);
                continue;
            };
            match io.shard.from_tun(frame, sl) {
                Verdict::Send { to, len } => {
                    if self.gso.other_destination(to) {
                        // Another destination (cannot happen within one flow).
                        self.send_gso(io);
                        self.gso.move_to_front(at, len);
                    }
                    self.gso.push(to, len);
                }
                Verdict::Punt { len } => {
                    punt(io, &self.gso.tail().1[HEADROOM..HEADROOM + len]);
                }
                Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {}
            }
        }
        self.send_gso(io);
    }

    /// Sends the GSO batch (as one UDP GSO send if it can) and empties it.
    fn send_gso(&mut self, io: &ShardIo) {
        let Some(g) = self.gso.take() else {
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

    /// A datagram of `total` bytes received into buffer `i` at offset 0; `seg` is its UDP GRO
    /// segment size when it holds several frames (every one but the last that long), else 0.
    /// Delivered packets go to sky0 (merged with offloads); relayed frames are planned, or, when
    /// every frame of a GRO datagram goes unchanged to one peer, the datagram is sent again
    /// whole as one UDP GSO send.
    pub fn from_udp(
        &mut self,
        io: &mut ShardIo,
        bufs: &mut (impl Buffers + ?Sized),
        i: usize,
        total: usize,
        seg: usize,
    ) {
        if seg == 0 || seg >= total {
            if self.plan.is_full() {
                self.flush(io, bufs);
            }
            let buf = bufs.get_mut(i);
            match io.shard.from_udp(buf, total) {
                Verdict::Send { to, len } => self.plan.push(i, 0, to, len),
                Verdict::Deliver { len } => self.deliver(io, buf, len),
                // (`from_udp` never punts.)
                Verdict::Drop(_) | Verdict::Consumed | Verdict::Punt { .. } => {}
            }
            return;
        }
        let mut off = 0;
        let mut rel = GroRelay::new();
        while off < total {
            let flen = seg.min(total - off);
            match io.shard.from_udp(&mut bufs.get_mut(i)[off..], flen) {
                Verdict::Send { to, len } => {
                    rel.relayed(off, flen, to, len, |f| self.plan(io, bufs, f, i));
                }
                Verdict::Deliver { len } => {
                    rel.other();
                    self.deliver(io, &mut bufs.get_mut(i)[off..], len);
                }
                Verdict::Drop(_) | Verdict::Consumed | Verdict::Punt { .. } => rel.other(),
            }
            off += seg;
        }
        let Some(to) = rel.whole(seg) else {
            self.plan(io, bufs, rel.relayed_frames(), i);
            return;
        };
        // Send the datagram whole again, after what was planned before it.
        self.flush(io, bufs);
        let frames = rel.frames();
        match mmsg::send_gso(io.udp.as_fd(), &bufs.get(i)[..total], seg as u16, &to) {
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
            Err(_) => self.plan(io, bufs, rel.relayed_frames(), i),
        }
    }

    /// A packet to deliver, at `buf[HEADROOM..HEADROOM + len]`: with offloads merged into the
    /// super-packet being built (that one written first when it cannot join), else written.
    fn deliver(&mut self, io: &ShardIo, buf: &mut [u8], len: usize) {
        if io.offload {
            let pkt = &buf[HEADROOM..HEADROOM + len];
            if self.co.push(pkt) {
                return;
            }
            self.write_coalesced(io);
            if self.co.push(pkt) {
                return;
            }
        }
        write_tun(io, buf, len);
    }

    /// Writes the super-packet being merged, if any.
    fn write_coalesced(&mut self, io: &ShardIo) {
        let (segs, bytes) = (self.co.segments() as u64, self.co.segment_bytes());
        if segs == 0 {
            return;
        }
        match rustix::io::write(&io.tun, self.co.finish()) {
            Ok(_) => io.shard.delivered_many(segs, bytes),
            Err(rustix::io::Errno::AGAIN) => {
                io.shard.discard(DropReason::QueueFull);
            }
            Err(_) => {
                io.shard.discard(DropReason::SendError);
            }
        }
    }
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
