//! Anti-replay window over 64-bit frame counters (sliding bitmap, in the spirit
//! of WireGuard / RFC 6479, but bit-exact).
//!
//! # Exact boundary
//!
//! Let `M` be the largest counter accepted so far. A counter `c` is accepted iff
//!
//! * `c < MAX_COUNTER`, and
//! * `c` was never accepted before, and
//! * nothing was accepted yet, or `c + WINDOW > M` (i.e. `c >= M - 2047`).
//!
//! So with `M` seen, `M - 2047` is still accepted if unseen and `M - 2048` is
//! rejected as too old; every counter above `M` is accepted (and becomes the new
//! `M`). The window thus covers exactly the `WINDOW = 2048` counters
//! `M - 2047 ..= M`.
//!
//! # Representation
//!
//! A ring of 2048 bits (32 `u64` words): counter `c` lives at bit `c % 2048`.
//! The 2048 counters of the window map to 2048 distinct bits, so no bit is
//! shared. When the window slides from `M` to `N > M`, the bits of `M+1 ..= N`
//! (which held counters now out of the window) are cleared — a whole-word fill
//! when `N - M >= 2048`. No allocation, at most 33 word operations per call.

use crate::wire::MAX_COUNTER;

/// Number of counters the window covers.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// Sliding anti-replay window of [`WINDOW`] counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Bit `c % WINDOW` is set iff counter `c` (in the window) was accepted.
    bits: [u64; WORDS],
    /// Largest accepted counter + 1; 0 when nothing was accepted yet.
    /// Never exceeds `MAX_COUNTER`, so `next - 1` and `c + WINDOW` never wrap.
    next: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

enum Verdict {
    /// Too old, already seen, or `>= MAX_COUNTER`.
    Reject,
    /// Ahead of everything seen.
    Ahead,
    /// Inside the window and unseen: word index and mask.
    InWindow(usize, u64),
}

/// Word index and bit mask of counter `c` in the ring.
fn slot(c: u64) -> (usize, u64) {
    let bit = c % WINDOW;
    // bit < 2048, so bit / 64 < 32 = WORDS: the cast is lossless.
    ((bit / 64) as usize, 1u64 << (bit % 64))
}

impl ReplayWindow {
    /// Empty window: every counter below `MAX_COUNTER` is acceptable.
    pub const fn new() -> Self {
        ReplayWindow {
            bits: [0; WORDS],
            next: 0,
        }
    }

    /// Largest counter accepted so far, if any.
    pub fn max_seen(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    fn classify(&self, counter: u64) -> Verdict {
        if counter >= MAX_COUNTER {
            return Verdict::Reject;
        }
        if counter >= self.next {
            return Verdict::Ahead;
        }
        // counter < MAX_COUNTER = u64::MAX - 8192: no overflow.
        if counter + WINDOW < self.next {
            // counter + 2048 <= M: too old.
            return Verdict::Reject;
        }
        let (word, mask) = slot(counter);
        match self.bits.get(word) {
            Some(w) if w & mask == 0 => Verdict::InWindow(word, mask),
            _ => Verdict::Reject,
        }
    }

    /// Cheap pre-check before decryption: `false` if the counter is too old,
    /// already seen, or `>= MAX_COUNTER`. Does not change the window.
    pub fn check(&self, counter: u64) -> bool {
        !matches!(self.classify(counter), Verdict::Reject)
    }

    /// Records `counter` after the frame authenticated. Returns `false` (and
    /// changes nothing) if it is a replay, too old, or `>= MAX_COUNTER`.
    pub fn update(&mut self, counter: u64) -> bool {
        match self.classify(counter) {
            Verdict::Reject => false,
            Verdict::InWindow(word, mask) => {
                if let Some(w) = self.bits.get_mut(word) {
                    *w |= mask;
                }
                true
            }
            Verdict::Ahead => {
                self.clear_range(self.next, counter);
                // counter < MAX_COUNTER, so counter + 1 <= MAX_COUNTER.
                self.next = counter + 1;
                let (word, mask) = slot(counter);
                if let Some(w) = self.bits.get_mut(word) {
                    *w |= mask;
                }
                true
            }
        }
    }

    /// Clears the bits of counters `from ..= to` (`from <= to < MAX_COUNTER`).
    fn clear_range(&mut self, from: u64, to: u64) {
        if to - from >= WINDOW - 1 {
            self.bits = [0; WORDS];
            return;
        }
        let mut c = from;
        while c <= to {
            let bit = c % WINDOW;
            let off = bit % 64;
            // Bits left in this word, and bits left in the range (<= 2048).
            let n = (64 - off).min(to - c + 1);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << off
            };
            if let Some(w) = self.bits.get_mut((bit / 64) as usize) {
                *w &= !mask;
            }
            c += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Reference model: the set of accepted counters and the max.
    #[derive(Default)]
    struct Model {
        seen: HashSet<u64>,
        max: Option<u64>,
    }

    impl Model {
        fn acceptable(&self, c: u64) -> bool {
            c < MAX_COUNTER
                && !self.seen.contains(&c)
                && self
                    .max
                    .is_none_or(|m| u128::from(c) + 2048 > u128::from(m))
        }
        fn update(&mut self, c: u64) -> bool {
            let ok = self.acceptable(c);
            if ok {
                self.seen.insert(c);
                self.max = Some(self.max.map_or(c, |m| m.max(c)));
            }
            ok
        }
    }

    #[test]
    fn boundary() {
        let mut w = ReplayWindow::new();
        assert!(w.update(5000));
        assert!(w.check(5000 - 2047));
        assert!(!w.check(5000 - 2048));
        assert!(!w.update(5000 - 2048));
        assert!(w.update(5000 - 2047));
        assert!(!w.update(5000 - 2047));
        assert!(!w.update(5000));
        // Sliding by one pushes 5000-2047 out.
        assert!(w.update(5001));
        assert!(!w.check(5000 - 2047));
        assert!(w.check(5001 - 2047));
    }

    #[test]
    fn fresh_and_early_counters() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.max_seen(), None);
        assert!(w.check(0));
        assert!(w.update(10));
        assert!(
            w.update(0),
            "below 2047: every unseen counter is in the window"
        );
        assert!(!w.update(0));
        assert!(w.update(3));
        assert_eq!(w.max_seen(), Some(10));
    }

