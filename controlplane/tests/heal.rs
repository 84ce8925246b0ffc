//! Self-healing: a router's dataplane, then its controlplane, killed with SIGKILL and started
//! again (as viscript does) in each role of a line a - b - c (a pings c: a ingress, b transit,
//! c egress). For a dataplane, its controlplane notices, closes its links, programs the new
//! dataplane; for a controlplane, the new one programs its dataplane from scratch and the
//! neighbours link to it again. Traffic flows again after each, checked with ping and a
//! checksummed TCP transfer.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};
use testbed::*;

/// Most a heal may take here: the target is 1 s on an idle machine; this bound leaves room
/// for a loaded 2-core CI run (ping itself has 1 s resolution).
const HEAL_BOUND: Duration = Duration::from_secs(8);

#[test]
fn a_killed_dataplane_or_controlplane_heals_in_every_role() {
    for c in ["ip", "ping", "python3"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    start_line3(&mut ns, &dir, &keys, ["", "", ""]);
    let c_addr = keys[2].1.clone();
    let took = ping_until(&ns[0], &c_addr, Duration::from_secs(20));
    eprintln!("first ping a -> c after {took:?}");
    let names = ["a", "b", "c"];
    // Child 0 of each namespace is its skywire-node.
    let mut node = [0usize; 3];
    for (role, i) in [("transit", 1), ("egress", 2), ("ingress", 0)] {
        kill9(&mut ns[i], node[i]);
        // viscript's restart delay is not the controlplane's to shorten: start it at once.
        node[i] = start_node(&mut ns[i], &dir, names[i]);
        let t0 = Instant::now();
        let took = ping_until(&ns[0], &c_addr, HEAL_BOUND);
        eprintln!(
            "{role} ({}) dataplane killed and restarted: traffic again after {took:?}",
            names[i]
        );
        assert!(t0.elapsed() <= HEAL_BOUND);
        transfer(&ns[2], &ns[0], &c_addr, 1 << 20, &dir);
    }
    // The controlplanes stayed up all along (child 1 of each namespace).
    for (i, n) in ns.iter_mut().enumerate() {
        assert!(
            matches!(n.child(1).try_wait(), Ok(None)),
            "{}'s controlplane exited",
            names[i]
        );
    }
    let log = std::fs::read_to_string(dir.join("b-control.log")).unwrap_or_default();
    assert!(
        log.contains("went away"),
        "b's controlplane saw no loss:\n{log}"
    );
    // The controlplane killed the same way, in each role: it starts again, programs its
    // dataplane from scratch and the neighbours link to it again.
    let mut control = [1usize; 3];
    for (role, i) in [("transit", 1), ("egress", 2), ("ingress", 0)] {
        kill9(&mut ns[i], control[i]);
        control[i] = start_control(&mut ns[i], &dir, names[i]);
        let t0 = Instant::now();
        let took = ping_until(&ns[0], &c_addr, HEAL_BOUND);
        eprintln!(
            "{role} ({}) controlplane killed and restarted: traffic again after {took:?}",
            names[i]
        );
        assert!(t0.elapsed() <= HEAL_BOUND);
        transfer(&ns[2], &ns[0], &c_addr, 1 << 20, &dir);
    }
    let log = std::fs::read_to_string(dir.join("b-node.log")).unwrap_or_default()
        + &std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("b-node."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>();
    assert!(
        log.contains("the controlplane exited"),
        "b's dataplane did not see its controlplane go:\n{log}"
    );
}

/// A dataplane killed just as a new controlplane starts programming it (its first commit gets
/// no answer) does not take the controlplane down: it waits for the next dataplane and
/// programs that one.
#[test]
fn a_dataplane_that_dies_during_the_controlplanes_start_is_waited_for() {
    for c in ["ip", "ping"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    start_line3(&mut ns, &dir, &keys, ["", "", ""]);
    let c_addr = keys[2].1.clone();
    ping_until(&ns[0], &c_addr, Duration::from_secs(20));
    // Children 0 and 1 of c's namespace: its skywire-node and skywire-control.
    let (mut node, mut control) = (0usize, 1usize);
    for _ in 0..3 {
        kill9(&mut ns[2], control);
        control = start_control(&mut ns[2], &dir, "c");
        // Killed while the new controlplane connects and sends its first commit.
        std::thread::sleep(Duration::from_millis(30));
        kill9(&mut ns[2], node);
        node = start_node(&mut ns[2], &dir, "c");
        let took = ping_until(&ns[0], &c_addr, HEAL_BOUND);
        eprintln!("dataplane killed during the controlplane's start: traffic again after {took:?}");
        assert!(
            matches!(ns[2].child(control).try_wait(), Ok(None)),
            "c's controlplane exited"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
