//! UDP GSO batching, sans I/O: frames sealed back to back in one buffer, every one but the last
//! of the same length, to one destination, for one UDP GSO send (`UDP_SEGMENT`: the kernel cuts
//! the buffer into datagrams of the first frame's length). The backend does the send.

use crate::mmsg::{GSO_MAX_BYTES, GSO_MAX_SEGS};
use crate::shard::BUF_SIZE;
use std::net::SocketAddr;

/// Frames of one TCP super-packet, back to back, for one UDP GSO send.
pub struct GsoBatch {
    out: Box<[u8]>,
    used: usize,
    frames: usize,
    /// Length of the first frame: the GSO segment size.
    first: usize,
    /// A frame shorter than `first` was added: nothing may follow it.
    closed: bool,
    to: SocketAddr,
}

/// A full group taken out of a [`GsoBatch`] to be sent.
pub struct GsoGroup<'a> {
    /// The frames, back to back.
    pub out: &'a [u8],
    /// How many.
    pub frames: usize,
    /// Length of each but the last: the GSO segment size.
    pub first: usize,
    /// Where they all go.
    pub to: SocketAddr,
}

impl GsoGroup<'_> {
    /// Frame `i`.
    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        let at = i * self.first;
        &self.out[at..at + frame_len(i, self.frames, self.first, self.out.len())]
    }

    /// Length of frame `i`.
    #[inline]
    pub fn frame_len(&self, i: usize) -> usize {
        frame_len(i, self.frames, self.first, self.out.len())
    }
}

impl Default for GsoBatch {
    fn default() -> Self {
        GsoBatch::new()
    }
}

impl GsoBatch {
    /// Empty, with a buffer of [`BUF_SIZE`] bytes.
    pub fn new() -> GsoBatch {
        GsoBatch {
            out: vec![0u8; BUF_SIZE].into_boxed_slice(),
            used: 0,
            frames: 0,
            first: 0,
            closed: false,
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Whether a frame of `len` bytes may join the group.
    #[inline]
    pub fn fits(&self, len: usize) -> bool {
        self.frames == 0
            || (self.frames < GSO_MAX_SEGS
                && !self.closed
                && len <= self.first
                && self.used + len <= GSO_MAX_BYTES)
    }

    /// Where the next frame is built: its offset in the buffer, and the buffer from there (a
    /// frame as [`crate::shard::Shard::from_tun`] takes it: the inner packet at `HEADROOM`).
    #[inline]
    pub fn tail(&mut self) -> (usize, &mut [u8]) {
        (self.used, &mut self.out[self.used..])
    }

    /// Whether the group holds frames to a destination other than `to` (then it must be sent
    /// before a frame to `to` joins it).
    #[inline]
    pub fn other_destination(&self, to: SocketAddr) -> bool {
        self.frames > 0 && to != self.to
    }

    /// Moves the `len`-byte frame built at offset `at` (see [`GsoBatch::tail`]) to the front,
    /// after the group it was built behind was taken.
    #[inline]
    pub fn move_to_front(&mut self, at: usize, len: usize) {
        self.out.copy_within(at..at + len, 0);
    }

    /// Adds the `len`-byte frame to `to` built at the [`GsoBatch::tail`] to the group (which
    /// [`GsoBatch::fits`] it, and holds no frame to another destination).
    #[inline]
    pub fn push(&mut self, to: SocketAddr, len: usize) {
        if self.frames == 0 {
            self.first = len;
            self.to = to;
        } else if len < self.first {
            self.closed = true;
        }
        self.used += len;
        self.frames += 1;
    }

    /// The group to send (`None` when empty); the batch is empty afterwards.
    #[inline]
    pub fn take(&mut self) -> Option<GsoGroup<'_>> {
        let (frames, first, to, used) = (self.frames, self.first, self.to, self.used);
        if frames == 0 {
            return None;
        }
        self.used = 0;
        self.frames = 0;
        self.closed = false;
        Some(GsoGroup {
            out: &self.out[..used],
            frames,
            first,
            to,
        })
    }
}

/// A relayed frame of a datagram: (offset in the datagram's buffer, destination, length).
pub type Relayed = (usize, SocketAddr, usize);

/// The frames of one received UDP GRO datagram (several frames, each but the last of one size)
/// as the shard handles them one by one: which were relayed, and whether the datagram may go out
/// again as it is, as one UDP GSO send (every frame relayed, unchanged in length, to one peer).
pub struct GroRelay {
    /// Relayed frames not handed on yet.
    rel: [Relayed; GSO_MAX_SEGS],
    nrel: usize,
    /// Frames of the datagram seen.
    frames: usize,
    /// Every frame so far relayed, unchanged in length, to one peer.
    whole: bool,
}

impl Default for GroRelay {
    fn default() -> Self {
        GroRelay::new()
    }
}

impl GroRelay {
    /// Before the datagram's first frame.
    #[inline]
    pub fn new() -> GroRelay {
        GroRelay {
            rel: [(0usize, SocketAddr::from(([0, 0, 0, 0], 0)), 0usize); GSO_MAX_SEGS],
            nrel: 0,
            frames: 0,
            whole: true,
        }
    }

