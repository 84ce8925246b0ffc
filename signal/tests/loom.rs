//! Loom model of the ring: publish/consume and the sleep/wake protocol, over every
//! interleaving loom explores. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p signal --test loom --release`.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex};
use signal::ring::{Consumer, Producer, PushError, RingCtl, RingMem};

struct Mem {
    ctl: RingCtl,
    data: Box<[UnsafeCell<u8>]>,
}

#[derive(Clone)]
struct Shared(Arc<Mem>);

// SAFETY: access to `data` follows the ring protocol, which loom checks through the cells.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl RingMem for Shared {
    fn ctl(&self) -> &RingCtl {
        &self.0.ctl
    }
    fn capacity(&self) -> usize {
        self.0.data.len()
    }
    fn write_at(&self, off: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: loom tracks this access; a protocol bug shows up as a reported race.
            self.0.data[off + i].with_mut(|p| unsafe { *p = *b });
        }
    }
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: as in write_at.
            *b = self.0.data[off + i].with(|p| unsafe { *p });
        }
    }
}

/// The eventfd doorbell: a counter the consumer sleeps on.
struct Bell {
    count: Mutex<u64>,
    cv: Condvar,
}

/// Runs the producer/consumer pair over `records` in a ring of `cap` bytes, consumer sleeping on
/// the bell whenever the ring is empty. A lost wake-up is a loom deadlock; a publication
/// ordering bug is a loom race report or a wrong record.
fn model(cap: usize, records: &'static [&'static [u8]]) {
    let mut b = loom::model::Builder::new();
    // Bugs in protocols this size show up within a few preemptions; unbounded search does not
    // finish.
    b.preemption_bound = Some(3);
    b.check(move || {
        let mem = Shared(Arc::new(Mem {
            ctl: RingCtl::new(),
            data: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        }));
        let bell = Arc::new(Bell {
            count: Mutex::new(0),
            cv: Condvar::new(),
        });

        let pm = mem.clone();
        let pb = bell.clone();
        let producer = loom::thread::spawn(move || {
            let mut p = Producer::new(pm);
            for r in records.iter().copied() {
                loop {
                    match p.push(r) {
                        Ok(wake) => {
                            if wake {
                                *pb.count.lock().unwrap() += 1;
                                pb.cv.notify_one();
                            }
                            break;
                        }
                        Err(PushError::Full) => loom::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });

        let mut c = Consumer::new(mem);
        let mut out = Vec::new();
        let mut got = 0;
        while got < records.len() {
            if c.pop(&mut out).unwrap() {
                assert_eq!(out, records[got]);
                got += 1;
                continue;
            }
            if c.prepare_sleep().unwrap() {
                let mut n = bell.count.lock().unwrap();
                while *n == 0 {
                    n = bell.cv.wait(n).unwrap();
                }
                *n = 0;
                drop(n);
                c.end_sleep();
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn sleep_and_wake_never_lose_a_record() {
    model(64, &[b"abc", b"0123456789"]);
}

#[test]
fn wrap_around_and_full_ring() {
    // 16-byte ring: the first record fills it, the second waits for room and wraps.
    model(16, &[b"abcdefghijkl", b"xyz"]);
}
