//! A router's viscript killed with SIGKILL (a crash) and started again (as systemd's
//! `Restart=always` does): its skywire-node and skywire-control die with it (PDEATHSIG), the new
//! viscript starts them again, and traffic through the router flows again. Then reloads of its
//! catalogue under traffic lose nothing. Line a - b - c, each router under its own viscript; b
//! (the transit) is the one that crashes and reloads.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};
use testbed::*;

/// Most the router may take to carry traffic again once its viscript is back: the components'
/// start (TUN, fib ring, links, routes) on a loaded 2-core CI run (the target is 1 s idle).
const BACK_BOUND: Duration = Duration::from_secs(15);

fn catalogue(dir: &Path, n: &str) -> std::path::PathBuf {
    let node = bin("dataplane", "skywire-node");
    let control = bin("controlplane", "skywire-control");
    let p = dir.join(format!("{n}-config.yaml"));
    std::fs::write(
        &p,
        format!(
            "settings:\n  shutdown_grace_ms: 1000\napps:\n  skywire-node:\n    path: {}\n    daemon: true\n    autostart: true\n    default_args: [\"--static\", \"{}\", \"--fib-socket\", \"{}\", \"--no-pin\"]\n  skywire-control:\n    path: {}\n    daemon: true\n    autostart: true\n    after: [skywire-node]\n    default_args: [\"run\", \"--config\", \"{}\"]\n",
            node.display(),
            dir.join(format!("{n}-node.yaml")).display(),
            dir.join(format!("{n}.fib")).display(),
            control.display(),
            dir.join(format!("{n}-control.yaml")).display(),
        ),
    )
    .unwrap();
    p
}

fn serve(ns: &mut Ns, dir: &Path, n: &str, log: &str) -> usize {
    let vis = bin("viscript", "viscript");
    let cfg = dir.join(format!("{n}-config.yaml"));
    let sock = dir.join(format!("{n}.sock"));
    ns.spawn(
        &[
            vis.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "serve",
        ],
        &dir.join(log),
    )
}

