//! Attacks in network namespaces, each while a checksummed transfer a -> c runs over a line of
//! routers a - b - c: an attacker namespace `x` is linked to b and reaches b's link port, its
//! data port and a messenger that runs in b's namespace.
//!
//! 1. A keyless TCP flood with slowloris (connections that trickle a byte now and then and never
//!    finish a handshake) at b's link port and at the messenger, from many source addresses,
//!    with b's controlplane and the messenger under a 1024-descriptor limit: the transfer
//!    completes, a fresh router links to b and reaches c, and registers with the messenger; b's
//!    threads, descriptors and memory stay bounded; the refusals are counted.
//! 2. Garbage, forged and replayed UDP at b's data port and its probe port (real frames
//!    captured in flight with an AF_PACKET socket in b's namespace, sent again from x): the
//!    transfer completes, the drops are counted by reason (data frames at the probe port as
//!    wrong_shard), b's dataplane memory stays bounded.
//! 3. A local punt flood: a process in a sends UDP to random overlay addresses as fast as it
//!    can: a's own transfer completes, the punts that reach a's controlplane stay within the
//!    dataplane's budget, and a keeps its link.
//!
//! Each prints the transfer's duration without and under attack (`eprintln`). The attack tools
//! are small Python programs (std only) run with `ip netns exec`; each stops by itself after a
//! bounded time and count, and is killed on drop.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::*;

/// Bytes of each checksummed transfer: a few seconds' worth on debug builds, enough to span
/// the attack's peak.
const TRANSFER_BYTES: usize = 16 << 20;
/// How long the routers may take to route a -> c at the start.
const ROUTE_WITHIN: Duration = Duration::from_secs(20);
/// b's (and a's) metrics endpoint, on loopback in its namespace.
const METRICS: &str = "127.0.0.1:9101";
/// The messenger's metrics endpoint, on loopback in b's namespace.
const MESSENGER_METRICS: &str = "127.0.0.1:9201";
/// The messenger's port (in b's namespace, reachable from x and from d).
const MESSENGER_PORT: u16 = 7200;
/// b's address on the x - b link.
const B_ON_X: &str = "10.85.3.1";
/// b's address on the d - b link.
const B_ON_D: &str = "10.85.4.1";
/// Source addresses the attacker has (10.85.3.10 and up): more than one so that the listeners'
/// whole caps are reached and not only their per-address caps (16 x 4 handshaking per address =
/// 64 > the link listener's 32; 16 x 8 = 128 > the messenger's 64).
const ATTACKER_ADDRS: u8 = 16;
/// The descriptor limit b's controlplane and the messenger run under during the flood.
const NOFILE: &str = "1024:1024";

/// The metrics snapshot is published once a second: how long to wait for a counter to show.
const SNAPSHOT_WITHIN: Duration = Duration::from_secs(10);

/// Connects to `addr` from inside the namespace `ns` (a thread enters it; the socket stays in
/// it).
fn connect_in(ns: &str, addr: &str) -> TcpStream {
    let path = format!("/run/netns/{ns}");
    let a = addr.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        TcpStream::connect(&a)
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("connect {addr} in {ns}: {e}"))
}

