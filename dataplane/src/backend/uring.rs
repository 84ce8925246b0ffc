//! The io_uring backend: one ring per shard, created and used only by the shard's thread
//! (SINGLE_ISSUER + DEFER_TASKRUN where the kernel has them).
//!
//! - UDP: one multishot `recvmsg` picking buffers from a provided-buffer ring (`UDP_BUFS`
//!   buffers of [`BUF_SIZE`] payload bytes each). A frame is processed in place: the payload
//!   starts right after the kernel's `io_uring_recvmsg_out` header (no name, no control data
//!   are asked for, so that is a fixed offset), and [`Shard::from_udp`] gets the buffer from
//!   there to its end, i.e. the frame at offset 0 of `BUF_SIZE` bytes. A relayed frame is sent
//!   from that buffer, a delivered packet written to the TUN queue from it; the buffer goes
//!   back to the ring when that completed (at once on a drop). When the multishot receive ends
//!   (e.g. `ENOBUFS`: every buffer is out) it is re-armed once a buffer is back.
//! - TUN: `TUN_SLOTS` reads outstanding on the shard's queue, each into its own slot of a
//!   per-shard slab (registered as fixed buffers when the kernel lets us pin them; plain reads
//!   otherwise) at [`HEADROOM`]. A read's packet is sealed in place and sent from the slot; the
//!   read is re-armed when that send completed (at once on a drop).
//!   The queue fd is switched to blocking mode for as long as the ring runs (a read on an
//!   `O_NONBLOCK` file fails with `EAGAIN` instead of waiting; on a blocking one io_uring arms
//!   an internal poll and retries). The fd is this shard's queue and nobody else reads it.
//! - Each loop turn submits everything queued in one `io_uring_enter` that also waits for at
//!   least one completion or [`IDLE`], handles at most `REAP` completions, refreshes the tables.
//! - Stop: every operation in flight is cancelled (`ASYNC_CANCEL_ANY`) and the loop goes on
//!   until the last completion arrived; only then are the buffers freed (after the ring). If
//!   that does not happen within `DRAIN`, the buffers are leaked instead of freed.

use crate::backend::ShardIo;
use crate::mmsg;
use crate::shard::TAILROOM;
use crate::shard::{BUF_SIZE, HEADROOM, Verdict};
use crate::stats::DropReason;
use ::io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustix::fs::OFlags;
use std::alloc::Layout;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Submission queue entries (the completion queue gets twice as many).
const RING_ENTRIES: u32 = 256;
/// Reads outstanding on the TUN queue. Every read parked on an empty queue is woken by each
/// packet (io_uring's internal poll is not exclusive) and all but one re-arm, so more is not
/// free: 32 doubled the CPU per packet of a ping-pong flood, 16 matched epoll; 8 lost TCP
/// throughput.
const TUN_SLOTS: usize = 16;
/// Provided buffers for UDP receive (a power of two).
const UDP_BUFS: u16 = 128;
/// Buffer group of the UDP buffer ring.
const BGID: u16 = 0;
/// `size_of::<io_uring_recvmsg_out>()`: where the payload of a multishot recvmsg starts when
/// neither name nor control data are requested (checked on every frame).
const RECV_OUT: usize = 16;
/// Bytes of one provided UDP buffer: the recvmsg header, then a whole packet buffer.
const UDP_BUF_LEN: usize = RECV_OUT + BUF_SIZE;
/// Distance between buffers in a slab.
const STRIDE: usize = (UDP_BUF_LEN).next_multiple_of(64);
/// Completions handled per loop turn.
const REAP: usize = 256;
/// Longest sleep: how fast a stop request or a table change is noticed on an idle shard.
const IDLE: Duration = Duration::from_millis(100);
/// How long a stopping shard waits for the kernel to give back its buffers.
const DRAIN: Duration = Duration::from_secs(5);

