//! Dataplane packet-path benchmarks: route and rule lookup at 1, 1k and 100k entries, the
//! relay rewrite (open + re-seal in place), and the whole per-packet path (ingress seal,
//! relay, egress open + source check) at 64 and 1400 bytes.

#![forbid(unsafe_code)]

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::fib::{Action, IntMap, Prefix, PrefixTable};
use dataplane::fixtures::{three_hops, v6_packet};
use dataplane::shard::{BUF_SIZE, Verdict};
use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1u32, 1_000, 100_000] {
        let mut routes = PrefixTable::default();
        let mut rules: IntMap<(u32, u32), Action> = IntMap::default();
        for i in 0..n {
            let ip = IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i)));
            routes.insert(Prefix::new(ip, 128).unwrap(), i);
            rules.insert(
                (i % 64, i),
                Action::Forward {
                    session: i % 64,
                    label: i,
                },
            );
        }
        // A default route and a /64 as well, as a real table would have.
        routes.insert("::/0".parse().unwrap(), u32::MAX);
        routes.insert("fd00::/64".parse().unwrap(), u32::MAX - 1);
        let probe: Vec<IpAddr> = (0..1024u32)
            .map(|i| {
                IpAddr::V6(Ipv6Addr::from(
                    0xfd00_u128 << 112 | u128::from((i * 7919) % n),
                ))
            })
            .collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("route", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 1023;
                black_box(routes.lookup(black_box(probe[k])))
            })
        });
        g.bench_with_input(BenchmarkId::new("rule", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) & 1023;
                let i = (k as u32 * 7919) % n;
                black_box(rules.get(&black_box((i % 64, i))))
            })
        });
    }
    g.finish();
}

fn relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_rewrite");
    for size in [64usize, 1400] {
        g.throughput(Throughput::Bytes(size as u64));
        let (mut a, mut r, _) = three_hops();
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_batched_ref(
                || {
                    let mut buf = vec![0u8; BUF_SIZE];
                    let n = v6_packet(&mut buf, 1, 3, size - 40);
                    let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
                        panic!("ingress")
                    };
                    (buf, len)
                },
                |(buf, len)| {
                    let v = r.from_udp(buf, *len);
                    debug_assert!(matches!(v, Verdict::Send { .. }));
                    black_box(v)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn whole_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_packet_path");
    for size in [64usize, 1400] {
        g.throughput(Throughput::Bytes(size as u64));
        let (mut a, mut r, mut b) = three_hops();
        let mut buf = vec![0u8; BUF_SIZE];
        g.bench_with_input(
            BenchmarkId::new("ingress_relay_egress", size),
            &size,
            |bch, &size| {
                bch.iter(|| {
                    let n = v6_packet(&mut buf, 1, 3, size - 40);
                    let Verdict::Send { len, .. } = a.from_tun(&mut buf, n) else {
                        panic!("ingress")
                    };
                    let Verdict::Send { len, .. } = r.from_udp(&mut buf, len) else {
                        panic!("relay")
                    };
                    black_box(b.from_udp(&mut buf, len))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, lookup, relay, whole_path);
criterion_main!(benches);
