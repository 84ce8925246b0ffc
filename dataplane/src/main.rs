//! skywire-node: the Skywire dataplane.

#![forbid(unsafe_code)]

use clap::Parser;
use dataplane::backend::{ShardIo, epoll as io_epoll, uring as io_uring};
use dataplane::config::Static;
use dataplane::fib::{FibCell, Prefix};
use dataplane::punt::{self, PuntGate};
use dataplane::shard::Shard;
use dataplane::stats::{NodeStats, traffic};
use dataplane::{fibring, tun};
use netbase::netlink;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Socket buffer of each shard's UDP socket, each way.
const UDP_BUFFER: usize = 4 << 20;

/// Forward IP packets between sky0 and encrypted UDP links.
#[derive(Parser, Debug)]
#[command(name = "skywire-node", version)]
struct Cli {
    /// Sessions, rules and routes from a file (no controlplane).
    #[arg(long = "static", value_name = "FILE")]
    static_file: PathBuf,
    /// Shard threads (default: the file's node.shards, else one per CPU).
    #[arg(long)]
    shards: Option<usize>,
    /// Unix socket the controlplane programs this node through (default
    /// /run/skywire/<tun>.fib).
    #[arg(long, value_name = "PATH")]
    fib_socket: Option<PathBuf>,
    /// Do not pin shard i to CPU i (pinning suits a dedicated router; leave it off when several
    /// nodes share a machine, as in the network-namespace testbed).
    #[arg(long)]
    no_pin: bool,
    /// I/O backend. auto: io_uring when this kernel and sandbox allow it, else epoll (said in
    /// the log). uring: io_uring or an error.
    #[arg(long, default_value = "auto", value_parser = ["auto", "epoll", "uring"])]
    backend: String,
    /// TUN and UDP offloads: read TCP super-packets (TSO) and partial checksums from sky0 and
    /// segment them here, send the frames with UDP GSO, receive with UDP GRO and write merged
    /// segments to sky0 with a vnet header (both backends). auto: on.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    offload: String,
    /// Seconds the tables a controlplane programmed outlive it: forwarding goes on while it
    /// restarts; after this, if no controlplane took over, they are cleared.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    controlplane_grace: u64,
}

/// Nice value of the fib thread (see where it is spawned).
const FIB_THREAD_NICE: i32 = -10;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("skywire-node: {msg}");
    std::process::exit(1);
}

/// How long a port held by someone else is waited for. A killed io_uring predecessor (a
/// restart by viscript, `kill -9` then start) still holds its sockets for a moment: the kernel
/// releases the files its ring referenced in the ring's deferred teardown, after the process
/// is gone. Longer than that, the port is someone else's: fail.
const BIND_WAIT: Duration = Duration::from_secs(3);
/// Between two attempts to bind a busy port.
const BIND_RETRY: Duration = Duration::from_millis(5);

