//! Fast failure detection: on a line a - b - c whose link keepalive is slow (100 ms, dead after
//! 50 missed: 5 s), the dataplanes' liveness probes (20 ms, down after 4 silent) find the cut
//! a - b link within tens of ms at both ends; the link comes back once the cable does.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};
use testbed::*;

/// Most a detection may take here: 80 ms of silence (160 ms while a router is behind) plus a
/// loaded 2-core CI run's delays, far below the 5 s the keepalive would take.
const DETECT_BOUND: Duration = Duration::from_secs(1);

fn silent_count(dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}-control.log")))
        .unwrap_or_default()
        .matches("data session was silent")
        .count()
}

#[test]
fn a_cut_link_is_found_by_the_dataplane_probes_long_before_the_keepalive() {
    for c in ["ip", "ping", "python3"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    let extra = "dead_after: 50\nprobe_ms: 20\nprobe_dead_after: 4\n";
    start_line3(&mut ns, &dir, &keys, [extra, extra, extra]);
    let c_addr = keys[2].1.clone();
    ping_until(&ns[0], &c_addr, Duration::from_secs(20));
    // Idle links stay up: probes keep them heard (no false link-down over 2 s).
    std::thread::sleep(Duration::from_secs(2));
    for n in ["a", "b", "c"] {
        assert_eq!(silent_count(&dir, n), 0, "{n} saw a live link as silent");
    }
    ping(&ns[0], &c_addr);
    let cut = Instant::now();
    ns[0].must(&["ip", "link", "set", &format!("{t}ab"), "down"]);
    wait_until(
        "a and b find the cut link silent",
        Duration::from_secs(4),
        || silent_count(&dir, "a") >= 1 && silent_count(&dir, "b") >= 1,
    );
    let took = cut.elapsed();
    eprintln!("cut found at both ends after {took:?}");
    assert!(took <= DETECT_BOUND, "detection took {took:?}");
    // The far link saw nothing wrong.
    assert_eq!(silent_count(&dir, "c"), 0);
    ns[0].must(&["ip", "link", "set", &format!("{t}ab"), "up"]);
    let took = ping_until(&ns[0], &c_addr, Duration::from_secs(20));
    eprintln!("a reaches c again {took:?} after the link came back");
    transfer(&ns[2], &ns[0], &c_addr, 1 << 20, &dir);
}