fn pids_in(ns: &Ns) -> Vec<u32> {
    let out = sh(&["ip", "netns", "pids", &ns.name]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_crashed_viscript_started_again_brings_its_router_back() {
    for c in ["ip", "ping", "python3"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    let names = ["a", "b", "c"];
    let neigh: [Vec<(&str, &str)>; 3] = [
        vec![(&keys[1].0, "10.85.1.2")],
        vec![(&keys[0].0, "10.85.1.1"), (&keys[2].0, "10.85.2.2")],
        vec![(&keys[1].0, "10.85.2.1")],
    ];
    let mut vis = [0usize; 3];
    for (i, n) in names.iter().enumerate() {
        // The configs of start_router, the processes under viscript instead.
        std::fs::write(
            dir.join(format!("{n}-node.yaml")),
            "node:\n  listen: \"0.0.0.0:7000\"\n  shards: 1\n",
        )
        .unwrap();
        let mut nb = String::new();
        for (pk, ip) in &neigh[i] {
            nb.push_str(&format!("  - {{pk: {pk}, endpoint: \"{ip}:7100\"}}\n"));
        }
        std::fs::write(
            dir.join(format!("{n}-control.yaml")),
            format!(
                "key: {n}.key\nfib_socket: {n}.fib\napp_socket: {n}.ctl\nlisten: \"0.0.0.0:7100\"\ndata_port: 7000\nkeepalive_ms: 100\nneighbours:\n{nb}"
            ),
        )
        .unwrap();
        catalogue(&dir, n);
        vis[i] = serve(&mut ns[i], &dir, n, &format!("{n}-viscript.log"));
    }
    let c_addr = keys[2].1.clone();
    let took = ping_until(&ns[0], &c_addr, Duration::from_secs(30));
    eprintln!("first ping a -> c after {took:?}");
    // b's viscript crashes: its components go with it.
    kill9(&mut ns[1], vis[1]);
    wait_until(
        "b's components to die with their viscript",
        Duration::from_secs(5),
        || pids_in(&ns[1]).is_empty(),
    );
    assert!(
        !ns[0]
            .exec(&["ping", "-c", "1", "-W", "1", &c_addr])
            .status
            .success(),
        "a reached c through a b without components"
    );
    // systemd starts it again; it starts its autostart apps, the router carries traffic again.
    let t0 = Instant::now();
    serve(&mut ns[1], &dir, "b", "b-viscript.2.log");
    let took = ping_until(&ns[0], &c_addr, BACK_BOUND);
    eprintln!("b's viscript started again: a reaches c after {took:?}");
    assert!(t0.elapsed() <= BACK_BOUND);
    transfer(&ns[2], &ns[0], &c_addr, 1 << 20, &dir);
    // Nothing of the old b is left: one sky0, one skywire-node, one skywire-control.
    let links = String::from_utf8_lossy(&ns[1].exec(&["ip", "-o", "link"]).stdout).to_string();
    assert_eq!(links.matches("sky0").count(), 1, "{links}");
    let comms: Vec<String> = pids_in(&ns[1])
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    for (what, want) in [("skywire-node", 1), ("skywire-control", 1), ("viscript", 1)] {
        assert_eq!(
            comms.iter().filter(|c| c.as_str() == what).count(),
            want,
            "{comms:?}"
        );
    }

    // Reloads of b's catalogue while a pings c through b every 20 ms: an app added, a setting
    // changed, a broken file, the first file again. The router's components are not touched
    // (same processes) and not one ping is lost.
    let comp_pids = |ns: &Ns| -> Vec<u32> {
        let mut v: Vec<u32> = pids_in(ns)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim().starts_with("skywire-"))
            })
            .collect();
        v.sort();
        v
    };
    let before = comp_pids(&ns[1]);
    let pinger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns[0].name,
            "ping",
            "-i",
            "0.02",
            "-c",
            "150",
            "-W",
            "1",
        ])
        .arg(&c_addr)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pinger = KillOnDrop(pinger);
    let cfg = dir.join("b-config.yaml");
    let first = std::fs::read_to_string(&cfg).unwrap();
    let vis = bin("viscript", "viscript");
    let sock = dir.join("b.sock");
    let reload = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let out = sh(&[
            vis.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "reload",
        ]);
        std::thread::sleep(Duration::from_millis(500));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let extra = format!("{first}  extra:\n    path: /bin/true\n");
    let (ok, text) = reload(&extra);
    assert!(
        ok && text.contains("unchanged: skywire-node, skywire-control"),
        "{text}"
    );
    let (ok, text) = reload(&extra.replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 900"));
    assert!(ok && text.contains("settings: applied"), "{text}");
    let (ok, text) = reload(&format!("{first}  broken: [\n"));
    assert!(!ok, "a broken file reloaded: {text}");
    let (ok, _) = reload(&first);
    assert!(ok);
    // `reload ID`: b's controlplane (id 2, after its node) reads its own config again; its
    // node (id 1) would stop on SIGHUP and is refused.
    let one = |args: &[&str]| {
        let mut v = vec![vis.to_str().unwrap(), "--socket", sock.to_str().unwrap()];
        v.extend_from_slice(args);
        let out = sh(&v);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = one(&["reload", "2"]);
    assert!(
        ok && text.contains("sent SIGHUP to 2 (skywire-control"),
        "{text}"
    );
    wait_until("b's controlplane to reload", Duration::from_secs(5), || {
        one(&["logs", "2", "-n", "200"])
            .1
            .contains("config reloaded")
    });
    let (ok, text) = one(&["reload", "1"]);
    assert!(
        !ok && text.contains("does not reload its config on SIGHUP"),
        "{text}"
    );
    let mut pinger = pinger;
    let mut said = String::new();
    std::io::Read::read_to_string(pinger.0.stdout.as_mut().unwrap(), &mut said).unwrap();
    let _ = pinger.0.wait();
    assert!(
        said.contains("150 packets transmitted, 150 received"),
        "pings lost during the reloads:\n{said}"
    );
    assert_eq!(
        comp_pids(&ns[1]),
        before,
        "a reload touched the router's components"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
