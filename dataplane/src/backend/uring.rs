//! The io_uring backend: one ring per shard, created and used only by the shard's thread
//! (SINGLE_ISSUER + DEFER_TASKRUN where the kernel has them). The ring does the receiving; what
//! comes in goes to [`Pump`], which hands it to the shard and sends (sendmmsg batches, UDP GSO,
//! TUN writes) the way the epoll backend does.
//!
//! - UDP: one multishot `recvmsg` picking buffers from a provided-buffer ring (`UDP_BUFS`
//!   buffers). No name is asked for, and control data of [`mmsg::GRO_CONTROL_LEN`] bytes (the
//!   UDP GRO segment size, with offloads), so the payload starts at the fixed offset `PREFIX`
//!   (checked on every datagram), where [`Pump::from_udp`] gets the buffer as a
//!   [`BUF_SIZE`]-byte frame buffer. When the multishot receive ends (e.g. `ENOBUFS`: every
//!   buffer is out) it is re-armed once a buffer is back.
//! - TUN: `TUN_SLOTS` reads outstanding on the shard's queue, each into its own buffer
//!   (registered as fixed buffers when the kernel lets us pin them; plain reads otherwise) at
//!   [`pump::tun_read_at`]: with offloads a read is a vnet header and maybe a TCP super-packet.
//!   The queue fd is switched to blocking mode for as long as the ring runs (a read on an
//!   `O_NONBLOCK` file fails with `EAGAIN` instead of waiting; on a blocking one io_uring arms
//!   an internal poll and retries). The fd is this shard's queue and nobody else reads it; a
//!   TUN write never blocks (the device has no transmit queue to wait on).
//! - A buffer handed to the pump goes back to the kernel (read re-armed, or returned to the
//!   buffer ring) once no planned send refers to it: when the pump's plan is empty, and at the
//!   end of every loop turn. The buffers the kernel does not hold are tracked (`Store::ours`),
//!   and only those are ever seen from Rust.
//! - Each loop turn submits everything queued in one `io_uring_enter` that also waits for at
//!   least one completion or `IDLE`, handles at most `REAP` completions, refreshes the tables.
//! - Stop: every operation in flight is cancelled (`ASYNC_CANCEL_ANY`) and the loop goes on
//!   until the last completion arrived; only then are the buffers freed (after the ring). If
//!   that does not happen within `DRAIN`, the buffers are leaked instead of freed.

use crate::backend::ShardIo;
use crate::backend::pump::{self, Buffers, Pump};
use crate::mmsg;
use crate::shard::BUF_SIZE;
use crate::stats::DropReason;
use ::io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustix::fs::OFlags;
use std::alloc::Layout;
use std::io;
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
/// All buffers: TUN slots first (index = slot), then UDP buffers (index = TUN_SLOTS + id).
const BUFS: usize = TUN_SLOTS + UDP_BUFS as usize;
/// Buffer group of the UDP buffer ring.
const BGID: u16 = 0;
/// `size_of::<io_uring_recvmsg_out>()`: the header a multishot recvmsg puts before the name,
/// control data and payload.
const RECV_OUT: usize = 16;
/// Where the payload of a multishot recvmsg starts: no name is asked for, and control data
/// of [`mmsg::GRO_CONTROL_LEN`] bytes (checked on every datagram). TUN slots leave it unused.
const PREFIX: usize = RECV_OUT + mmsg::GRO_CONTROL_LEN;
/// Bytes of one provided UDP buffer: the prefix, then a whole packet buffer.
const UDP_BUF_LEN: usize = PREFIX + BUF_SIZE;
/// Distance between buffers in the slab.
const STRIDE: usize = UDP_BUF_LEN.next_multiple_of(64);
/// Completions handled per loop turn.
const REAP: usize = 256;
/// Longest sleep: how fast a stop request or a table change is noticed on an idle shard.
const IDLE: Duration = Duration::from_millis(100);
/// How long a stopping shard waits for the kernel to give back its buffers.
const DRAIN: Duration = Duration::from_secs(5);

/// Kinds of operation, in the upper half of `user_data`; the lower half is the slot / buffer id.
const K_TUN_READ: u64 = 1;
const K_UDP_RECV: u64 = 3;
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

impl Slab {
    /// `len` bytes at `off`, to read.
    ///
    /// # Safety
    ///
    /// `off + len` is within the slab, and no operation in flight writes those bytes.
    unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.layout.size());
        // SAFETY: in bounds and initialised (caller, zeroed at allocation); nobody writes them
        // meanwhile (caller); `&self` excludes a `slice` of them.
        unsafe { std::slice::from_raw_parts(self.at(off), len) }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// The `msghdr` template of a multishot recvmsg: no name, `control` bytes of control data.
#[repr(C)]
struct RecvHdr {
    hdr: libc::msghdr,
}