    /// A frame that was not relayed (delivered or dropped).
    #[inline]
    pub fn other(&mut self) {
        self.frames += 1;
        self.whole = false;
    }

    /// The frame at `off`, `flen` bytes as received, relayed as `len` bytes to `to`. When
    /// [`GSO_MAX_SEGS`] frames are held already, they are handed to `spill` first (to be sent
    /// frame by frame; the datagram then does not go out whole).
    #[inline]
    pub fn relayed(
        &mut self,
        off: usize,
        flen: usize,
        to: SocketAddr,
        len: usize,
        spill: impl FnOnce(&[Relayed]),
    ) {
        self.frames += 1;
        if len != flen || (self.nrel > 0 && self.rel[0].1 != to) {
            self.whole = false;
        }
        if self.nrel == GSO_MAX_SEGS {
            spill(&self.rel[..self.nrel]);
            self.nrel = 0;
            self.whole = false;
        }
        self.rel[self.nrel] = (off, to, len);
        self.nrel += 1;
    }

    /// Where the datagram goes if it may be sent again whole, as UDP GSO segments of `seg`
    /// bytes (after every frame was handled).
    #[inline]
    pub fn whole(&self, seg: usize) -> Option<SocketAddr> {
        (self.whole && self.frames > 1 && self.nrel == self.frames && seg <= usize::from(u16::MAX))
            .then_some(self.rel[0].1)
    }

    /// Frames of the datagram seen.
    #[inline]
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The relayed frames not handed to `spill`, in order.
    #[inline]
    pub fn relayed_frames(&self) -> &[Relayed] {
        &self.rel[..self.nrel]
    }
}

/// Length of frame `i` of `n` in a group of `first`-byte frames, `used` bytes in all.
#[inline]
pub fn frame_len(i: usize, n: usize, first: usize, used: usize) -> usize {
    if i + 1 == n { used - i * first } else { first }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gro_relay_is_whole_only_when_every_frame_goes_unchanged_to_one_peer() {
        let a = SocketAddr::from(([127, 0, 0, 1], 9));
        let c = SocketAddr::from(([127, 0, 0, 1], 10));
        let no_spill = |_: &[Relayed]| panic!("spilled");
        let mut r = GroRelay::new();
        r.relayed(0, 100, a, 100, no_spill);
        assert_eq!(r.whole(100), None, "a single frame is not sent as GSO");
        r.relayed(100, 40, a, 40, no_spill);
        assert_eq!(r.whole(100), Some(a));
        assert_eq!(r.whole(70000), None, "segment size beyond u16");
        assert_eq!(r.frames(), 2);
        assert_eq!(r.relayed_frames(), &[(0, a, 100), (100, a, 40)]);
        // Another peer, a changed length, or a frame not relayed: frame by frame.
        let mut r = GroRelay::new();
        r.relayed(0, 100, a, 100, no_spill);
        r.relayed(100, 100, c, 100, no_spill);
        assert_eq!(r.whole(100), None);
        let mut r = GroRelay::new();
        r.relayed(0, 100, a, 100, no_spill);
        r.relayed(100, 100, a, 90, no_spill);
        assert_eq!(r.whole(100), None);
        let mut r = GroRelay::new();
        r.relayed(0, 100, a, 100, no_spill);
        r.other();
        assert_eq!((r.whole(100), r.frames()), (None, 2));
        // More frames than one GSO send takes: the first ones are spilled.
        let mut r = GroRelay::new();
        let mut spilled = Vec::new();
        for k in 0..GSO_MAX_SEGS + 1 {
            r.relayed(k * 10, 10, a, 10, |f| spilled.extend_from_slice(f));
        }
        assert_eq!(spilled.len(), GSO_MAX_SEGS);
        assert_eq!(r.relayed_frames(), &[(GSO_MAX_SEGS * 10, a, 10)]);
        assert_eq!(r.whole(10), None);
    }

    #[test]
    fn a_short_frame_closes_the_group_and_take_empties_it() {
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut b = GsoBatch::new();
        assert!(b.take().is_none());
        for (i, len) in [100usize, 100, 60].into_iter().enumerate() {
            assert!(b.fits(len));
            let (at, tail) = b.tail();
            assert_eq!(at, i * 100);
            tail[..len].fill(i as u8 + 1);
            b.push(to, len);
        }
        assert!(!b.fits(10), "nothing follows a shorter frame");
        assert!(!b.other_destination(to));
        assert!(b.other_destination(SocketAddr::from(([127, 0, 0, 1], 10))));
        let g = b.take().unwrap();
        assert_eq!((g.frames, g.first, g.to, g.out.len()), (3, 100, to, 260));
        assert_eq!(g.frame_len(2), 60);
        assert!(g.frame(1).iter().all(|&x| x == 2));
        assert!(g.frame(2).len() == 60 && g.frame(2).iter().all(|&x| x == 3));
        assert!(b.take().is_none());
        assert!(b.fits(1000));
        assert_eq!(b.tail().0, 0);
    }
}