    #[test]
    fn max_counter_rejected() {
        let mut w = ReplayWindow::new();
        for c in [MAX_COUNTER, MAX_COUNTER + 1, u64::MAX] {
            assert!(!w.check(c));
            assert!(!w.update(c));
        }
        assert!(w.update(MAX_COUNTER - 1));
        assert!(!w.update(MAX_COUNTER - 1));
        assert!(w.update(MAX_COUNTER - 2048));
        assert!(!w.update(MAX_COUNTER - 2049));
        assert!(!w.update(MAX_COUNTER));
    }

    #[test]
    fn slide_exact_window_clears_everything_old() {
        let mut w = ReplayWindow::new();
        for c in 0..2048 {
            assert!(w.update(c));
        }
        // Jump by exactly 2048: all old slots must read as free again for the
        // counters that now map to them.
        assert!(w.update(2047 + 2048));
        for c in 2048..4095 {
            assert!(w.check(c), "{c}");
        }
        assert!(!w.check(2047));
    }

    /// One step of a random scenario, interpreted relative to the current max.
    #[derive(Debug, Clone)]
    enum Op {
        Forward(u64),
        Back(u64),
        NearBoundary(u64),
        Replay(proptest::sample::Index),
        Absolute(u64),
        NearMax(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..70).prop_map(Op::Forward),
            1 => (0u64..5000).prop_map(Op::Forward),
            1 => (0u64..(1 << 40)).prop_map(Op::Forward),
            4 => (0u64..2200).prop_map(Op::Back),
            3 => (2040u64..2056).prop_map(Op::NearBoundary),
            3 => any::<proptest::sample::Index>().prop_map(Op::Replay),
            1 => (0u64..10_000).prop_map(Op::Absolute),
            1 => (0u64..6000).prop_map(|d| Op::NearMax(MAX_COUNTER + 3 - d)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..400)) {
            let mut w = ReplayWindow::new();
            let mut m = Model::default();
            let mut history: Vec<u64> = Vec::new();
            for op in ops {
                let max = m.max.unwrap_or(0);
                let c = match op {
                    Op::Forward(d) => max.saturating_add(d),
                    Op::Back(d) => max.saturating_sub(d),
                    Op::NearBoundary(d) => max.saturating_sub(d),
                    Op::Replay(i) if !history.is_empty() => history[i.index(history.len())],
                    Op::Replay(_) => 0,
                    Op::Absolute(c) | Op::NearMax(c) => c,
                };
                history.push(c);
                let expect = m.acceptable(c);
                prop_assert_eq!(w.check(c), expect, "check({}) max {:?}", c, m.max);
                prop_assert_eq!(w.update(c), m.update(c), "update({}) max {:?}", c, m.max);
                prop_assert_eq!(w.max_seen(), m.max);
                // check() after update() agrees with the model too.
                prop_assert_eq!(w.check(c), m.acceptable(c));
            }
            // Final sweep: the whole window and its edges agree with the model.
            if let Some(max) = m.max {
                let lo = max.saturating_sub(2100);
                let hi = max.saturating_add(5);
                for c in lo..=hi {
                    prop_assert_eq!(w.check(c), m.acceptable(c), "sweep {}", c);
                }
            }
        }
    }
}
