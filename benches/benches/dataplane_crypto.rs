//! The two-layer frame's crypto alone: what an ingress does (route seal + hop stamp), what an
//! egress does (hop check + route open) and what a relay does (hop check + re-stamp, no
//! payload crypto).
//!
//! No unwrap: each case is checked once with `assert_eq!` before it is timed, and the timed
//! closures return their `Result` (black-boxed by criterion).

#![forbid(unsafe_code)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::{Cipher, HopKey, OVERHEAD, PAYLOAD_OFFSET, RouteKey, relay};
use std::hint::black_box;

const CIPHERS: [(Cipher, &str); 2] = [
    (Cipher::Aes256Gcm, "aes256gcm"),
    (Cipher::ChaCha20Poly1305, "chacha20poly1305"),
];
const HOP_A: [u8; 32] = [7; 32];
const HOP_B: [u8; 32] = [9; 32];
const ROUTE: [u8; 32] = [11; 32];
const LABEL: u32 = 5;

fn packet_buf(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; OVERHEAD + len];
    for (i, b) in buf[PAYLOAD_OFFSET..].iter_mut().take(len).enumerate() {
        *b = (i % 251) as u8;
    }
    buf
}

fn keys(cipher: Cipher) -> Option<(RouteKey, HopKey, HopKey)> {
    Some((
        RouteKey::new(cipher, &ROUTE).ok()?,
        HopKey::new(cipher, &HOP_A).ok()?,
        HopKey::new(cipher, &HOP_B).ok()?,
    ))
}

fn ingress(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingress_seal");
    for (cipher, name) in CIPHERS {
        for len in [64usize, 1400] {
            let Some((route, hop, _)) = keys(cipher) else {
                eprintln!("ingress_seal/{name}/{len}: key rejected, skipped");
                continue;
            };
            let mut buf = packet_buf(len);
            assert_eq!(route.seal(0, &mut buf, len), Ok(OVERHEAD + len));
            let mut counter = 0u64;
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |b, &len| {
                b.iter(|| {
                    counter += 1;
                    // Re-encrypts the buffer each time (same cost as fresh plaintext): the
                    // in-place AEAD and the hop MAC, no copy.
                    let n = route.seal(counter, black_box(&mut buf), len)?;
                    hop.stamp(&mut buf[..n], 1, counter, LABEL)
                })
            });
        }
    }
    g.finish();
}

fn egress(c: &mut Criterion) {
    let mut g = c.benchmark_group("egress_open");
    for (cipher, name) in CIPHERS {
        for len in [64usize, 1400] {
            let Some((route, hop, _)) = keys(cipher) else {
                eprintln!("egress_open/{name}/{len}: key rejected, skipped");
                continue;
            };
            let mut frame = packet_buf(len);
            assert_eq!(route.seal(0, &mut frame, len), Ok(OVERHEAD + len));
            assert_eq!(hop.stamp(&mut frame, 1, 0, LABEL), Ok(()));
            let mut work = frame.clone();
            assert_eq!(route.open(&mut work).map(|p| p.len()), Ok(len));
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| {
                    // Restore the ciphertext (a 124..1460-byte memcpy, small next to the
                    // AEAD), then check and open in place.
                    work.copy_from_slice(&frame);
                    hop.verify(black_box(&work))?;
                    route.open(&mut work).map(|p| p.len())
                })
            });
        }
    }
    g.finish();
}

fn relay_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_mac");
    for (cipher, name) in CIPHERS {
        for len in [64usize, 1400] {
            let Some((route, hop_in, hop_out)) = keys(cipher) else {
                eprintln!("relay_mac/{name}/{len}: key rejected, skipped");
                continue;
            };
            let mut frame = packet_buf(len);
            assert_eq!(route.seal(0, &mut frame, len), Ok(OVERHEAD + len));
            assert_eq!(hop_in.stamp(&mut frame, 1, 0, LABEL), Ok(()));
            let mut work = frame.clone();
            assert!(relay(&hop_in, &hop_out, &mut work, 2, 0, 6).is_ok());
            let mut counter = 0u64;
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| {
                    // Only the 32-byte header and the hop tag change: restore those.
                    work[..28].copy_from_slice(&frame[..28]);
                    let n = work.len();
                    work[n - 16..].copy_from_slice(&frame[n - 16..]);
                    counter += 1;
                    relay(&hop_in, &hop_out, black_box(&mut work), 2, counter, 6)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, ingress, egress, relay_bench);
criterion_main!(benches);
