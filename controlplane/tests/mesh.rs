//! Four routers in a diamond (a-b-d, a-c-d) and a messenger, each a namespace running viscript
//! with its components from its own config (routers: skywire-node + skywire-control; the
//! messenger: skywire-control messenger). b and d know each other by public key only and find
//! each other's endpoint through the messenger. a reaches d's overlay address (ping, TCP transfer
//! with checksum); then the active branch's link is cut and traffic resumes over the other branch.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testbed::*;

struct Router {
    ns: Ns,
    name: &'static str,
    pk: String,
    addr: String,
    sock: PathBuf,
}

fn vis(r: &Router, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("viscript", "viscript"))
        .arg("--socket")
        .arg(&r.sock)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or(b""))
        .unwrap_or_default()
}

#[test]
fn diamond_routes_and_reroutes_after_a_cut() {
    for c in ["ip", "ping", "python3"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let names = ["a", "b", "c", "d"];
    // The messenger, on a management segment (a bridge in its namespace) that every router
    // joins with one more veth.
    let (pm, _) = keygen(&dir, "m");
    let mut m = Ns::new(format!("{t}m"));
    must(&["ip", "-n", &m.name, "link", "add", "br0", "type", "bridge"]);
    must(&[
        "ip",
        "-n",
        &m.name,
        "addr",
        "add",
        "10.84.0.100/24",
        "dev",
        "br0",
    ]);
    must(&["ip", "-n", &m.name, "link", "set", "br0", "up"]);
    let mut routers: Vec<Router> = names
        .iter()
        .map(|n| {
            let (pk, addr) = keygen(&dir, n);
            Router {
                ns: Ns::new(format!("{t}{n}")),
                name: n,
                pk,
                addr,
                sock: dir.join(format!("{n}.sock")),
            }
        })
        .collect();
    // (x, y, subnet): x gets .1, y gets .2
    let edges = [(0usize, 1usize, 1u8), (0, 2, 2), (1, 3, 3), (2, 3, 4)];
    for (x, y, net) in edges {
        link(
            &routers[x].ns,
            &format!("{t}{}{}", names[x], names[y]),
            &format!("10.81.{net}.1/24"),
            &routers[y].ns,
            &format!("{t}{}{}", names[y], names[x]),
            &format!("10.81.{net}.2/24"),
        );
    }
    for (i, r) in routers.iter().enumerate() {
        let (inner, outer) = (format!("{t}{}m", names[i]), format!("{t}m{}", names[i]));
        must(&[
            "ip", "link", "add", &inner, "netns", &r.ns.name, "type", "veth", "peer", "name",
            &outer, "netns", &m.name,
        ]);
        must(&[
            "ip",
            "-n",
            &r.ns.name,
            "addr",
            "add",
            &format!("10.84.0.{}/24", i + 1),
            "dev",
            &inner,
        ]);
        must(&["ip", "-n", &r.ns.name, "link", "set", &inner, "up"]);
        must(&["ip", "-n", &m.name, "link", "set", &outer, "master", "br0"]);
        must(&["ip", "-n", &m.name, "link", "set", &outer, "up"]);
    }
    let node = bin("dataplane", "skywire-node");
    let control = bin("controlplane", "skywire-control");
    std::fs::write(
        dir.join("m-config.yaml"),
        format!(
            "apps:\n  messenger:\n    path: {}\n    daemon: true\n    autostart: true\n    default_args: [\"--key\", \"{}\", \"messenger\", \"--listen\", \"0.0.0.0:7200\"]\n",
            control.display(),
            dir.join("m.key").display()
        ),
    )
    .unwrap();
    let m_sock = dir.join("m.sock");
    let vis_bin = bin("viscript", "viscript");
    let m_cfg = dir.join("m-config.yaml");
    m.spawn(
        &[
            vis_bin.to_str().unwrap(),
            "--config",
            m_cfg.to_str().unwrap(),
            "--socket",
            m_sock.to_str().unwrap(),
            "serve",
        ],
        &dir.join("m-viscript.log"),
    );
    for (i, r) in routers.iter().enumerate() {
        let n = r.name;
        std::fs::write(
            dir.join(format!("{n}-node.yaml")),
            "node:\n  listen: \"0.0.0.0:7000\"\n  shards: 1\n",
        )
        .unwrap();
        let mut neigh = String::new();
        for (x, y, net) in edges {
            let (other, other_ip) = if x == i {
                (y, format!("10.81.{net}.2"))
            } else if y == i {
                (x, format!("10.81.{net}.1"))
            } else {
                continue;
            };
            // b and d: by key alone, through the messenger.
            if (i, other) == (1, 3) || (i, other) == (3, 1) {
                neigh.push_str(&format!("  - {{pk: {}}}\n", routers[other].pk));
            } else {
                neigh.push_str(&format!(
                    "  - {{pk: {}, endpoint: \"{other_ip}:7100\"}}\n",
                    routers[other].pk
                ));
            }
        }
        // What this router publishes: its address on the b-d link for b and d.
        let adv = match n {
            "b" => "\"10.81.3.1:7100\"",
            "d" => "\"10.81.3.2:7100\"",
            _ => "",
        };
        std::fs::write(
            dir.join(format!("{n}-control.yaml")),
            format!(
                "key: {n}.key\nfib_socket: {n}.fib\nlisten: \"0.0.0.0:7100\"\ndata_port: 7000\nkeepalive_ms: 100\ndead_after: 3\nrekey_secs: 1\nroute_rekey_secs: 1\nmessengers:\n  - {{pk: {pm}, endpoint: \"10.84.0.100:7200\"}}\nadvertise: [{adv}]\nneighbours:\n{neigh}"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{n}-config.yaml")),
            format!(
                "settings:\n  ping_interval_ms: 500\n  shutdown_grace_ms: 1000\napps:\n  skywire-node:\n    path: {}\n    daemon: true\n    autostart: true\n    default_args: [\"--static\", \"{}\", \"--fib-socket\", \"{}\", \"--no-pin\"]\n  skywire-control:\n    path: {}\n    daemon: true\n    autostart: true\n    after: [skywire-node]\n    default_args: [\"run\", \"--config\", \"{}\"]\n",
                node.display(),
                dir.join(format!("{n}-node.yaml")).display(),
                dir.join(format!("{n}.fib")).display(),
                control.display(),
                dir.join(format!("{n}-control.yaml")).display(),
            ),
        )
        .unwrap();
    }
    for r in routers.iter_mut() {
        let cfg = dir.join(format!("{}-config.yaml", r.name));
        let log = dir.join(format!("{}-viscript.log", r.name));
        r.ns.spawn(
            &[
                vis_bin.to_str().unwrap(),
                "--config",
                cfg.to_str().unwrap(),
                "--socket",
                r.sock.to_str().unwrap(),
                "serve",
            ],
            &log,
        );
    }
    for r in &routers {
        wait_until("viscript socket", Duration::from_secs(10), || {
            r.sock.exists()
        });
    }
    let (a, d) = (&routers[0], &routers[3]);
    let took = ping_until(&a.ns, &d.addr, Duration::from_secs(20));
    eprintln!("first ping a -> d after {took:?}");
    transfer(&d.ns, &a.ns, &d.addr, 4 << 20, &dir);
    // Inspection through viscript: a's routes name d, a's peers are b and c.
    std::thread::sleep(Duration::from_millis(1200));
    let routes = vis(a, &["routes"]);
    let text = routes["text"].as_str().unwrap_or("");
    assert!(text.contains(&d.pk[..8]) && text.contains("Up"), "{routes}");
    // b and d linked although neither had the other's address (through the messenger: it may
    // come after a's first route to d, which goes through c).
    wait_until("b and d to link", Duration::from_secs(20), || {
        vis(d, &["peers"])["text"]
            .as_str()
            .unwrap_or("")
            .contains(&routers[1].pk[..16])
    });
    let peers_d = vis(d, &["peers"]);
    assert!(
        peers_d["text"]
            .as_str()
            .unwrap_or("")
            .contains(&routers[1].pk[..16]),
        "{peers_d}"
    );
    let peers = vis(a, &["peers"]);
    let text = peers["text"].as_str().unwrap_or("");
    assert!(
        text.contains(&routers[1].pk[..16]) && text.contains(&routers[2].pk[..16]),
        "{peers}"
    );
    let ru = vis(a, &["ru", "2"]);
    assert!(ru["data"]["counters"]["links"].as_u64() == Some(2), "{ru}");
    assert!(ru["data"]["counters"]["lsdb"].as_u64() >= Some(4), "{ru}");
    // Data keys rotate every second here (rekey_secs: 1) while the transfers run.
    let rekeys = |r: &Router| {
        vis(r, &["ru", "2"])["data"]["counters"]["rekeys"]
            .as_u64()
            .unwrap_or(0)
    };
    // (counted once the controlplane published them: every 500 ms, later on a loaded run)
    wait_until("a rekey", Duration::from_secs(10), || {
        rekeys(a) + rekeys(&routers[1]) >= 1
    });
    // Route keys are renewed every second here too (route_rekey_secs: 1), make-before-break,
    // while the transfer ran (its checksum matched).
    let route_rekeys = vis(a, &["ru", "2"])["data"]["counters"]["route_rekeys"]
        .as_u64()
        .unwrap_or(0);
    assert!(route_rekeys >= 1, "no route rekey happened");

    // End-to-end keys: the ends of the route hold them, the relays' dataplanes hold none.
    let route_keys = |r: &Router| -> u64 {
        vis(r, &["ru", "1"])["data"]["counters"]["route_keys"]
            .as_u64()
            .unwrap_or(u64::MAX)
    };
    assert!(
        route_keys(a) >= 2 && route_keys(a) != u64::MAX,
        "a holds no route key"
    );
    assert!(
        route_keys(d) >= 2 && route_keys(d) != u64::MAX,
        "d holds no route key"
    );
    assert_eq!(route_keys(&routers[1]), 0, "relay b holds a route key");
    assert_eq!(route_keys(&routers[2]), 0, "relay c holds a route key");

    // Which branch carries the traffic? The relay whose dataplane saw more frames.
    let frames = |r: &Router| -> u64 {
        let v = vis(r, &["ru", "1"]);
        v["data"]["counters"]["udp_rx_packets"]
            .as_u64()
            .unwrap_or(0)
    };
    let (fb, fc) = (frames(&routers[1]), frames(&routers[2]));
    let (active, veth) = if fb >= fc {
        ("b", format!("{t}ab"))
    } else {
        ("c", format!("{t}ac"))
    };
    eprintln!("active branch via {active} (b {fb}, c {fc} frames); cutting {veth}");
    must(&["ip", "-n", &a.ns.name, "link", "set", &veth, "down"]);
    let took = ping_until(&a.ns, &d.addr, Duration::from_secs(15));
    eprintln!("reroute: first answer {took:?} after the cut");
    transfer(&d.ns, &a.ns, &d.addr, 2 << 20, &dir);
    for r in &routers {
        let _ = vis(r, &["quit"]);
    }
    let _ = Command::new(&vis_bin)
        .arg("--socket")
        .arg(&m_sock)
        .arg("quit")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
}
