//! Signal ring benchmarks, each beside a unix-socket baseline in the same run:
//! - `ping_rtt`: one ping/pong round trip (the ring path is the real `Session` responder).
//! - `one_way`: small messages per second, producer thread to consumer thread.
//! - `start_to_registered`: viscript `start -w` of signal-demo until its register arrives.

#![forbid(unsafe_code)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use signal::{Channel, Client, Msg};
use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;

use std::time::{Duration, Instant};

fn ping_rtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_rtt");
    g.throughput(Throughput::Elements(1));

    // The ring: server half here, a registered client Session answering in its own thread.
    let (mut server, fds) = Channel::create(1 << 16).unwrap();
    let session = Client::from_fds(fds, 1)
        .unwrap()
        .register("bench", "0")
        .unwrap();
    assert!(matches!(
        server.rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Some(Msg::Register { .. })
    ));
    let mut nonce = 0u64;
    g.bench_function("ring", |b| {
        b.iter(|| {
            nonce += 1;
            server.tx.send(&Msg::Ping { nonce }).unwrap();
            loop {
                match server.rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                    Some(Msg::Pong { nonce: n }) if n == nonce => break,
                    Some(_) => continue,
                    None => panic!("no pong"),
                }
            }
        })
    });
    drop(session);

    // Baseline: the same 10-byte encoded ping and pong over a unix stream socket.
    let (mut a, mut bsock) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 10];
        while bsock.read_exact(&mut buf).is_ok() {
            buf[1] = 3; // pong
            if bsock.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut enc = Vec::new();
    g.bench_function("unix_socket", |b| {
        b.iter(|| {
            nonce += 1;
            Msg::Ping { nonce }.encode(&mut enc).unwrap();
            a.write_all(&enc).unwrap();
            let mut back = [0u8; 10];
            a.read_exact(&mut back).unwrap();
            black_box(Msg::decode(&back).unwrap());
        })
    });
    drop(a);
    echo.join().unwrap();
    g.finish();
}

fn one_way(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_way");
    g.throughput(Throughput::Elements(1));

    g.bench_function("ring", |b| {
        b.iter_custom(|iters| {
            let (mut server, fds) = Channel::create(1 << 18).unwrap();
            let mut client = Channel::open(fds).unwrap();
            let consumer = std::thread::spawn(move || {
                let mut got = 0u64;
                while got < iters {
                    match client.rx.try_recv() {
                        Ok(Some(m)) => {
                            black_box(m);
                            got += 1;
                        }
                        Ok(None) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let t = Instant::now();
            let mut n = 0;
            while n < iters {
                match server.tx.send(&Msg::Ping { nonce: n }) {
                    Ok(()) => n += 1,
                    Err(_) => std::hint::spin_loop(), // full: back-pressure
                }
            }
            consumer.join().unwrap();
            t.elapsed()
        })
    });

    // The same with the producer publishing once per 64 messages (Tx::queue + Tx::flush).
    g.bench_function("ring_batched", |b| {
        b.iter_custom(|iters| {
            let (mut server, fds) = Channel::create(1 << 18).unwrap();
            let mut client = Channel::open(fds).unwrap();
            let consumer = std::thread::spawn(move || {
                let mut got = 0u64;
                while got < iters {
                    match client.rx.try_recv() {
                        Ok(Some(m)) => {
                            black_box(m);
                            got += 1;
                        }
                        Ok(None) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
            });
            let t = Instant::now();
            let mut n = 0;
            while n < iters {
                match server.tx.queue(&Msg::Ping { nonce: n }) {
                    Ok(()) => {
                        n += 1;
                        if n % 64 == 0 {
                            server.tx.flush().unwrap();
                        }
                    }
                    Err(_) => {
                        server.tx.flush().unwrap();
                        std::hint::spin_loop();
                    }
                }
            }
            server.tx.flush().unwrap();
            consumer.join().unwrap();
            t.elapsed()
        })
    });

    g.bench_function("unix_socket", |b| {
        b.iter_custom(|iters| {
            let (a, bsock) = UnixStream::pair().unwrap();
            let consumer = std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 16, bsock);
                let mut buf = [0u8; 10];
                for _ in 0..iters {
                    r.read_exact(&mut buf).unwrap();
                    black_box(Msg::decode(&buf).unwrap());
                }
            });
            let t = Instant::now();
            let mut w = BufWriter::with_capacity(1 << 16, a);
            let mut enc = Vec::new();
            for n in 0..iters {
                Msg::Ping { nonce: n }.encode(&mut enc).unwrap();
                w.write_all(&enc).unwrap();
            }
            w.flush().unwrap();
            consumer.join().unwrap();
            t.elapsed()
        })
    });
    g.finish();
}

fn demo_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/bench-xxxx -> target/<profile>/signal-demo
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let p = dir.join("signal-demo");
    if !p.exists() {
        let release = dir.ends_with("release");
        let mut cmd =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "signal", "--bin", "signal-demo"]);
        if release {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success());
    }
    p
}

fn start_to_registered(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("viscript-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("config.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "apps:\n  demo:\n    path: {}\n    daemon: true\n",
            demo_bin().display()
        ),
    )
    .unwrap();
    let cfg = viscript::config::Config::load(&cfg_path).unwrap();
    let (handle, thread) = viscript::supervisor::start(cfg).unwrap();
    let mut g = c.benchmark_group("start_to_registered");
    g.sample_size(20);
    g.bench_function("signal-demo", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let r = handle.call(viscript::command::Command::Start {
                    app: "demo".into(),
                    args: None,
                    attach: false,
                    wait: true,
                });
                total += t.elapsed();
                assert!(r.ok, "{}", r.text);
                let id = r.data["id"].as_u64().unwrap();
                assert!(handle.call(viscript::command::Command::Kill(id)).ok);
            }
            total
        })
    });
    g.finish();
    assert!(handle.call(viscript::command::Command::Quit).ok);
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, ping_rtt, one_way, start_to_registered);
criterion_main!(benches);
