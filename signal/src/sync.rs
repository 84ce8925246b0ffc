//! Atomics and fences, switched to loom's under `--cfg loom` so the ring protocol can be
//! model-checked with the same code that runs in production.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