/// Kinds of operation, in the upper half of `user_data`; the lower half is the slot / buffer id.
const K_TUN_READ: u64 = 1;
const K_TUN_SEND: u64 = 2;
const K_UDP_RECV: u64 = 3;
const K_UDP_SEND: u64 = 4;
const K_UDP_WRITE: u64 = 5;
const K_CANCEL: u64 = 6;

fn ud(kind: u64, idx: usize) -> u64 {
    (kind << 32) | idx as u64
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// Page-aligned, zeroed memory the kernel reads or writes while operations are in flight.
/// Everything goes through raw pointers derived from `ptr`: Rust references into it are made
/// only for a buffer the kernel has handed back.
struct Slab {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Slab {
    fn new(size: usize) -> io::Result<Slab> {
        let layout = Layout::from_size_align(size.max(1), page_size())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Slab { ptr, layout })
    }

    /// Address of byte `off` (no reference is made).
    fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.layout.size());
        self.ptr.as_ptr().wrapping_add(off)
    }

    /// `len` bytes at `off`.
    ///
    /// # Safety
    ///
    /// `off + len` is within the slab, and no operation in flight uses those bytes.
    unsafe fn slice(&mut self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= self.layout.size());
        // SAFETY: in bounds of our allocation (caller), zero-initialised at allocation, and
        // not accessed by the kernel meanwhile (caller); `&mut self` excludes other slices.
        unsafe { std::slice::from_raw_parts_mut(self.at(off), len) }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// What a SendMsg of one buffer points at; lives as long as the buffer's slot.
#[repr(C)]
struct Msg {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

impl Msg {
    fn zeroed() -> Msg {
        // SAFETY: plain C structs; all-zero is valid (null pointers, zero lengths, AF_UNSPEC).
        unsafe { std::mem::zeroed() }
    }

