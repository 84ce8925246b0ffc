//! Neighbours known by public key alone: each router publishes its control endpoint with a
//! messenger and looks the other up there, then they link and route. With the messenger gone,
//! the established link and route keep working.

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
    let node = bin("dataplane", "skywire-node");
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
        let nc = dir.join(format!("{n}-node.yaml"));
        std::fs::write(&nc, "node:\n  listen: \"0.0.0.0:7000\"\n  shards: 1\n").unwrap();
        let cc = dir.join(format!("{n}-control.yaml"));
        std::fs::write(
            &cc,
            format!(
                "key: {n}.key\nfib_socket: {n}.fib\nlisten: \"0.0.0.0:7100\"\ndata_port: 7000\nkeepalive_ms: 100\nneighbours:\n  - {{pk: {other}}}\nmessengers:\n  - {{pk: {pm}, endpoint: \"{msg_ip}:7200\"}}\nadvertise: [\"{own_ip}:7100\"]\n"
            ),
        )
        .unwrap();
        let fib = dir.join(format!("{n}.fib"));
        ns.spawn(
            &[
                node.to_str().unwrap(),
                "--static",
                nc.to_str().unwrap(),
                "--fib-socket",
                fib.to_str().unwrap(),
                "--no-pin",
            ],
            &dir.join(format!("{n}-node.log")),
        );
        ns.spawn(
            &[
                ctl.to_str().unwrap(),
                "run",
                "--config",
                cc.to_str().unwrap(),
            ],
            &dir.join(format!("{n}-control.log")),
        );
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