/// `GET /metrics` at `addr` in `ns`: the body (panics on another status than 200).
fn scrape(ns: &str, addr: &str) -> String {
    let mut s = connect_in(ns, addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

/// The value of the series spelled exactly `series` (name and labels); 0 when absent.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The line a - b - c, the attacker x linked to b (addresses 10.85.3.10 and up), the keys.
struct Bed {
    t: String,
    dir: PathBuf,
    keys: Vec<(String, String)>,
    ns: Vec<Ns>,
    x: Ns,
}

impl Bed {
    /// Builds it and starts the routers with `extra[i]` appended to router i's config; waits
    /// for a route a -> c.
    fn new(extra: [&str; 3]) -> Bed {
        for c in ["ip", "ping", "python3", "prlimit"] {
            assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
        }
        let t = tag();
        let dir = scratch(&t);
        let (keys, mut ns) = line3(&t, &dir);
        let x = Ns::new(format!("{t}x"));
        link(
            &ns[1],
            &format!("{t}bx"),
            &format!("{B_ON_X}/24"),
            &x,
            &format!("{t}xb"),
            "10.85.3.2/24",
        );
        for i in 0..ATTACKER_ADDRS {
            x.must(&[
                "ip",
                "addr",
                "add",
                &format!("10.85.3.{}/24", 10 + i),
                "dev",
                &format!("{t}xb"),
            ]);
        }
        start_line3(&mut ns, &dir, &keys, extra);
        ping_until(&ns[0], &keys[2].1, ROUTE_WITHIN);
        Bed {
            t,
            dir,
            keys,
            ns,
            x,
        }
    }

    /// The first `n` of the attacker's source addresses, comma-separated.
    fn attacker_addrs(&self, n: u8) -> String {
        (0..n)
            .map(|i| format!("10.85.3.{}", 10 + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The checksummed transfer a -> c (c's overlay address); its duration.
    fn transfer(&self) -> Duration {
        let t = Instant::now();
        transfer(
            &self.ns[2],
            &self.ns[0],
            &self.keys[2].1,
            TRANSFER_BYTES,
            &self.dir,
        );
        t.elapsed()
    }

    /// Runs the Python program `code` with `args` in namespace `ns`, its output to `DIR/LOG`.
    fn python(&self, ns: &str, code: &str, args: &[&str], log: &str) -> (KillOnDrop, PathBuf) {
        let out = self.dir.join(log);
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", code])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(self.dir.join(format!("{log}.err"))).unwrap())
            .spawn()
            .unwrap();
        (KillOnDrop(child), out)
    }
}

/// Waits (bounded) for a program started by [`Bed::python`] and returns what it printed.
fn finished(mut p: (KillOnDrop, PathBuf), within: Duration) -> String {
    let t = Instant::now();
    loop {
        if let Some(st) = p.0.0.try_wait().unwrap() {
            let out = std::fs::read_to_string(&p.1).unwrap_or_default();
            let err = std::fs::read_to_string(p.1.with_extension("out.err")).unwrap_or_default();
            assert!(st.success(), "{}: {out}{err}", p.1.display());
            return out.trim().to_string();
        }
        assert!(
            t.elapsed() < within,
            "{} still running after {within:?}",
            p.1.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks a program started by [`Bed::python`] to stop (SIGTERM) and returns what it printed.
fn stop(p: (KillOnDrop, PathBuf)) -> String {
    let _ = Command::new("kill").arg(p.0.0.id().to_string()).status();
    finished(p, Duration::from_secs(5))
}

/// The keyless flood: keeps up to WANT connections open to HOST at PORTS from the source
/// addresses SRCS, round robin; sends a frame length of 32 (a first handshake message) a byte
/// at a time and then its bytes, one each half second (a handshake that never completes); dials again for each one the server closes.
/// Stops after SECS or ATTEMPTS dials, or half a second after SIGTERM. Prints `attempts opened closed peak`.
const SLOWLORIS: &str = include_str!("attack/slowloris.py");

/// Connections the flood keeps open: well over every cap of both listeners together (the link
/// listener's 128 connections, the messenger's 384), under the attacker's own descriptor limit.
const FLOOD_CONNS: usize = 600;
/// Longest the flood runs: the transfer under attack, then the fresh router's link and route.
const FLOOD_SECS: u64 = 40;
/// Shortest the flood runs: past the listeners' 5 s handshake deadline (links.rs and
/// messenger/net.rs, private there), with 3 s for the cut-offs to show in a snapshot.
const FLOOD_AT_LEAST: Duration = Duration::from_secs(8);
/// Most dials the flood makes in all (a refused connection is dialled again half a second
/// later, so about FLOOD_CONNS per second at most).
const FLOOD_ATTEMPTS: usize = 40_000;
/// How long the fresh router may take to link to b and reach c during the flood: a refused
/// handshake is dialled again, and a handshaking slot frees within the 5 s handshake deadline.
const FRESH_LINK_WITHIN: Duration = Duration::from_secs(25);
/// More threads than before the flood b's controlplane may have at its peak: one per
/// handshaking connection (the listener's cap, [`controlplane::links::MAX_HANDSHAKING`]), plus
/// the fresh router's link (reader, writer) and slack for the route setups and the accept loop.
const THREAD_GROWTH: u64 = controlplane::links::MAX_HANDSHAKING as u64 + 16;
/// More descriptors than before: two per handshaking connection (its stream and the clone the
/// gate keeps to shed it by), two for an established link, and slack for connections being
/// refused and the metrics scrapes.
const FD_GROWTH: u64 = 2 * controlplane::links::MAX_HANDSHAKING as u64 + 32;
/// More resident memory than before (KiB): each handshaking thread touches a few pages of its
/// stack and a 64 KiB frame buffer; 32 MiB leaves room for the allocator's arenas and is far
/// below what a thread and buffer per flood connection (600 x 64 KiB and up) would cost if
/// the caps were gone.
const RSS_GROWTH_KIB: u64 = 32 * 1024;

/// From one source address: the per-address caps alone turn the flood away.
#[test]
fn keyless_flood_and_slowloris_from_one_address() {
    keyless_flood(1);
}

/// From [`ATTACKER_ADDRS`] source addresses: the listeners' whole caps are reached too (a
/// new router gets in because the gate sheds a handshake of a source holding more slots).
#[test]
fn keyless_flood_and_slowloris_from_many_addresses() {
    keyless_flood(ATTACKER_ADDRS);
}

/// The keyless flood and slowloris at b's link port and the messenger from `sources` of the
/// attacker's addresses.
fn keyless_flood(sources: u8) {
    let b_extra = format!("metrics: \"{METRICS}\"\nallow_any: true\n");
    let mut bed = Bed::new(["", &b_extra, ""]);
    let (pm, _) = keygen(&bed.dir, "m");
    let ctl = bin("controlplane", "skywire-control");
    let mi = bed.ns[1].spawn(
        &[
            ctl.to_str().unwrap(),
            "--key",
            bed.dir.join("m.key").to_str().unwrap(),
            "messenger",
            "--listen",
            &format!("0.0.0.0:{MESSENGER_PORT}"),
            "--metrics",
            MESSENGER_METRICS,
        ],
        &bed.dir.join("m.log"),
    );
    // b's children: 0 its dataplane, 1 its controlplane, then the messenger.
    let b_ctl = bed.ns[1].child(1).id();
    let m_pid = bed.ns[1].child(mi).id();
    for pid in [b_ctl, m_pid] {
        must(&[
            "prlimit",
            &format!("--nofile={NOFILE}"),
            "--pid",
            &pid.to_string(),
        ]);
    }
    let b_name = bed.ns[1].name.clone();
    wait_until("the messenger's metrics", SNAPSHOT_WITHIN, || {
        connect_in_ok(&b_name, MESSENGER_METRICS)
    });

    let quiet = bed.transfer();
    std::thread::sleep(Duration::from_secs(1));
    let before = usage(b_ctl);

    let flood = bed.python(
        &bed.x.name,
        SLOWLORIS,
        &[
            B_ON_X,
            &format!("7100,{MESSENGER_PORT}"),
            &bed.attacker_addrs(sources),
            &FLOOD_CONNS.to_string(),
            &FLOOD_SECS.to_string(),
            &FLOOD_ATTEMPTS.to_string(),
        ],
        "slowloris.out",
    );
    let flood_started = Instant::now();
    let sampler = Sampler::start(b_ctl);
    std::thread::sleep(Duration::from_secs(2));
    let loud = bed.transfer();
    eprintln!(
        "transfer of {TRANSFER_BYTES} bytes a -> c: {quiet:?} without attack, {loud:?} under the keyless flood"
    );

    // A fresh router, d, linked to b, with a new key (b allows any key), registering with the
    // messenger: it links and reaches c during the flood.
    let t = bed.t.clone();
    let (_, d_addr) = keygen(&bed.dir, "d");
    let mut d = Ns::new(format!("{t}d"));
    link(
        &bed.ns[1],
        &format!("{t}bd"),
        &format!("{B_ON_D}/24"),
        &d,
        &format!("{t}db"),
        "10.85.4.2/24",
    );
    let d_extra = format!(
        "messengers:\n  - {{pk: {pm}, endpoint: \"{B_ON_D}:{MESSENGER_PORT}\"}}\nadvertise: [\"10.85.4.2:7100\"]\n"
    );
    let b_pk = bed.keys[1].0.clone();
    let started = Instant::now();
    start_router(&mut d, &bed.dir, "d", &[(&b_pk, B_ON_D)], &d_extra);
    ping_until(&d, &bed.keys[2].1, FRESH_LINK_WITHIN);
    eprintln!(
        "a fresh router linked to b and reached c in {:?} under the flood",
        started.elapsed()
    );
    wait_until(
        "the fresh router's record at the messenger",
        FRESH_LINK_WITHIN,
        || {
            value(
                &scrape(&b_name, MESSENGER_METRICS),
                "skywire_messenger_registered_total",
            ) >= 1.0
        },
    );
    eprintln!(
        "the fresh router registered with the messenger {:?} after it started",
        started.elapsed()
    );
    // And c reaches d's address back.
    ping(&bed.ns[2], &d_addr);

    // Held long enough for the first slowloris connections to reach the handshake deadline.
    std::thread::sleep(FLOOD_AT_LEAST.saturating_sub(flood_started.elapsed()));
    let peak = sampler.finish();
    let printed = stop(flood);
    eprintln!(
        "flood (attempts opened closed peak): {printed}; b's controlplane before {before:?}, peak {peak:?}"
    );
    assert!(
        peak.threads <= before.threads + THREAD_GROWTH,
        "threads {before:?} -> {peak:?}"
    );
    assert!(
        peak.fds <= before.fds + FD_GROWTH,
        "fds {before:?} -> {peak:?}"
    );
    assert!(
        peak.rss_kib <= before.rss_kib + RSS_GROWTH_KIB,
        "rss {before:?} -> {peak:?}"
    );
    let peak_conns: usize = printed
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        peak_conns > controlplane::links::MAX_INCOMING,
        "the flood held only {peak_conns} connections: {printed}"
    );

    // The refusals and the slowloris cut-offs are counted, at b's link listener and at the
    // messenger.
    let body = scrape(&b_name, METRICS);
    let ev = |e: &str| {
        value(
            &body,
            &format!(
                "skywire_control_listener_events_total{{listener=\"link_listener\",event=\"{e}\"}}"
            ),
        )
    };
    eprintln!(
        "b's link listener: refused_handshaking {} refused_per_ip {} shed_handshaking {} handshake_timeout {} accepted {}",
        ev("refused_handshaking"),
        ev("refused_per_ip"),
        ev("shed_handshaking"),
        ev("handshake_timeout"),
        ev("accepted")
    );
    if usize::from(sources) * controlplane::links::MAX_HANDSHAKING_PER_IP
        > controlplane::links::MAX_HANDSHAKING
    {
        // The whole cap was reached, and the fresh router got in by shedding.
        assert!(ev("refused_handshaking") > 0.0, "{body}");
        assert!(ev("shed_handshaking") > 0.0, "{body}");
    } else {
        assert!(ev("refused_per_ip") > 0.0, "{body}");
    }
    assert!(ev("handshake_timeout") > 0.0, "{body}");
    let mbody = scrape(&b_name, MESSENGER_METRICS);
    let mev = |e: &str| {
        value(
            &mbody,
            &format!("skywire_messenger_listener_events_total{{event=\"{e}\"}}"),
        )
    };
    eprintln!(
        "the messenger: refused_handshaking {} refused_per_ip {} shed_handshaking {} handshake_timeout {}",
        mev("refused_handshaking"),
        mev("refused_per_ip"),
        mev("shed_handshaking"),
        mev("handshake_timeout")
    );
    assert!(
        mev("refused_per_ip") + mev("refused_handshaking") > 0.0,
        "{mbody}"
    );
    assert!(mev("handshake_timeout") > 0.0, "{mbody}");
    // Both are still up.
    assert!(bed.ns[1].child(1).try_wait().unwrap().is_none());
    assert!(bed.ns[1].child(mi).try_wait().unwrap().is_none());
    drop(d);
    let _ = std::fs::remove_dir_all(&bed.dir);
}

fn connect_in_ok(ns: &str, addr: &str) -> bool {
    let path = format!("/run/netns/{ns}");
    let a = addr.to_string();
    std::thread::spawn(move || {
        let Ok(f) = std::fs::File::open(&path) else {
            return false;
        };
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .is_ok()
            && TcpStream::connect(&a).is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// Captures the UDP payloads arriving at PORT on the interfaces IFS (an AF_PACKET socket each,
/// incoming only, single datagrams: merged GRO/GSO ones are skipped) for SECS or CAP of them,
/// and writes them to OUT as `u16 length | bytes`. Prints how many.
const SNIFF: &str = include_str!("attack/sniff.py");

/// Sends to HOST at PORTS, round robin, for SECS or CAP datagrams: garbage of random length, a
/// random type byte, headers with a random receiver id 1..16 (unknown sessions), the captured
/// frames of FILE again as they were (replays), and captured frames with a fresh counter and a
/// flipped byte (live receiver id, bad tag). Prints `sent captured` and the count of each kind.
const UDP_FLOOD: &str = include_str!("attack/udp_flood.py");

/// Failure detection in the UDP and punt flood tests: probes at 200 ms, down after 5 silent
/// intervals (1 s), and the link keepalive (100 ms) dead after 20 missed (2 s). With the
/// defaults (probes 20 ms x 3: 60 ms; the testbed's keepalive 100 ms x 3: 300 ms) links
/// flapped on the 2-core test box during these floods, in debug and release builds, and once
/// during a transfer before any flood: the box ran at a load average of 12 (other work shares
/// it), and with the flood's sender, the busy shard and the transfer on two cores, frames are
/// read or sent late. These tests are about the drop and punt paths and whether a flood wedges
/// a controlplane (a wedge of 2 s still fails), so they leave detection that slack; the flaps
/// are a finding of their own (scripts/bench-attack.sh counts them, with the defaults).
const LOADED_BOX_LIVENESS: &str = "probe_ms: 200\nprobe_dead_after: 5\ndead_after: 20\n";

/// How long the capture may run (it stops at CAPTURE_MAX frames first, during the transfer).
const CAPTURE_SECS: u64 = 10;
/// Frames captured for replay.
const CAPTURE_MAX: usize = 500;
/// How long the UDP flood runs: the length of the transfer under it, about.
const UDP_FLOOD_SECS: u64 = 5;
/// Most datagrams the flood sends (Python manages some tens of thousands a second).
const UDP_FLOOD_CAP: usize = 1_000_000;
/// More resident memory (KiB) b's dataplane may have at the flood's peak than before it: it
/// allocates nothing per received frame (its buffers are made at start), so growth is the
/// kernel's and the allocator's noise; 16 MiB.
const DP_RSS_GROWTH_KIB: u64 = 16 * 1024;

#[test]
fn garbage_forged_and_replayed_udp_at_the_data_and_probe_ports() {
    let b_extra = format!("metrics: \"{METRICS}\"\n{LOADED_BOX_LIVENESS}");
    let mut bed = Bed::new([LOADED_BOX_LIVENESS, &b_extra, LOADED_BOX_LIVENESS]);
    let t = bed.t.clone();
    let b_name = bed.ns[1].name.clone();
    let cap_file = bed.dir.join("captured.bin");
    let sniff = bed.python(
        &b_name,
        SNIFF,
        &[
            &format!("{t}ba,{t}bc"),
            "7000",
            &CAPTURE_SECS.to_string(),
            &CAPTURE_MAX.to_string(),
            cap_file.to_str().unwrap(),
        ],
        "sniff.out",
    );
    wait_until("the capture to start", Duration::from_secs(5), || {
        std::fs::read_to_string(&sniff.1).is_ok_and(|s| s.contains("ready"))
    });
    let quiet = bed.transfer();
    let captured = finished(sniff, Duration::from_secs(CAPTURE_SECS + 5));
    let n: usize = captured
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert!(n > 0, "no frames captured: {captured}");

    // b's children: 0 its dataplane.
    let dp = bed.ns[1].child(0).id();
    let before_use = usage(dp);
    let before = scrape(&b_name, METRICS);
    let flood = bed.python(
        &bed.x.name,
        UDP_FLOOD,
        &[
            B_ON_X,
            // The data port and the probe port (base + shards: b runs one shard).
            "7000,7001",
            &UDP_FLOOD_SECS.to_string(),
            &UDP_FLOOD_CAP.to_string(),
            cap_file.to_str().unwrap(),
        ],
        "udpflood.out",
    );
    let sampler = Sampler::start(dp);
    std::thread::sleep(Duration::from_millis(500));
    let loud = bed.transfer();
    eprintln!(
        "transfer of {TRANSFER_BYTES} bytes a -> c: {quiet:?} without attack, {loud:?} under garbage, forged and replayed UDP"
    );
    let printed = finished(flood, Duration::from_secs(UDP_FLOOD_SECS + 10));
    let peak = sampler.finish();
    eprintln!(
        "udp flood (sent captured garbage type forged replayed badtag): {printed}; b's dataplane before {before_use:?}, peak {peak:?}"
    );
    assert!(
        peak.rss_kib <= before_use.rss_kib + DP_RSS_GROWTH_KIB,
        "rss {before_use:?} -> {peak:?}"
    );

    // Every kind is counted by its reason.
    let drop = |body: &str, r: &str| {
        value(
            body,
            &format!("skywire_control_dataplane_drops_total{{reason=\"{r}\"}}"),
        )
    };
    // wrong_shard: captured data frames replayed at the probe port, which takes probes only.
    let reasons = [
        "malformed",
        "unknown_session",
        "replay",
        "bad_tag",
        "wrong_shard",
    ];
    let mut after = String::new();
    wait_until("the drops in a scrape", SNAPSHOT_WITHIN, || {
        after = scrape(&b_name, METRICS);
        reasons.iter().all(|r| drop(&after, r) > drop(&before, r))
    });
    for r in reasons {
        eprintln!(
            "b's dataplane drop_{r}: {} during the flood",
            drop(&after, r) - drop(&before, r)
        );
    }
    // Not asserted: on the 2-core box with debug builds b's links went down during the flood
    // in some runs, by probes and by the testbed's 300 ms keepalive (CPU-starved), and came
    // back; the transfer completed. Printed so it shows (scripts/bench-attack.sh counts them
    // with release builds).
    let downs = |b: &str| value(b, "skywire_control_links_down_total");
    eprintln!(
        "b's links down during the flood: {}",
        downs(&after) - downs(&before)
    );
    assert!(bed.ns[1].child(0).try_wait().unwrap().is_none());
    ping(&bed.ns[0], &bed.keys[2].1);
    let _ = std::fs::remove_dir_all(&bed.dir);
}

/// Sends UDP to random addresses in fd73:6b79::/32 (the overlay prefix) for SECS or CAP
/// datagrams, as fast as it can. Prints how many.
const PUNT_FLOOD: &str = include_str!("attack/punt_flood.py");

/// How long the punt flood runs.
const PUNT_SECS: u64 = 5;
/// Most datagrams it sends.
const PUNT_CAP: usize = 2_000_000;
/// Most punts a's controlplane may receive during the flood: the dataplane's gate lets
/// [`dataplane::punt::PUNTS_PER_SEC`] a second through per shard (one shard here), from a full
/// bucket, over the flood and the second or two of snapshots around it.
const PUNTS_AT_MOST: f64 = (dataplane::punt::PUNTS_PER_SEC as u64 * (PUNT_SECS + 4)) as f64;

#[test]
fn a_local_punt_flood_leaves_the_route_and_the_links() {
    let a_extra = format!("metrics: \"{METRICS}\"\n{LOADED_BOX_LIVENESS}");
    let bed = Bed::new([&a_extra, LOADED_BOX_LIVENESS, LOADED_BOX_LIVENESS]);
    let a_name = bed.ns[0].name.clone();
    let quiet = bed.transfer();
    std::thread::sleep(Duration::from_millis(1500));
    let before = scrape(&a_name, METRICS);
    let flood = bed.python(
        &a_name,
        PUNT_FLOOD,
        &[&PUNT_SECS.to_string(), &PUNT_CAP.to_string()],
        "puntflood.out",
    );
    let loud = bed.transfer();
    eprintln!(
        "transfer of {TRANSFER_BYTES} bytes a -> c: {quiet:?} without attack, {loud:?} under a local punt flood"
    );
    let printed = finished(flood, Duration::from_secs(PUNT_SECS + 10));
    let sent: f64 = printed
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let mut after = String::new();
    let punts = |b: &str| value(b, "skywire_control_punts_total");
    // Two snapshots past the flood.
    std::thread::sleep(Duration::from_secs(2));
    wait_until("the punts in a scrape", SNAPSHOT_WITHIN, || {
        after = scrape(&a_name, METRICS);
        punts(&after) > punts(&before)
    });
    let got = punts(&after) - punts(&before);
    let over = value(&after, "skywire_control_punts_over_budget_total")
        - value(&before, "skywire_control_punts_over_budget_total");
    eprintln!(
        "punt flood: {sent} sent ({printed}), {got} punts reached a's controlplane, {over} over its budget, {} punt drops",
        value(&after, "skywire_control_punt_drops_total")
            - value(&before, "skywire_control_punt_drops_total")
    );
    assert!(sent > PUNTS_AT_MOST, "the flood sent only {sent}");
    assert!(got <= PUNTS_AT_MOST, "{got} punts > {PUNTS_AT_MOST}");
    // a kept its link: no link went down, one is up.
    assert_eq!(
        value(&after, "skywire_control_links_down_total"),
        value(&before, "skywire_control_links_down_total"),
        "{after}"
    );
    assert_eq!(value(&after, "skywire_control_links"), 1.0, "{after}");
    ping(&bed.ns[0], &bed.keys[2].1);
    let _ = std::fs::remove_dir_all(&bed.dir);
}