    /// Points the header at `len` bytes at `data`, to `to`.
    fn prepare(&mut self, data: *const u8, len: usize, to: &SocketAddr) -> *const libc::msghdr {
        let (st, slen) = mmsg::to_storage(to);
        self.addr = st;
        self.iov = libc::iovec {
            iov_base: data as *mut libc::c_void,
            iov_len: len,
        };
        self.hdr.msg_name = (&raw mut self.addr).cast();
        self.hdr.msg_namelen = slen;
        self.hdr.msg_iov = &raw mut self.iov;
        self.hdr.msg_iovlen = 1;
        &raw const self.hdr
    }
}

fn build_ring(entries: u32) -> io::Result<IoUring> {
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        // Kernels before 6.1 refuse DEFER_TASKRUN (and before 6.0 SINGLE_ISSUER).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder().build(entries),
        r => r,
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

/// Whether this backend can run here: a ring can be set up (not refused by seccomp, the
/// `kernel.io_uring_disabled` sysctl, an old kernel, ...) and has what [`run`] uses (timeout on
/// wait, buffer rings, multishot recvmsg). The error says what is missing.
pub fn probe() -> io::Result<()> {
    let mut ring =
        build_ring(8).map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?;
    if !ring.params().is_feature_ext_arg() {
        return Err(unsupported(
            "kernel lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)",
        ));
    }
    let mut p = ::io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring probe: {e}")))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::Read::CODE, "read"),
        (opcode::ReadFixed::CODE, "read_fixed"),
        (opcode::Write::CODE, "write"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
    ] {
        if !p.is_supported(code) {
            return Err(unsupported(&format!("kernel lacks io_uring {name}")));
        }
    }
    // A buffer ring, and a multishot recvmsg on it (Linux 6.0+): arm one, cancel it, and
    // look at how it ended.
    let mem = Slab::new(8 * std::mem::size_of::<types::BufRingEntry>())?;
    let sock = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
    let hdr = Msg::zeroed();
    let r = (|| {
        // SAFETY: `mem` is page aligned, 8 entries long, and outlives the ring (dropped below,
        // after it).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(mem.at(0) as u64, 8, BGID, 0)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring buffer ring: {e}")))?;
        let recv = opcode::RecvMsgMulti::new(types::Fd(sock.as_raw_fd()), &raw const hdr.hdr, BGID)
            .build()
            .user_data(1);
        let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
        {
            let mut sq = ring.submission();
            // SAFETY: the recvmsg reads `hdr`, which lives until the ring is dropped, and
            // writes only into buffers of the (empty) buffer ring; a cancel references nothing.
            unsafe {
                sq.push(&recv)
                    .map_err(|_| unsupported("submission queue full"))?;
                sq.push(&cancel)
                    .map_err(|_| unsupported("submission queue full"))?;
            }
        }
        let ts = types::Timespec::from(Duration::from_secs(1));
        let args = types::SubmitArgs::new().timespec(&ts);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut recv_res = None;
        while recv_res.is_none() && Instant::now() < deadline {
            match ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
            for c in ring.completion() {
                if c.user_data() == 1 && !cqueue::more(c.flags()) {
                    recv_res = Some(c.result());
                }
            }
        }
        match recv_res {
            Some(r) if r == -libc::ECANCELED || r == -libc::ENOBUFS || r >= 0 => Ok(()),
            Some(r) => Err(io::Error::new(
                io::Error::from_raw_os_error(-r).kind(),
                format!(
                    "io_uring multishot recvmsg: {}",
                    io::Error::from_raw_os_error(-r)
                ),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "io_uring multishot recvmsg: no completion after cancel",
            )),
        }
    })();
    // The ring first: the kernel lets go of `mem` and `hdr` with it.
    drop(ring);
    drop(mem);
    r
}

/// One shard's ring and every buffer it lends the kernel. Field order is drop order: the ring
/// goes before the memory it may still point into.
struct Uring {
    ring: IoUring,
    tun_bufs: Slab,
    udp_bufs: Slab,
    /// The provided-buffer ring (`UDP_BUFS` entries) of UDP buffers.
    pbuf: Slab,
    tun_msgs: Box<[Msg]>,
    udp_msgs: Box<[Msg]>,
    /// Template of the multishot recvmsg: no name, no control data.
    recv_hdr: Box<Msg>,
    tun: RawFd,
    udp: RawFd,
    /// TUN reads use registered buffers.
    fixed: bool,
    /// Our copy of the buffer ring's tail.
    tail: u16,
    /// UDP buffers out of the buffer ring (received, not yet given back).
    held: u16,
    recv_armed: bool,
    /// Operations submitted whose last completion has not arrived.
    inflight: usize,
    stopping: bool,
}

impl Uring {
    fn new(io: &ShardIo) -> io::Result<Uring> {
        let ring = build_ring(RING_ENTRIES)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(unsupported("kernel lacks IORING_FEAT_EXT_ARG"));
        }
        let mut u = Uring {
            ring,
            tun_bufs: Slab::new(TUN_SLOTS * STRIDE)?,
            udp_bufs: Slab::new(usize::from(UDP_BUFS) * STRIDE)?,
            pbuf: Slab::new(usize::from(UDP_BUFS) * std::mem::size_of::<types::BufRingEntry>())?,
            tun_msgs: (0..TUN_SLOTS).map(|_| Msg::zeroed()).collect(),
            udp_msgs: (0..UDP_BUFS).map(|_| Msg::zeroed()).collect(),
            recv_hdr: Box::new(Msg::zeroed()),
            tun: io.tun.as_raw_fd(),
            udp: io.udp.as_raw_fd(),
            fixed: false,
            tail: 0,
            held: UDP_BUFS,
            recv_armed: false,
            inflight: 0,
            stopping: false,
        };
        // SAFETY: `pbuf` is page aligned and UDP_BUFS entries long; it is a field of `u` after
        // `ring`, so it is freed only after the ring is gone (or leaked, see `run`).
        unsafe {
            u.ring.submitter().register_buf_ring_with_flags(
                u.pbuf.at(0) as u64,
                UDP_BUFS,
                BGID,
                0,
            )?;
        }
        for bid in 0..UDP_BUFS {
            u.give_back(bid);
        }
        let iovs: [libc::iovec; TUN_SLOTS] = std::array::from_fn(|i| libc::iovec {
            iov_base: u.tun_bufs.at(i * STRIDE).cast(),
            iov_len: BUF_SIZE,
        });
        // SAFETY: each iovec is a BUF_SIZE slot inside `tun_bufs`, which outlives the ring
        // (field order) or is leaked. Pinning can fail (RLIMIT_MEMLOCK): then plain reads.
        u.fixed = unsafe { u.ring.submitter().register_buffers(&iovs) }.is_ok();
        Ok(u)
    }

    /// Returns UDP buffer `bid` to the buffer ring.
    fn give_back(&mut self, bid: u16) {
        let base = self.pbuf.at(0).cast::<types::BufRingEntry>();
        let slot = usize::from(self.tail & (UDP_BUFS - 1));
        // SAFETY: `slot` < UDP_BUFS entries of `pbuf`; the entry at our tail is past what the
        // kernel may consume until we publish the new tail below. (For entry 0 the kernel
        // reads its `resv` field as the tail; the setters write only addr, len and bid.)
        let e = unsafe { &mut *base.add(slot) };
        e.set_addr(self.udp_bufs.at(usize::from(bid) * STRIDE) as u64);
        e.set_len(UDP_BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `tail` gives the address of the ring's shared tail (in entry 0), an aligned
        // u16 inside `pbuf` that the kernel reads with acquire ordering.
        let tail = unsafe { AtomicU16::from_ptr(types::BufRingEntry::tail(base).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
        self.held -= 1;
    }

    /// Queues `e`, submitting what is queued when the submission queue is full.
    ///
    /// # Safety
    ///
    /// Every buffer `e` points to stays allocated, and is not touched by Rust, until the
    /// operation's last completion has been reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn arm_tun_read(&mut self, slot: usize) -> io::Result<()> {
        let ptr = self.tun_bufs.at(slot * STRIDE + HEADROOM);
        let len = (BUF_SIZE - HEADROOM - TAILROOM) as u32;
        let e = if self.fixed {
            opcode::ReadFixed::new(types::Fd(self.tun), ptr, len, slot as u16).build()
        } else {
            opcode::Read::new(types::Fd(self.tun), ptr, len).build()
        };
        // SAFETY: the slot is inside `tun_bufs` (outlives every operation, see `Uring`), and
        // nothing in Rust touches it until this read completes (`tun_read_done`).
        unsafe { self.push(&e.user_data(ud(K_TUN_READ, slot))) }
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(types::Fd(self.udp), &raw const self.recv_hdr.hdr, BGID)
            .build()
            .user_data(ud(K_UDP_RECV, 0));
        // SAFETY: `recv_hdr` is boxed and lives as long as the buffers; the data goes into
        // buffers of the buffer ring, which Rust touches only after a completion hands one over.
        unsafe { self.push(&e) }?;
        self.recv_armed = true;
        Ok(())
    }

    fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(ud(K_CANCEL, 0));
        // SAFETY: a cancel request points at no memory. If it cannot be queued the drain
        // deadline in `turns` still bounds the wait.
        let _ = unsafe { self.push(&e) };
    }

    fn count_send(io: &ShardIo, res: i32) {
        match res {
            n if n >= 0 => io.shard.sent(n as usize),
            n if n == -libc::EAGAIN || n == -libc::ENOBUFS || n == -libc::ECANCELED => {
                io.shard.discard(DropReason::QueueFull);
            }
            _ => {
                io.shard.discard(DropReason::SendError);
            }
        }
    }

    fn complete(&mut self, io: &mut ShardIo, data: u64, res: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.inflight -= 1;
        }
        let idx = (data & 0xffff_ffff) as usize;
        match data >> 32 {
            K_TUN_READ => self.tun_read_done(io, idx, res),
            K_TUN_SEND => {
                Self::count_send(io, res);
                if self.stopping {
                    return Ok(());
                }
                self.arm_tun_read(idx)
            }
            K_UDP_RECV => self.udp_recv_done(io, res, flags),
            K_UDP_SEND => {
                Self::count_send(io, res);
                self.give_back(idx as u16);
                Ok(())
            }
            K_UDP_WRITE => {
                match res {
                    n if n >= 0 => io.shard.delivered(n as usize),
                    n if n == -libc::EAGAIN || n == -libc::ECANCELED => {
                        io.shard.discard(DropReason::QueueFull);
                    }
                    _ => {
                        io.shard.discard(DropReason::SendError);
                    }
                }
                self.give_back(idx as u16);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn tun_read_done(&mut self, io: &mut ShardIo, slot: usize, res: i32) -> io::Result<()> {
        if self.stopping {
            return Ok(());
        }
        if res < 0 {
            return match -res {
                libc::EINTR | libc::EAGAIN => self.arm_tun_read(slot),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        let off = slot * STRIDE;
        // SAFETY: the read into this slot completed and nothing else is in flight on it.
        let buf = unsafe { self.tun_bufs.slice(off, BUF_SIZE) };
        match io.shard.from_tun(buf, res as usize) {
            Verdict::Send { to, len } => {
                let data = self.tun_bufs.at(off);
                let hdr = self.tun_msgs[slot].prepare(data, len, &to);
                let e = opcode::SendMsg::new(types::Fd(self.udp), hdr)
                    .build()
                    .user_data(ud(K_TUN_SEND, slot));
                // SAFETY: the frame is in the slot and the header, iovec and address in
                // `tun_msgs[slot]`; both live as long as the ring, and neither is touched
                // until this send completes (then the slot's next read is armed).
                unsafe { self.push(&e) }
            }
            Verdict::Punt { len } => {
                if let Some(g) = io.punt.as_mut() {
                    g.offer(Instant::now(), &buf[HEADROOM..HEADROOM + len]);
                }
                self.arm_tun_read(slot)
            }
            // A packet from sky0 is never delivered back to sky0.
            Verdict::Deliver { .. } | Verdict::Drop(_) | Verdict::Consumed => {
                self.arm_tun_read(slot)
            }
        }
    }

    fn udp_recv_done(&mut self, io: &mut ShardIo, res: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.recv_armed = false;
        }
        let bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            self.held += 1;
        }
        if res < 0 {
            if let Some(bid) = bid {
                self.give_back(bid);
            }
            return match -res {
                // Out of buffers: re-armed when one is back. Cancelled: stopping.
                libc::ENOBUFS | libc::EINTR | libc::ECANCELED => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        let Some(bid) = bid else {
            return Ok(());
        };
        if self.stopping {
            self.give_back(bid);
            return Ok(());
        }
        let off = usize::from(bid) * STRIDE;
        // SAFETY: the kernel handed us buffer `bid` with this completion; it is out of the
        // buffer ring until `give_back`, and no operation uses it.
        let buf = unsafe { self.udp_bufs.slice(off, UDP_BUF_LEN) };
        let total = (res as usize).min(UDP_BUF_LEN);
        let plen = match types::RecvMsgOut::parse(&buf[..total], &self.recv_hdr.hdr) {
            Ok(m)
                if !m.is_payload_truncated()
                    && m.payload_data().as_ptr() == buf[RECV_OUT..].as_ptr() =>
            {
                m.payload_data().len()
            }
            _ => {
                io.shard.discard(DropReason::Malformed);
                self.give_back(bid);
                return Ok(());
            }
        };
        match io.shard.from_udp(&mut buf[RECV_OUT..], plen) {
            Verdict::Send { to, len } => {
                let data = self.udp_bufs.at(off + RECV_OUT);
                let hdr = self.udp_msgs[usize::from(bid)].prepare(data, len, &to);
                let e = opcode::SendMsg::new(types::Fd(self.udp), hdr)
                    .build()
                    .user_data(ud(K_UDP_SEND, usize::from(bid)));
                // SAFETY: the frame is in buffer `bid` and its header in `udp_msgs[bid]`; the
                // buffer goes back to the buffer ring only when this send completed.
                unsafe { self.push(&e) }
            }
            Verdict::Deliver { len } => {
                let data = self.udp_bufs.at(off + RECV_OUT + HEADROOM);
                let e = opcode::Write::new(types::Fd(self.tun), data, len as u32)
                    .build()
                    .user_data(ud(K_UDP_WRITE, usize::from(bid)));
                // SAFETY: the packet is in buffer `bid`, which goes back to the buffer ring
                // only when this write completed.
                unsafe { self.push(&e) }
            }
            // (`from_udp` never punts.)
            Verdict::Drop(_) | Verdict::Consumed | Verdict::Punt { .. } => {
                self.give_back(bid);
                Ok(())
            }
        }
    }

    /// The loop. Returns the first error, and whether every operation ended (so the buffers
    /// may be freed).
    fn turns(&mut self, io: &mut ShardIo) -> (io::Result<()>, bool) {
        let mut err: Option<io::Error> = None;
        let armed = (0..TUN_SLOTS)
            .try_for_each(|s| self.arm_tun_read(s))
            .and_then(|()| self.arm_recv());
        if let Err(e) = armed {
            err = Some(e);
            self.begin_stop();
        }
        let ts = types::Timespec::from(IDLE);
        let args = types::SubmitArgs::new().timespec(&ts);
        let mut cqes = [(0u64, 0i32, 0u32); REAP];
        let mut deadline = None;
        loop {
            if !self.stopping && io.stop.load(Ordering::Relaxed) {
                self.begin_stop();
            }
            if self.stopping {
                if self.inflight == 0 {
                    break;
                }
                let d = *deadline.get_or_insert_with(|| Instant::now() + DRAIN);
                if Instant::now() >= d {
                    return (err.map_or(Ok(()), Err), false);
                }
            }
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => {
                    err.get_or_insert(e);
                    self.begin_stop();
                }
            }
            io.shard.refresh();
            let mut n = 0;
            for c in self.ring.completion() {
                cqes[n] = (c.user_data(), c.result(), c.flags());
                n += 1;
                if n == REAP {
                    break;
                }
            }
            for &(data, res, flags) in &cqes[..n] {
                if let Err(e) = self.complete(io, data, res, flags) {
                    err.get_or_insert(e);
                    self.begin_stop();
                }
            }
            if !self.stopping
                && !self.recv_armed
                && self.held < UDP_BUFS
                && let Err(e) = self.arm_recv()
            {
                err.get_or_insert(e);
                self.begin_stop();
            }
        }
        (err.map_or(Ok(()), Err), true)
    }
}

/// Runs a shard until `io.stop` is set.
pub fn run(mut io: ShardIo) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(io.tun.as_fd())?;
    rustix::fs::fcntl_setfl(io.tun.as_fd(), flags - OFlags::NONBLOCK)?;
    let (result, drained) = match Uring::new(&io) {
        Ok(mut u) => {
            let (result, drained) = u.turns(&mut io);
            if drained {
                let s = u.ring.submitter();
                let _ = s.unregister_buf_ring(BGID);
                if u.fixed {
                    let _ = s.unregister_buffers();
                }
                // Ring first, then the buffers (field order).
                drop(u);
            } else {
                // The kernel may still write into these buffers: never free them.
                std::mem::forget(u);
            }
            (result, drained)
        }
        Err(e) => (Err(e), true),
    };
    let _ = rustix::fs::fcntl_setfl(io.tun.as_fd(), flags);
    if !drained {
        tracing::error!(
            "shard {}: io_uring operations still in flight after {DRAIN:?}; \
             their buffers are leaked",
            io.shard.id()
        );
    }
    result
}
