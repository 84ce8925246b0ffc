//! Send planning, sans I/O: the frames a batch of buffers produced, collected for one batched
//! send (at most [`BATCH`]; the backend sends and empties the plan).

use crate::mmsg::BATCH;
use std::net::SocketAddr;

/// One frame to send: (buffer index, offset in it, destination, length).
pub type Planned = (usize, usize, SocketAddr, usize);

/// Frames to send from a batch of buffers, in order.
pub struct SendPlan {
    frames: [Planned; BATCH],
    len: usize,
}

impl Default for SendPlan {
    fn default() -> Self {
        SendPlan::new()
    }
}

impl SendPlan {
    /// Empty.
    pub fn new() -> SendPlan {
        SendPlan {
            frames: [(0, 0, SocketAddr::from(([0, 0, 0, 0], 0)), 0); BATCH],
            len: 0,
        }
    }

    /// Frames planned.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing planned.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`BATCH`] frames planned: send before adding more.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Plans the frame `buf[off..off + len]` of buffer `buf` to `to`. Panics when full.
    #[inline]
    pub fn push(&mut self, buf: usize, off: usize, to: SocketAddr, len: usize) {
        self.frames[self.len] = (buf, off, to, len);
        self.len += 1;
    }

    /// Plans frames of buffer `buf`, given as (offset, destination, length), calling `flush`
    /// (which sends and [`clear`](SendPlan::clear)s the plan) whenever it is full.
    #[inline]
    pub fn push_frames(
        &mut self,
        buf: usize,
        frames: &[(usize, SocketAddr, usize)],
        mut flush: impl FnMut(&mut SendPlan),
    ) {
        for &(off, to, len) in frames {
            if self.is_full() {
                flush(self);
            }
            self.push(buf, off, to, len);
        }
    }

    /// The planned frames, in order.
    #[inline]
    pub fn frames(&self) -> &[Planned] {
        &self.frames[..self.len]
    }

    /// Forgets every planned frame (after they were sent or counted as dropped).
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_frames_flushes_when_full_and_keeps_the_order() {
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut p = SendPlan::new();
        p.push(0, 0, to, 10);
        let frames: Vec<_> = (0..BATCH).map(|i| (i * 100, to, 100)).collect();
        let mut sent = Vec::new();
        p.push_frames(3, &frames, |p| {
            sent.extend_from_slice(p.frames());
            p.clear();
        });
        assert_eq!(sent.len(), BATCH);
        assert_eq!(sent[0], (0, 0, to, 10));
        assert_eq!(sent[1], (3, 0, to, 100));
        assert_eq!(p.len(), 1);
        assert_eq!(p.frames()[0], (3, (BATCH - 1) * 100, to, 100));
    }
}
