//! The VPN across the mesh: three routers in a line (a - b - c) and an "internet" namespace
//! behind c, and a messenger in b's namespace. c runs skywire-vpn-server (allowing a only), which
//! publishes service `vpn` through its controlplane; a runs skywire-vpn-client, which finds it
//! through its controlplane's messenger query: curl, ping and iperf3 from a reach the internet
//! namespace through two hops and c's NAT; b is refused.
//! Stopping the client leaves a's routing table exactly as it was; so does `--cleanup` after a
//! SIGKILL; stopping the server removes its nftables table, pool route and ip_forward.

#![forbid(unsafe_code)]

use std::process::Output;
use std::time::{Duration, Instant};
use testbed::*;

const INET: &str = "10.85.9.2";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What the VPN client may change: IPv4 addresses and every IPv4 routing table.
fn routing_state(ns: &Ns) -> String {
    let a = ns.exec(&["ip", "-4", "-o", "addr", "show"]);
    let r = ns.exec(&["ip", "-4", "route", "show", "table", "all"]);
    format!("{}\n{}", text(&a), text(&r))
}

fn curl(ns: &Ns) -> Output {
    ns.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "3",
        &format!("http://{INET}:8080/hello.txt"),
    ])
}

fn curl_until_ok(ns: &Ns, within: Duration) -> Output {
    let t = Instant::now();
    loop {
        let out = curl(ns);
        if out.status.success() || t.elapsed() > within {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_log(path: &std::path::Path, what: &str, within: Duration) {
    wait_until(what, within, || {
        std::fs::read_to_string(path).is_ok_and(|s| s.contains(what))
    });
}

#[test]
fn vpn_across_two_hops_and_clean_teardown() {
    for c in ["ip", "ping", "python3", "curl", "iperf3", "nft"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    let inet = Ns::new(format!("{t}i"));
    let uplink = format!("{t}ci");
    link(
        &ns[2],
        &uplink,
        "10.85.9.1/24",
        &inet,
        &format!("{t}ic"),
        "10.85.9.2/24",
    );
    let (mpk, _) = keygen(&dir, "m");
    let ctl = bin("controlplane", "skywire-control");
    let mkey = dir.join("m.key");
    ns[1].spawn(
        &[
            ctl.to_str().unwrap(),
            "--key",
            mkey.to_str().unwrap(),
            "messenger",
            "--listen",
            "0.0.0.0:7200",
        ],
        &dir.join("messenger.log"),
    );
    // Each router reaches the messenger at b's address on its own link.
    let m_at = ["10.85.1.2", "10.85.1.2", "10.85.2.1"];
    let extra: Vec<String> = m_at
        .iter()
        .map(|ip| format!("messengers:\n  - {{pk: {mpk}, endpoint: \"{ip}:7200\"}}\n"))
        .collect();
    start_line3(&mut ns, &dir, &keys, [&extra[0], &extra[1], &extra[2]]);
    ping_until(&ns[0], &keys[2].1, Duration::from_secs(20));
    ping_until(&ns[1], &keys[2].1, Duration::from_secs(20));
    // The internet: a page and an iperf3 server; a has no route there.
    std::fs::write(dir.join("hello.txt"), "hello from the internet\n").unwrap();
    let mut inet = inet;
    inet.spawn(
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            INET,
            "--directory",
            dir.to_str().unwrap(),
        ],
        &dir.join("http.log"),
    );
    inet.spawn(
        &["iperf3", "-s", "-B", INET, "-p", "5201"],
        &dir.join("iperf3-server.log"),
    );
    assert!(
        !curl(&ns[0]).status.success(),
        "a reaches the internet without the VPN"
    );
    let before = routing_state(&ns[0]);
    let c_nft_before = text(&ns[2].exec(&["nft", "list", "ruleset"]));
    let fwd = |ns: &Ns| text(&ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]));
    ns[2].must(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    let c_fwd_before = fwd(&ns[2]);
    assert_eq!(c_fwd_before.trim(), "0");

    let srv = bin("apps", "skywire-vpn-server");
    let cli = bin("apps", "skywire-vpn-client");
    let server = ns[2].spawn(
        &[
            srv.to_str().unwrap(),
            "v0",
            dir.join("c.ctl").to_str().unwrap(),
            "8100",
            "--allow",
            &keys[0].0,
            "--uplink",
            &uplink,
            // The internet host is on a private address here: open it (only it).
            "--allow-dst",
            &format!("{INET}/32"),
            "--state-dir",
            dir.join("c-state").to_str().unwrap(),
        ],
        &dir.join("vpn-server.log"),
    );
    wait_log(
        &dir.join("vpn-server.log"),
        "listening on",
        Duration::from_secs(20),
    );
    let client_args = |n: &str| {
        vec![
            cli.to_str().unwrap().to_string(),
            "v0".to_string(),
            dir.join(format!("{n}.ctl")).to_str().unwrap().to_string(),
            "--server-pk".to_string(),
            keys[2].0.clone(),
            "--state-dir".to_string(),
            dir.join(format!("{n}-state")).to_str().unwrap().to_string(),
        ]
    };
    // a names no server: its controlplane asks the messenger for service `vpn`.
    let args_a = [
        cli.to_str().unwrap().to_string(),
        "v0".to_string(),
        dir.join("a.ctl").to_str().unwrap().to_string(),
        "--state-dir".to_string(),
        dir.join("a-state").to_str().unwrap().to_string(),
    ];
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let client_log = dir.join("vpn-client.log");
    let client = ns[0].spawn(&args_a, &client_log);

    // Through the VPN: curl, ping, iperf3; the internet sees c's address (NAT).
    let out = curl_until_ok(&ns[0], Duration::from_secs(20));
    assert!(
        out.status.success(),
        "curl through the vpn: {}\nclient log:\n{}",
        text(&out),
        std::fs::read_to_string(&client_log).unwrap_or_default()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the internet\n"
    );
    wait_log(
        &client_log,
        &format!("found vpn server {}", keys[2].0),
        Duration::from_secs(1),
    );
    assert!(
        std::fs::read_to_string(dir.join("http.log"))
            .unwrap()
            .contains("10.85.9.1"),
        "the internet did not see the exit's address"
    );
    ping(&ns[0], INET);
    let out = ns[0].exec(&["iperf3", "-c", INET, "-p", "5201", "-t", "2", "-J"]);
    assert!(out.status.success(), "iperf3: {}", text(&out));
    let json = String::from_utf8_lossy(&out.stdout);
    let received: f64 = json
        .split("\"sum_received\"")
        .nth(1)
        .and_then(|s| s.split("\"bytes\":").nth(1))
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(received > 100_000.0, "iperf3 moved {received} bytes");
    // Clients reach the uplink only: no service of the exit's host (on its uplink address or
    // its address towards the mesh), no metadata address, no private LAN behind the uplink;
    // each of those answers the exit itself.
    ns[2].spawn(
        &["python3", "-m", "http.server", "9099", "--bind", "0.0.0.0"],
        &dir.join("c-http.log"),
    );
    for extra in ["169.254.169.254", "192.168.85.7"] {
        inet.must(&[
            "ip",
            "addr",
            "add",
            &format!("{extra}/32"),
            "dev",
            &format!("{t}ic"),
        ]);
        ns[2].must(&["ip", "route", "add", &format!("{extra}/32"), "dev", &uplink]);
        inet.spawn(
            &["python3", "-m", "http.server", "9099", "--bind", extra],
            &dir.join(format!("http-{extra}.log")),
        );
    }
    let get = |ns: &Ns, ip: &str| {
        ns.exec(&[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            &format!("http://{ip}:9099/"),
        ])
    };
    for ip in ["10.85.9.1", "10.85.2.2", "169.254.169.254", "192.168.85.7"] {
        wait_until(
            &format!("the exit reaches {ip}:9099"),
            Duration::from_secs(10),
            || get(&ns[2], ip).status.success(),
        );
        let out = get(&ns[0], ip);
        assert!(
            !out.status.success(),
            "a client reached {ip}:9099 through the exit"
        );
    }
    assert!(
        curl(&ns[0]).status.success(),
        "the internet is still reachable"
    );
    let during = routing_state(&ns[0]);
    assert_ne!(during, before, "the client changed nothing");
    assert!(
        during.contains("0.0.0.0/1") && during.contains("128.0.0.0/1"),
        "{during}"
    );

    // a's controlplane crashes and comes back: the client re-attaches, traffic flows again.
    let _ = ns[0].child(1).kill();
    let _ = ns[0].child(1).wait();
    ns[0].spawn(
        &[
            ctl.to_str().unwrap(),
            "run",
            "--config",
            dir.join("a-control.yaml").to_str().unwrap(),
        ],
        &dir.join("a-control-2.log"),
    );
    let out = curl_until_ok(&ns[0], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "curl after a controlplane restart: {}",
        text(&out)
    );
    // The client router's dataplane, then the server router's dataplane and controlplane
    // (child 0 of a's namespace, children 0 and 1 of c's), SIGKILLed and started again: the
    // running server and client carry traffic again.
    for (what, i, child) in [
        ("client router's dataplane", 0usize, 0usize),
        ("server router's dataplane", 2, 0),
        ("server router's controlplane", 2, 1),
    ] {
        let n = ["a", "b", "c"][i];
        let _ = ns[i].child(child).kill();
        let _ = ns[i].child(child).wait();
        if child == 0 {
            start_node(&mut ns[i], &dir, n);
        } else {
            start_control(&mut ns[i], &dir, n);
        }
        // Timed by ping (a curl's lost SYN would add TCP's 1 s retransmission timeout); 0.2-0.4 s
        // on an idle machine, the bound is for the whole suite's load (as in the heal test).
        let took = ping_until(&ns[0], INET, Duration::from_secs(8));
        eprintln!("{what} killed and restarted: through the VPN again after {took:?}");
        let out = curl_until_ok(&ns[0], Duration::from_secs(30));
        assert!(
            out.status.success(),
            "curl after the {what} restart: {}",
            text(&out)
        );
    }
    // b is on the mesh but not allowed: refused, and its table untouched.
    let b_before = routing_state(&ns[1]);
    let args_b = client_args("b");
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let b_client = ns[1].spawn(&args_b, &dir.join("vpn-client-b.log"));
    wait_log(
        &dir.join("vpn-client-b.log"),
        "refused",
        Duration::from_secs(20),
    );
    assert_eq!(
        terminate(&mut ns[1], b_client, Duration::from_secs(5)).code(),
        Some(0)
    );
    assert_eq!(routing_state(&ns[1]), b_before);

    // The client's attachment is held by its controlplane while it runs...
    let mut app = controlplane::appsock::AppClient::connect(&dir.join("a.ctl")).unwrap();
    let attach_to_b = format!("attach {} 0.0.0.0/0", keys[1].0);
    let e = app.call(&attach_to_b).unwrap_err();
    assert!(e.contains("already attached"), "{e}");
    // A clean stop restores a's routing table.
    let st = terminate(&mut ns[0], client, Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "client exit");
    assert_eq!(routing_state(&ns[0]), before, "after a clean stop");
    assert!(
        !curl(&ns[0]).status.success(),
        "still routed after the client stopped"
    );
    // ... and gone with its connection.
    assert_eq!(app.call(&attach_to_b), Ok(String::new()));
    assert_eq!(
        app.call(&format!("detach {}", keys[1].0)),
        Ok(String::new())
    );

    // A crash leaves the changes; --cleanup (or the next start) undoes them.
    let client = ns[0].spawn(&args_a, &dir.join("vpn-client-2.log"));
    let out = curl_until_ok(&ns[0], Duration::from_secs(20));
    assert!(
        out.status.success(),
        "curl after the restart: {}",
        text(&out)
    );
    let _ = ns[0].child(client).kill();
    let _ = ns[0].child(client).wait();
    assert_ne!(routing_state(&ns[0]), before, "SIGKILL undid the routes?");
    let mut cleanup = args_a.clone();
    cleanup.push("--cleanup");
    let out = ns[0].exec(&cleanup);
    assert!(out.status.success(), "cleanup: {}", text(&out));
    assert!(text(&out).contains("undid"), "{}", text(&out));
    assert_eq!(routing_state(&ns[0]), before, "after crash + cleanup");

    // The server's stop removes its table, its route and ip_forward.
    assert!(text(&ns[2].exec(&["nft", "list", "ruleset"])).contains("skywire_vpn_v0"));
    assert_eq!(
        terminate(&mut ns[2], server, Duration::from_secs(10)).code(),
        Some(0)
    );
    assert_eq!(text(&ns[2].exec(&["nft", "list", "ruleset"])), c_nft_before);
    assert!(!text(&ns[2].exec(&["ip", "-4", "route"])).contains("100.64.0.0/10"));
    assert_eq!(fwd(&ns[2]), c_fwd_before);
    let _ = std::fs::remove_dir_all(&dir);
}
