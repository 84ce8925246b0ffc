//! Per-node label allocator. Labels are scoped per incoming neighbour:
//! a rule is keyed by (in_from, in_label), so the same number may be used
//! towards different neighbours, but never twice for the same one.
//! Allocation walks a per-neighbour counter forward (wrapping), so a freed
//! label is reused as late as possible (stale packets carrying an old label
//! are unlikely to hit a new route).

use std::collections::{BTreeMap, BTreeSet};

use super::types::NodeId;

/// Labels below this are reserved (never allocated).
pub const FIRST_LABEL: u32 = 16;

#[derive(Clone, Debug, Default)]
struct Space {
    next: u32,
    used: BTreeSet<u32>,
}

/// The allocator.
#[derive(Clone, Debug)]
pub struct LabelAllocator {
    spaces: BTreeMap<NodeId, Space>,
    max_label: u32,
}

impl LabelAllocator {
    /// Labels are drawn from `FIRST_LABEL..=max_label`.
    pub fn new(max_label: u32) -> Self {
        Self {
            spaces: BTreeMap::new(),
            max_label: max_label.max(FIRST_LABEL),
        }
    }

    /// Allocate a label for traffic arriving from `nb`; `None` if that
    /// neighbour's label space is exhausted.
    pub fn alloc(&mut self, nb: &NodeId) -> Option<u32> {
        let size = u64::from(self.max_label - FIRST_LABEL) + 1;
        let sp = self.spaces.entry(*nb).or_default();
        if sp.used.len() as u64 >= size {
            return None;
        }
        if sp.next < FIRST_LABEL || sp.next > self.max_label {
            sp.next = FIRST_LABEL;
        }
        loop {
            let l = sp.next;
            sp.next = if l >= self.max_label {
                FIRST_LABEL
            } else {
                l + 1
            };
            if sp.used.insert(l) {
                return Some(l);
            }
        }
    }

    /// Return a label; freeing an unknown label is a no-op.
    pub fn free(&mut self, nb: &NodeId, label: u32) {
        if let Some(sp) = self.spaces.get_mut(nb) {
            sp.used.remove(&label);
        }
    }

    pub fn in_use(&self, nb: &NodeId) -> usize {
        self.spaces.get(nb).map_or(0, |s| s.used.len())
    }

    pub fn total_in_use(&self) -> usize {
        self.spaces.values().map(|s| s.used.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_per_neighbour_and_exhaustion() {
        let mut a = LabelAllocator::new(FIRST_LABEL + 9); // 10 labels
        let (x, y) = (NodeId([1; 32]), NodeId([2; 32]));
        let xs: Vec<u32> = (0..10).map(|_| a.alloc(&x).unwrap()).collect();
        let set: BTreeSet<u32> = xs.iter().copied().collect();
        assert_eq!(set.len(), 10);
        assert!(xs.iter().all(|l| *l >= FIRST_LABEL));
        assert_eq!(a.alloc(&x), None);
        // other neighbour has its own space
        assert!(a.alloc(&y).is_some());
        a.free(&x, xs[3]);
        assert_eq!(a.alloc(&x), Some(xs[3]));
        assert_eq!(a.in_use(&x), 10);
    }

    #[test]
    fn delayed_reuse() {
        let mut a = LabelAllocator::new(1000);
        let n = NodeId([7; 32]);
        let l1 = a.alloc(&n).unwrap();
        a.free(&n, l1);
        let l2 = a.alloc(&n).unwrap();
        assert_ne!(l1, l2, "freed label not reused immediately");
    }

    #[test]
    fn random_alloc_free_never_duplicates() {
        let mut a = LabelAllocator::new(FIRST_LABEL + 63);
        let n = NodeId([3; 32]);
        let mut live: Vec<u32> = Vec::new();
        let mut s: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..10_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if !s.is_multiple_of(3) {
                if let Some(l) = a.alloc(&n) {
                    assert!(!live.contains(&l));
                    live.push(l);
                }
            } else if !live.is_empty() {
                let i = (s as usize / 3) % live.len();
                a.free(&n, live.swap_remove(i));
            }
        }
        assert_eq!(a.in_use(&n), live.len());
    }
}
