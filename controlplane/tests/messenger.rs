//! Neighbours known by public key alone: each router publishes its control endpoint with a
//! messenger and looks the other up there, then they link and route. With the messenger gone,
//! the established link and route keep working.

#![forbid(unsafe_code)]

use std::time::Duration;
use testbed::*;

#[test]
fn neighbours_found_by_key_through_the_messenger() {
    let t = tag();
    let dir = scratch(&t);
    let (pa, _) = keygen(&dir, "a");
    let (pb, addr_b) = keygen(&dir, "b");
    let (pm, _) = keygen(&dir, "m");
    let mut a = Ns::new(format!("{t}a"));
    let mut b = Ns::new(format!("{t}b"));
    let mut m = Ns::new(format!("{t}m"));
    link(
        &a,
        &format!("{t}ab"),
        "10.83.1.1/24",
        &b,
        &format!("{t}ba"),
        "10.83.1.2/24",
    );
    link(
        &a,
        &format!("{t}am"),
        "10.83.2.1/24",
        &m,
        &format!("{t}ma"),
        "10.83.2.2/24",
    );
    link(
        &b,
        &format!("{t}bm"),
        "10.83.3.1/24",
        &m,
        &format!("{t}mb"),
        "10.83.3.2/24",
    );
    let ctl = bin("controlplane", "skywire-control");
    let mi = m.spawn(
        &[
            ctl.to_str().unwrap(),
            "--key",
            dir.join("m.key").to_str().unwrap(),
            "messenger",
            "--listen",
            "0.0.0.0:7200",
        ],
        &dir.join("m.log"),
    );
    for (ns, n, other, msg_ip, own_ip) in [
        (&mut a, "a", &pb, "10.83.2.2", "10.83.1.1"),
        (&mut b, "b", &pa, "10.83.3.2", "10.83.1.2"),
    ] {
        let extra = format!(
            "messengers:\n  - {{pk: {pm}, endpoint: \"{msg_ip}:7200\"}}\nadvertise: [\"{own_ip}:7100\"]\n"
        );
        start_router(ns, &dir, n, &[(other, "")], &extra);
    }
    ping_until(&a, &addr_b, Duration::from_secs(20));
    // Neither side had the other's address: whoever dialled found it through the messenger.
    let logs: String = ["a", "b"]
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(format!("{n}-control.log"))).unwrap_or_default())
        .collect();
    assert!(logs.contains("through the messenger"), "{logs}");
    // The messenger goes away; the link and the route stay.
    let _ = m.child(mi).kill();
    let _ = m.child(mi).wait();
    std::thread::sleep(Duration::from_millis(500));
    ping(&a, &addr_b);
    let _ = std::fs::remove_dir_all(&dir);
}
