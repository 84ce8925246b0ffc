//! skywire-control reloads its config on SIGHUP, in network namespaces (line a - b - c, b the
//! transit): a cost and an unknown extra neighbour applied under a 20 ms ping a -> c lose no
//! ping; a broken file is refused and changes nothing; c removed from b's config closes b's
//! link to c and keeps it closed; c listed again brings it back. b's controlplane runs on
//! throughout (one process).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;
use testbed::*;

/// How long a reload may take to show in b's log (it is read on the next loop turn, 100 ms).
const SEEN: Duration = Duration::from_secs(5);

fn hup(ns: &mut Ns, child: usize) {
    must(&["kill", "-HUP", &ns.child(child).id().to_string()]);
}

fn reloads_in(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(what)
        .count()
}

#[test]
fn sighup_reloads_neighbours_and_costs_without_touching_the_rest() {
    for c in ["ip", "ping", "python3"] {
        assert!(have(c), "needs {c}: run scripts/test.sh (it installs it)");
    }
    let t = tag();
    let dir = scratch(&t);
    let (keys, mut ns) = line3(&t, &dir);
    start_line3(&mut ns, &dir, &keys, ["", "", ""]);
    let c_addr = keys[2].1.clone();
    ping_until(&ns[0], &c_addr, Duration::from_secs(20));
    let cfg = dir.join("b-control.yaml");
    let log = dir.join("b-control.log");
    let first = std::fs::read_to_string(&cfg).unwrap();
    let c_line = format!("  - {{pk: {}, endpoint: \"10.85.2.2:7100\"}}\n", keys[2].0);
    assert!(first.contains(&c_line), "{first}");
    let reload = |ns: &mut Ns, text: &str, want: &str, nth: usize| {
        std::fs::write(&cfg, text).unwrap();
        hup(ns, 1);
        wait_until(want, SEEN, || reloads_in(&log, want) >= nth);
    };

    // A cost for c and a neighbour nobody runs, under a 20 ms ping through b.
    let pinger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns[0].name,
            "ping",
            "-i",
            "0.02",
            "-c",
            "100",
            "-W",
            "1",
        ])
        .arg(&c_addr)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pinger = KillOnDrop(pinger);
    let stranger = "ab".repeat(32);
    let costly = first.replace(
        &c_line,
        &format!(
            "  - {{pk: {}, endpoint: \"10.85.2.2:7100\", cost_us: 5000}}\n  - {{pk: {stranger}, endpoint: \"10.85.2.9:7100\"}}\n",
            keys[2].0
        ),
    );
    reload(&mut ns[1], &costly, "config reloaded", 1);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("neighbours added: abababababababab")
            && said.contains("applied: neighbours, costs"),
        "{said}"
    );
    // A broken file: refused, nothing changes.
    reload(&mut ns[1], "neighbours: [\n", "reload refused", 1);
    let mut out = String::new();
    std::io::Read::read_to_string(pinger.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let _ = pinger.0.wait();
    assert!(
        out.contains("100 packets transmitted, 100 received"),
        "pings lost during the reloads:\n{out}"
    );

    // c removed from b's config: the link goes, and c's redials are refused.
    reload(
        &mut ns[1],
        &first.replace(&c_line, ""),
        "neighbours removed",
        1,
    );
    wait_until("a cut off from c", Duration::from_secs(10), || {
        !ns[0]
            .exec(&["ping", "-c", "1", "-W", "0.3", &c_addr])
            .status
            .success()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !ns[0]
            .exec(&["ping", "-c", "2", "-W", "0.5", &c_addr])
            .status
            .success(),
        "c still reached through b after b dropped it"
    );
    // Listed again: back.
    reload(&mut ns[1], &first, "config reloaded", 3);
    let took = ping_until(&ns[0], &c_addr, Duration::from_secs(15));
    eprintln!("c listed again: a reaches it after {took:?}");
    transfer(&ns[2], &ns[0], &c_addr, 1 << 20, &dir);
    assert!(
        matches!(ns[1].child(1).try_wait(), Ok(None)),
        "b's controlplane exited"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
