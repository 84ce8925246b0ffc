//! skywire-node as a signal client: started by viscript in a namespace, it registers, answers
//! ping and ru (with its counters and per-shard rates), and on sd exits cleanly and removes sky0.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testbed::*;

fn node_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_skywire-node"))
}

fn viscript_bin() -> PathBuf {
    bin("viscript", "viscript")
}

#[test]
fn node_under_viscript_registers_reports_and_stops() {
    let t = tag();
    let dir = scratch(&t);
    let mut ns = Ns::new(format!("{t}v"));
    let fib = dir.join("n.fib");
    let node_cfg = dir.join("node.yaml");
    std::fs::write(
        &node_cfg,
        "node:\n  listen: \"127.0.0.1:7000\"\n  shards: 2\n  addresses: [fd00::1/64]\n",
    )
    .unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "settings:\n  ping_interval_ms: 200\n  shutdown_grace_ms: 2000\napps:\n  skywire-node:\n    path: {}\n    daemon: true\n    desc: dataplane\n    default_args: [\"--static\", \"{}\", \"--fib-socket\", \"{}\", \"--no-pin\"]\n",
            node_bin().display(),
            node_cfg.display(),
            fib.display()
        ),
    )
    .unwrap();
    let sock = dir.join("v.sock");
    let vis = viscript_bin();
    ns.spawn(
        &[
            vis.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "serve",
        ],
        &dir.join("viscript.log"),
    );
    wait_until("viscript socket", Duration::from_secs(10), || sock.exists());
    let run = |args: &[&str]| {
        let out = Command::new(&vis)
            .arg("--socket")
            .arg(&sock)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or(b""))
                .unwrap_or_default();
        (out.status.success(), v)
    };
    let (ok, v) = run(&["start", "-w", "skywire-node"]);
    assert!(ok, "{v}");
    assert!(ns.exec(&["ip", "link", "show", "sky0"]).status.success());
    let (ok, v) = run(&["ping", "1"]);
    assert!(ok, "{v}");
    // Some traffic into sky0 with no route: counted as drops.
    let _ = ns.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "fd00::9"]);
    std::thread::sleep(Duration::from_millis(1300));
    let (ok, v) = run(&["ru", "1"]);
    assert!(ok, "{v}");
    let c = &v["data"]["counters"];
    assert!(c["tun_rx_packets"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(c["drop_no_rule"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(
        c.get("shard0_pps").is_some() && c.get("shard1_pps").is_some(),
        "{v}"
    );
    let (ok, v) = run(&["sd", "1"]);
    assert!(
        ok && v["text"].as_str().unwrap_or("").contains("exit 0"),
        "{v}"
    );
    assert!(
        !ns.exec(&["ip", "link", "show", "sky0"]).status.success(),
        "sky0 left behind"
    );
    let _ = run(&["quit"]);
    let _ = std::fs::remove_dir_all(&dir);
}