impl RecvHdr {
    fn new(control: usize) -> RecvHdr {
        // SAFETY: a plain C struct; all-zero is valid (null pointers, zero lengths).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_controllen = control as _;
        RecvHdr { hdr }
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
    let hdr = RecvHdr::new(0);
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

/// The packet buffers of a shard, and which of them the kernel holds.
struct Store {
    slab: Slab,
    /// Bit `i`: buffer `i` is ours (handed back by the kernel, not lent again yet). Only such
    /// buffers are ever seen as Rust slices.
    ours: [u64; BUFS.div_ceil(64)],
}

impl Store {
    fn new() -> io::Result<Store> {
        Ok(Store {
            slab: Slab::new(BUFS * STRIDE)?,
            ours: [0; BUFS.div_ceil(64)],
        })
    }

    /// Address of byte `off` of buffer `i`'s frame (the frame starts at `PREFIX`).
    fn frame_at(&self, i: usize, off: usize) -> *mut u8 {
        self.slab.at(i * STRIDE + PREFIX + off)
    }

    fn is_ours(&self, i: usize) -> bool {
        self.ours[i / 64] & (1 << (i % 64)) != 0
    }

    /// The kernel handed buffer `i` back.
    fn take(&mut self, i: usize) {
        self.ours[i / 64] |= 1 << (i % 64);
    }

    /// Buffer `i` is about to be lent to the kernel: no slice of it may be made until `take`.
    fn lend(&mut self, i: usize) {
        self.ours[i / 64] &= !(1 << (i % 64));
    }

    /// Buffer `i` from `PREFIX` (its whole UDP receive space), to parse a receive.
    fn udp_space(&self, i: usize) -> &[u8] {
        assert!(self.is_ours(i), "buffer {i} is lent to the kernel");
        // SAFETY: within the slab; ours, so no operation in flight uses it.
        unsafe { self.slab.bytes(i * STRIDE, UDP_BUF_LEN) }
    }
}

impl Buffers for Store {
    fn get_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(self.is_ours(i), "buffer {i} is lent to the kernel");
        // SAFETY: within the slab (i < BUFS); ours, so no operation in flight uses it.
        unsafe { self.slab.slice(i * STRIDE + PREFIX, BUF_SIZE) }
    }

    fn get(&self, i: usize) -> &[u8] {
        assert!(self.is_ours(i), "buffer {i} is lent to the kernel");
        // SAFETY: as above.
        unsafe { self.slab.bytes(i * STRIDE + PREFIX, BUF_SIZE) }
    }
}

/// One shard's ring and every buffer it lends the kernel. Field order is drop order: the ring
/// goes before the memory it may still point into.
struct Uring {
    ring: IoUring,
    store: Store,
    /// The provided-buffer ring (`UDP_BUFS` entries) of UDP buffers.
    pbuf: Slab,
    /// Template of the multishot recvmsg.
    recv_hdr: Box<RecvHdr>,
    tun: RawFd,
    udp: RawFd,
    /// Where a TUN read goes in its buffer, and how long it may be.
    tun_at: usize,
    tun_len: u32,
    /// TUN reads use registered buffers.
    fixed: bool,
    /// Our copy of the buffer ring's tail.
    tail: u16,
    /// UDP buffers out of the buffer ring (received, not yet given back).
    held: u16,
    recv_armed: bool,
    /// Buffers handed to the pump and not lent to the kernel again yet.
    done: [u16; BUFS],
    ndone: usize,
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
            store: Store::new()?,
            pbuf: Slab::new(usize::from(UDP_BUFS) * std::mem::size_of::<types::BufRingEntry>())?,
            recv_hdr: Box::new(RecvHdr::new(mmsg::GRO_CONTROL_LEN)),
            tun: io.tun.as_raw_fd(),
            udp: io.udp.as_raw_fd(),
            tun_at: pump::tun_read_at(io.offload),
            tun_len: pump::tun_read_len(io.offload) as u32,
            fixed: false,
            tail: 0,
            held: UDP_BUFS,
            recv_armed: false,
            done: [0; BUFS],
            ndone: 0,
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
            iov_base: u.store.frame_at(i, 0).cast(),
            iov_len: BUF_SIZE,
        });
        // SAFETY: each iovec is slot i's BUF_SIZE frame inside the slab, which outlives the
        // ring (field order) or is leaked. Pinning can fail (RLIMIT_MEMLOCK): then plain reads.
        u.fixed = unsafe { u.ring.submitter().register_buffers(&iovs) }.is_ok();
        Ok(u)
    }

    /// Returns UDP buffer `bid` to the buffer ring.
    fn give_back(&mut self, bid: u16) {
        let i = TUN_SLOTS + usize::from(bid);
        self.store.lend(i);
        let base = self.pbuf.at(0).cast::<types::BufRingEntry>();
        let slot = usize::from(self.tail & (UDP_BUFS - 1));
        // SAFETY: `slot` < UDP_BUFS entries of `pbuf`; the entry at our tail is past what the
        // kernel may consume until we publish the new tail below. (For entry 0 the kernel
        // reads its `resv` field as the tail; the setters write only addr, len and bid.)
        let e = unsafe { &mut *base.add(slot) };
        e.set_addr(self.store.slab.at(i * STRIDE) as u64);
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
        self.store.lend(slot);
        let ptr = self.store.frame_at(slot, self.tun_at);
        let e = if self.fixed {
            opcode::ReadFixed::new(types::Fd(self.tun), ptr, self.tun_len, slot as u16).build()
        } else {
            opcode::Read::new(types::Fd(self.tun), ptr, self.tun_len).build()
        };
        // SAFETY: the read goes into slot `slot`'s frame inside the slab (outlives every
        // operation, see `Uring`), which is lent: Rust makes no slice of it until this read
        // completes (`tun_read_done` takes it back).
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

    /// Buffer `i` went through the pump: lend it again once no planned send refers to it.
    fn handed(&mut self, i: usize) {
        self.done[self.ndone] = i as u16;
        self.ndone += 1;
    }

    /// Lends every buffer the pump is done with to the kernel again (the caller made sure no
    /// planned send refers to them).
    fn release(&mut self) -> io::Result<()> {
        let mut r = Ok(());
        while self.ndone > 0 {
            self.ndone -= 1;
            let i = usize::from(self.done[self.ndone]);
            if i < TUN_SLOTS {
                if !self.stopping
                    && let Err(e) = self.arm_tun_read(i)
                {
                    r = Err(e);
                }
            } else {
                self.give_back((i - TUN_SLOTS) as u16);
            }
        }
        r
    }

    fn complete(
        &mut self,
        io: &mut ShardIo,
        pump: &mut Pump,
        data: u64,
        res: i32,
        flags: u32,
    ) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.inflight -= 1;
        }
        let idx = (data & 0xffff_ffff) as usize;
        match data >> 32 {
            K_TUN_READ => self.tun_read_done(io, pump, idx, res),
            K_UDP_RECV => self.udp_recv_done(io, pump, res, flags),
            _ => Ok(()),
        }
    }

    fn tun_read_done(
        &mut self,
        io: &mut ShardIo,
        pump: &mut Pump,
        slot: usize,
        res: i32,
    ) -> io::Result<()> {
        self.store.take(slot);
        if self.stopping {
            return Ok(());
        }
        if res < 0 {
            return match -res {
                libc::EINTR | libc::EAGAIN => self.arm_tun_read(slot),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        pump.from_tun(io, &mut self.store, slot, res as usize);
        self.handed(slot);
        Ok(())
    }

    fn udp_recv_done(
        &mut self,
        io: &mut ShardIo,
        pump: &mut Pump,
        res: i32,
        flags: u32,
    ) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.recv_armed = false;
        }
        let bid = cqueue::buffer_select(flags);
        if let Some(bid) = bid {
            self.held += 1;
            self.store.take(TUN_SLOTS + usize::from(bid));
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
        let i = TUN_SLOTS + usize::from(bid);
        let space = self.store.udp_space(i);
        let total = (res as usize).min(UDP_BUF_LEN);
        let (plen, seg) = match types::RecvMsgOut::parse(&space[..total], &self.recv_hdr.hdr) {
            Ok(m)
                if !m.is_payload_truncated()
                    && m.payload_data().as_ptr() == space[PREFIX..].as_ptr() =>
            {
                let plen = m.payload_data().len();
                (plen, mmsg::gro_segment_of(m.control_data(), plen))
            }
            _ => {
                io.shard.discard(DropReason::Malformed);
                self.give_back(bid);
                return Ok(());
            }
        };
        pump.from_udp(io, &mut self.store, i, plen, seg);
        self.handed(i);
        Ok(())
    }

    /// The loop. Returns the first error, and whether every operation ended (so the buffers
    /// may be freed).
    fn turns(&mut self, io: &mut ShardIo, pump: &mut Pump) -> (io::Result<()>, bool) {
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
                let mut r = self.complete(io, pump, data, res, flags);
                if pump.planned() == 0 {
                    r = r.and(self.release());
                }
                if let Err(e) = r {
                    err.get_or_insert(e);
                    self.begin_stop();
                }
            }
            pump.finish(io, &self.store);
            if let Err(e) = self.release() {
                err.get_or_insert(e);
                self.begin_stop();
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
    pump::prepare_udp(&io)?;
    let mut pump = Pump::new();
    let (result, drained) = match Uring::new(&io) {
        Ok(mut u) => {
            let (result, drained) = u.turns(&mut io, &mut pump);
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
