//! AEAD seal/open/reseal throughput on the wire format.
//!
//! No unwrap: each case is checked once with `assert_eq!` before it is timed,
//! and the timed closures return their `Result` (black-boxed by criterion).

#![forbid(unsafe_code)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::{Cipher, OVERHEAD, OpenKey, PAYLOAD_OFFSET, SealKey, reseal};
use std::hint::black_box;

const CIPHERS: [(Cipher, &str); 2] = [
    (Cipher::Aes256Gcm, "aes256gcm"),
    (Cipher::ChaCha20Poly1305, "chacha20poly1305"),
];
const KEY_A: [u8; 32] = [7; 32];
const KEY_B: [u8; 32] = [9; 32];
const LABEL: u32 = 5;

fn packet_buf(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; OVERHEAD + len];
    for (i, b) in buf[PAYLOAD_OFFSET..].iter_mut().take(len).enumerate() {
        *b = (i % 251) as u8;
    }
    buf
}

fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for (cipher, name) in CIPHERS {
        for len in [64usize, 1400] {
            let Ok(key) = SealKey::new(cipher, &KEY_A, 1) else {
                eprintln!("seal/{name}/{len}: key rejected, skipped");
                continue;
            };
            let mut buf = packet_buf(len);
            assert_eq!(
                key.seal_with_counter(0, LABEL, &mut buf, len),
                Ok(OVERHEAD + len)
            );
            let mut counter = 0u64;
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |b, &len| {
                b.iter(|| {
                    counter += 1;
                    // Re-encrypts the buffer each time (same cost as fresh
                    // plaintext): measures the in-place AEAD, no copy.
                    key.seal_with_counter(counter, LABEL, black_box(&mut buf), len)
                })
            });
        }
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    for (cipher, name) in CIPHERS {
        for len in [64usize, 1400] {
            let (Ok(sk), Ok(ok)) = (
                SealKey::new(cipher, &KEY_A, 1),
                OpenKey::new(cipher, &KEY_A),
            ) else {
                eprintln!("open/{name}/{len}: key rejected, skipped");
                continue;
            };
            let mut frame = packet_buf(len);
            assert_eq!(
                sk.seal_with_counter(0, LABEL, &mut frame, len),
                Ok(OVERHEAD + len)
            );
            let mut work = frame.clone();
            assert_eq!(ok.open(&mut work).map(|o| o.packet.len()), Ok(len));
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| {
                    // Restore the ciphertext (a 100..1436-byte memcpy, small
                    // next to the AEAD), then open in place.
                    work.copy_from_slice(&frame);
                    ok.open(black_box(&mut work)).map(|o| o.packet.len())
                })
            });
        }
    }
    g.finish();
}

fn reseal_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reseal");
    let len = 1400usize;
    for (cipher, name) in CIPHERS {
        let (Ok(a), Ok(r_in), Ok(mut r_out)) = (
            SealKey::new(cipher, &KEY_A, 1),
            OpenKey::new(cipher, &KEY_A),
            SealKey::new(cipher, &KEY_B, 2),
        ) else {
            eprintln!("reseal/{name}/{len}: key rejected, skipped");
            continue;
        };
        let mut frame = packet_buf(len);
        assert_eq!(
            a.seal_with_counter(0, LABEL, &mut frame, len),
            Ok(OVERHEAD + len)
        );
        let mut work = frame.clone();
        assert_eq!(reseal(&r_in, &mut r_out, 6, &mut work), Ok(OVERHEAD + len));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
            b.iter(|| {
                work.copy_from_slice(&frame);
                reseal(&r_in, &mut r_out, 6, black_box(&mut work))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seal, open, reseal_bench);
criterion_main!(benches);