/// Binds `addr`, waiting up to [`BIND_WAIT`] while it is in use (said in the log), else exits.
fn bind_udp(addr: SocketAddr) -> UdpSocket {
    let t0 = Instant::now();
    loop {
        match UdpSocket::bind(addr) {
            Ok(u) => {
                if t0.elapsed() > BIND_RETRY {
                    tracing::info!("bound {addr} after waiting {:?} for it", t0.elapsed());
                }
                return u;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && t0.elapsed() < BIND_WAIT => {
                std::thread::sleep(BIND_RETRY)
            }
            Err(e) => fail(format!("bind {addr}: {e}")),
        }
    }
}

/// Termination signals set `stop` (see [`signal::term::on_termination`]).
fn watch_signals(stop: Arc<AtomicBool>) {
    signal::term::on_termination(move |_| stop.store(true, Ordering::SeqCst));
}

fn main() {
    let cli = Cli::parse();
    signal::logging::init();
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // The shard count must be known to size counters: flag, else file, else CPUs.
    let probe = Static::load(&cli.static_file, 1).unwrap_or_else(|e| fail(e));
    let shards = cli
        .shards
        .or(probe.node.shards)
        .unwrap_or(cpus)
        .clamp(1, 64);
    // Counters have one slot per shard plus one for the fib thread (injected packets).
    let st = Static::load(&cli.static_file, shards + 1).unwrap_or_else(|e| fail(e));
    // Offloads (4x the single-stream throughput) on unless asked off; the backend: io_uring when
    // this kernel / sandbox lets us set it up, else epoll (both do offloads).
    let offload = cli.offload != "off";
    let uring = match cli.backend.as_str() {
        "epoll" => false,
        "uring" => match io_uring::probe() {
            Ok(()) => true,
            Err(e) => fail(format!(
                "--backend uring: io_uring cannot be set up here: {e} (use --backend epoll or auto)"
            )),
        },
        _ => match io_uring::probe() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("io_uring unavailable ({e}); falling back to the epoll backend");
                false
            }
        },
    };
    let backend = if uring { "io_uring" } else { "epoll" };

    // The device: remove a stale one, create ours (non-persistent: it goes when we do).
    match tun::Tun::remove_stale(&st.node.tun) {
        Ok(true) => tracing::info!("removed a stale {}", st.node.tun),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot check for a stale {}: {e}", st.node.tun),
    }
    let dev = tun::Tun::create_with(&st.node.tun, shards, offload)
        .unwrap_or_else(|e| fail(format!("{}: {e}", st.node.tun)));
    let mut nl = netlink::Netlink::open().unwrap_or_else(|e| fail(format!("netlink: {e}")));
    let index = dev
        .index()
        .unwrap_or_else(|e| fail(format!("{}: {e}", st.node.tun)));
    nl.set_mtu(index, st.node.mtu).unwrap_or_else(|e| fail(e));
    for (addr, len) in &st.node.addresses {
        nl.add_address(index, *addr, *len)
            .unwrap_or_else(|e| fail(e));
    }
    nl.set_link_up(index, true).unwrap_or_else(|e| fail(e));

    let stats = Arc::new(NodeStats::new(shards + 1));
    let cell = Arc::new(FibCell::new(st.fib));
    let (punter, punts) = punt::punt_queue().unwrap_or_else(|e| fail(format!("punt queue: {e}")));
    let fib_path = cli
        .fib_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/skywire/{}.fib", st.node.tun)));
    let fib_listener = fibring::bind(&fib_path)
        .unwrap_or_else(|e| fail(format!("fib socket {}: {e}", fib_path.display())));
    // The fib thread's port, after the shards' (base + shards): probes arrive there.
    let mut inject_addr = st.node.listen;
    inject_addr.set_port(
        inject_addr
            .port()
            .checked_add(shards as u16)
            .unwrap_or_else(|| fail("listen port + shards overflows")),
    );
    // The shards' sockets (shard i at the listen port + i), bound before the fib thread starts:
    // it watches them for frames the shards have not read yet (see `liveness`).
    let mut sockets = Vec::new();
    for i in 0..shards {
        let mut addr = st.node.listen;
        addr.set_port(
            addr.port()
                .checked_add(i as u16)
                .unwrap_or_else(|| fail("listen port + shards overflows")),
        );
        let udp = bind_udp(addr);
        // Bursts of a fast TCP flow overflow the default 208 KiB; as root the *_FORCE forms
        // pass net.core.rmem_max/wmem_max, else the kernel caps the plain request at them.
        use rustix::net::sockopt as so;
        if so::set_socket_recv_buffer_size_force(&udp, UDP_BUFFER).is_err() {
            let _ = so::set_socket_recv_buffer_size(&udp, UDP_BUFFER);
        }
        if so::set_socket_send_buffer_size_force(&udp, UDP_BUFFER).is_err() {
            let _ = so::set_socket_send_buffer_size(&udp, UDP_BUFFER);
        }
        sockets.push(udp);
    }
    let receivers: Vec<std::os::fd::OwnedFd> = sockets
        .iter()
        .map(|u| {
            u.try_clone()
                .map(std::os::fd::OwnedFd::from)
                .unwrap_or_else(|e| fail(format!("dup a shard socket: {e}")))
        })
        .collect();
    let fib_server = fibring::FibServer {
        cell: cell.clone(),
        stats: stats.clone(),
        shards,
        punts,
        injector: Shard::new(shards as u8, cell.clone(), stats.clone()).receiving_probes(),
        udp: {
            let u = bind_udp(inject_addr);
            u.set_nonblocking(true)
                .unwrap_or_else(|e| fail(format!("{inject_addr}: {e}")));
            u
        },
        stop: stop.clone(),
        path: fib_path.clone(),
        grace: Duration::from_secs(cli.controlplane_grace),
        receivers,
    };
    let fib_thread = std::thread::Builder::new()
        .name("fib".into())
        .spawn(move || {
            // The fib thread sends the liveness probes and times the silences: on a loaded
            // router it must still wake within a few ms, or neighbours see a dead link (a
            // false failover). A nicer value is all it asks (no real-time class: its commits
            // may take a while); unprivileged, it stays at the default.
            if let Err(e) = rustix::process::setpriority_process(
                Some(rustix::thread::gettid()),
                FIB_THREAD_NICE,
            ) {
                tracing::debug!("fib thread priority: {e}");
            }
            fib_server.run(fib_listener)
        })
        .unwrap_or_else(|e| fail(e));
    let mut threads = Vec::new();
    let pin = !cli.no_pin;
    for (i, udp) in sockets.into_iter().enumerate() {
        let tunq = dev
            .queue(i)
            .try_clone_to_owned()
            .unwrap_or_else(|e| fail(e));
        let shard = Shard::new(i as u8, cell.clone(), stats.clone()).receiving_one_of(shards as u8);
        let io = ShardIo {
            shard,
            tun: tunq,
            udp,
            stop: stop.clone(),
            offload,
            punt: Some(PuntGate::new(punter.clone(), Instant::now(), stats.clone())),
        };
        let th = std::thread::Builder::new()
            .name(format!("shard{i}"))
            .spawn(move || {
                if pin {
                    let mut cpu = rustix::thread::CpuSet::new();
                    cpu.set(i % cpus);
                    let _ = rustix::thread::sched_setaffinity(None, &cpu);
                }
                if uring {
                    io_uring::run(io)
                } else {
                    io_epoll::run(io)
                }
            })
            .unwrap_or_else(|e| fail(e));
        threads.push(th);
    }
    tracing::info!(
        "{} up ({} shards, {} backend{}, {} sessions, {} rules, {} routes), listening on {}, fib ring at {}",
        st.node.tun,
        shards,
        backend,
        if offload { ", offloads" } else { "" },
        cell.load().0.sessions.len(),
        cell.load().0.rules.len(),
        cell.load().0.routes.len(),
        st.node.listen,
        fib_path.display()
    );

    // viscript, when it started us.
    let session = match signal::Client::from_env() {
        Ok(Some(c)) => match c.register("skywire-node", env!("CARGO_PKG_VERSION")) {
            Ok(s) => Some(s),
            Err(e) => fail(format!("register with viscript: {e}")),
        },
        Ok(None) => None,
        Err(e) => fail(format!("viscript: {e}")),
    };
    // Which backend and offloads are in use, for `ru` (1 = yes).
    if let Some(s) = &session {
        s.counter("backend_io_uring")
            .store(u64::from(uring), Ordering::Relaxed);
        s.counter("offloads")
            .store(u64::from(offload), Ordering::Relaxed);
    }
    let mut published: HashMap<String, Arc<AtomicU64>> = HashMap::new();
    let mut last_pkts = vec![0u64; shards];
    let mut last_tick = Instant::now();
    let mut idle_since: HashMap<Prefix, (u64, Instant)> = HashMap::new();
    loop {
        let shutdown = match &session {
            Some(s) => s.wait_shutdown(Some(Duration::from_millis(250))).is_some(),
            None => {
                std::thread::sleep(Duration::from_millis(250));
                false
            }
        };
        if shutdown || stop.load(Ordering::SeqCst) {
            if let Some(s) = &session {
                s.ack_shutdown();
            }
            break;
        }
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let dt = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            if let Some(s) = &session {
                let mut report = stats.report();
                for (i, last) in last_pkts.iter_mut().enumerate() {
                    let now =
                        stats.udp.get(i, traffic::RX_PKTS) + stats.tun.get(i, traffic::RX_PKTS);
                    report.push((format!("shard{i}_pps"), ((now - *last) as f64 / dt) as u64));
                    *last = now;
                }
                let fib = cell.load().0;
                report.push(("sessions".into(), fib.sessions.len() as u64));
                report.push(("routes".into(), fib.routes.len() as u64));
                // Route keys: only the ends of a route hold one; a pure relay shows 0.
                report.push(("route_keys".into(), fib.route_keys.len() as u64));
                for (name, v) in report {
                    published
                        .entry(name.clone())
                        .or_insert_with(|| s.counter(&name))
                        .store(v, Ordering::Relaxed);
                }
            }
            // Idle routes expire unless kept alive.
            let fib = cell.load().0;
            if let Some(idle) = fib.route_idle {
                let mut expired = Vec::new();
                for (p, r) in fib.routes.iter() {
                    if r.keepalive {
                        continue;
                    }
                    let pk = r.traffic.sum(traffic::TX_PKTS);
                    let e = idle_since.entry(p).or_insert((pk, Instant::now()));
                    if e.0 != pk {
                        *e = (pk, Instant::now());
                    } else if e.1.elapsed() >= idle {
                        expired.push(p);
                    }
                }
                if !expired.is_empty() {
                    cell.update(|f| {
                        for p in &expired {
                            f.routes.remove(p);
                        }
                    });
                    for p in expired {
                        idle_since.remove(&p);
                        tracing::info!("route {p} expired (idle)");
                    }
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut failed = false;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("shard failed: {e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    let _ = fib_thread.join();
    drop(dev);
    let counters: Vec<String> = stats
        .report()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!("counters: {}", counters.join(" "));
    tracing::info!("stopped; {} removed", st.node.tun);
    std::process::exit(if failed { 1 } else { 0 });
}
