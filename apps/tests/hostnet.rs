//! `apps::hostnet` against a real kernel, inside a fresh network namespace: changes are
//! applied, then undone by `undo_all`, or (after a simulated crash) by the next
//! `Journal::open`; pre-existing state is refused and survives. The journal code runs on a
//! thread that `setns`es into the namespace, so its netlink sockets, `/proc/sys/net` and
//! the `nft` it spawns act there (checked before anything is changed).
//!
//! Skipped with a note unless root with `ip`, `nft` and `sysctl` installed.

#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apps::hostnet::{Journal, nat_ruleset};
use testbed::{Ns, have, tag, wait_until};

/// A namespace with veth devices `sky0` and `up0` (10.1.2.1/24), ip_forward off, and a
/// scratch directory for the journal. Both are removed on drop, also when a test fails.
struct Env {
    ns: Ns,
    dir: PathBuf,
    table: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    fn journal(&self) -> PathBuf {
        self.dir.join("hostnet.journal")
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A directory only its owner may use, as the journal requires.
fn private_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
}

fn setup() -> Option<Env> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root (network namespaces, routes, nftables)");
        return None;
    }
    for cmd in ["ip", "nft", "sysctl"] {
        if !have(cmd) {
            eprintln!("skipping: `{cmd}` not installed");
            return None;
        }
    }
    let t = tag();
    let ns = Ns::new(format!("hostnet-{t}"));
    for (a, b) in [("sky0", "sky0p"), ("up0", "up0p")] {
        ns.must(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
        ns.must(&["ip", "link", "set", a, "up"]);
        ns.must(&["ip", "link", "set", b, "up"]);
    }
    ns.must(&["ip", "addr", "add", "10.1.2.1/24", "dev", "up0"]);
    ns.must(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    // Carrier comes up asynchronously; wait so the snapshots do not change under us.
    for dev in ["sky0", "up0"] {
        wait_until(&format!("carrier on {dev}"), Duration::from_secs(5), || {
            let out = ns.exec(&["ip", "link", "show", dev]);
            String::from_utf8_lossy(&out.stdout).contains("LOWER_UP")
        });
    }
    let dir = std::env::temp_dir().join(format!("skynode-hostnet-{t}"));
    let _ = fs::remove_dir_all(&dir);
    Some(Env {
        ns,
        dir,
        table: format!("skyvpn_{t}"),
    })
}

/// Runs `f` on a new thread moved into the namespace `ns` (the thread ends with `f`).
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let target = format!("/run/netns/{ns}");
            let fd = File::open(&target).expect("open netns");
            rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            // Never let the code under test loose on the host's namespace: the thread is in
            // `ns`, and /proc/sys/net follows it.
            let here = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
            assert_eq!(here, fs::metadata(&target).unwrap().ino(), "setns");
            assert!(Path::new("/proc/sys/net/ipv4/conf/sky0").exists());
            assert!(Path::new("/proc/sys/net/ipv4/conf/up0").exists());
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The state the journal may touch, as the tools print it.
fn snapshot(ns: &Ns) -> String {
    let mut s = String::new();
    for cmd in [
        &["ip", "-4", "-o", "addr"][..],
        &["ip", "-4", "route", "show", "table", "all"],
        &["nft", "list", "ruleset"],
        &["sysctl", "net.ipv4.ip_forward"],
    ] {
        let out = ns.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.push_str(&format!(
            "$ {}\n{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    s
}

/// Host state that must never change: its ip_forward and the absence of our table.
fn host_state(table: &str) -> (String, bool) {
    let fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = testbed::sh(&["nft", "list", "tables"]);
    (fwd, String::from_utf8_lossy(&out.stdout).contains(table))
}

/// The VPN exit's changes: an address, 3 routes, ip_forward, the nat table.
fn apply(j: &mut Journal, table: &str) {
    j.add_address("sky0", ip("100.64.0.2"), 32).unwrap();
    j.add_route(ip("0.0.0.0"), 1, "sky0", None).unwrap();
    j.add_route(ip("128.0.0.0"), 1, "sky0", None).unwrap();
    j.add_route(ip("198.51.100.7"), 32, "up0", Some(ip("10.1.2.254")))
        .unwrap();
    j.set_sysctl("net/ipv4/ip_forward", "1").unwrap();
    let body = nat_ruleset("100.64.0.0/10", "up0", "sky0");
    j.nft_table("ip", table, &body).unwrap();
}

fn check_applied(snap: &str, table: &str) {
    for want in [
        "sky0    inet 100.64.0.2/32",
        "0.0.0.0/1 dev sky0",
        "128.0.0.0/1 dev sky0",
        "198.51.100.7 via 10.1.2.254 dev up0",
        "net.ipv4.ip_forward = 1",
        &format!("table ip {table}"),
        "ip saddr 100.64.0.0/10 oifname \"up0\" masquerade",
        "tcp option maxseg size set rt mtu",
        "iifname \"up0\" oifname \"sky0\" ct state established,related accept",
    ] {
        assert!(snap.contains(want), "missing {want:?} in\n{snap}");
    }
}

#[test]
fn undo_all_restores_the_namespace() {
    let Some(env) = setup() else { return };
    let host = host_state(&env.table);
    let before = snapshot(&env.ns);
    let path = env.journal();
    in_ns(&env.ns.name, || {
        let (mut j, undone) = Journal::open(&path).unwrap();
        assert!(undone.is_empty(), "{undone:?}");
        apply(&mut j, &env.table);
        check_applied(&snapshot(&env.ns), &env.table);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "# skywire hostnet journal v1\naddr sky0 100.64.0.2/32\nroute 0.0.0.0/1 dev sky0\n\
                 route 128.0.0.0/1 dev sky0\nroute 198.51.100.7/32 dev up0 via 10.1.2.254\n\
                 sysctl net/ipv4/ip_forward 0\nnft ip {}\n",
                env.table
            )
        );
        // Loading the table again replaces it without a second entry.
        let body = nat_ruleset("100.64.0.0/10", "up0", "sky0");
        j.nft_table("ip", &env.table, &body).unwrap();
        assert_eq!(j.changes().len(), 6);
        let errors = j.undo_all();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!path.exists());
        assert!(j.changes().is_empty());
    });
    assert_eq!(snapshot(&env.ns), before);
    assert_eq!(host_state(&env.table), host);
}

#[test]
fn crash_leftovers_are_undone_at_next_open() {
    let Some(env) = setup() else { return };
    let host = host_state(&env.table);
    let before = snapshot(&env.ns);
    let path = env.journal();
    in_ns(&env.ns.name, || {
        let (mut j, _) = Journal::open(&path).unwrap();
        apply(&mut j, &env.table);
        j.crash();
    });
    // The "crashed" run left its changes and its journal behind.
    check_applied(&snapshot(&env.ns), &env.table);
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 7);
    let undone = in_ns(&env.ns.name, || {
        let (j, undone) = Journal::open(&path).unwrap();
        assert!(!path.exists(), "journal kept after a complete restore");
        drop(j);
        undone
    });
    assert_eq!(
        undone,
        [
            format!("nft ip {}", env.table),
            "sysctl net/ipv4/ip_forward 0".into(),
            "route 198.51.100.7/32 dev up0 via 10.1.2.254".into(),
            "route 128.0.0.0/1 dev sky0".into(),
            "route 0.0.0.0/1 dev sky0".into(),
            "addr sky0 100.64.0.2/32".into(),
        ]
    );
    assert_eq!(snapshot(&env.ns), before);
    assert_eq!(host_state(&env.table), host);
}

/// A crash between writing an entry and applying it leaves entries for changes that never
/// happened: undoing them is harmless.
#[test]
fn never_applied_changes_undo_harmlessly() {
    let Some(env) = setup() else { return };
    let before = snapshot(&env.ns);
    let path = env.journal();
    private_dir(&env.dir);
    fs::write(
        &path,
        format!(
            "# skywire hostnet journal v1\naddr sky0 100.64.0.77/32\nroute 192.0.2.0/24 dev sky0\n\
             route 10.9.0.0/16 dev gone0 via 10.1.2.9\nsysctl net/ipv4/ip_forward 0\nnft ip {}\n",
            env.table
        ),
    )
    .unwrap();
    let undone = in_ns(&env.ns.name, || Journal::open(&path).unwrap().1);
    assert_eq!(undone.len(), 5, "{undone:?}");
    assert_eq!(
        undone
            .iter()
            .filter(|d| d.ends_with("(already gone)"))
            .count(),
        4,
        "{undone:?}"
    );
    assert!(!path.exists());
    assert_eq!(snapshot(&env.ns), before);
}

#[test]
fn preexisting_state_is_refused_and_kept() {
    let Some(env) = setup() else { return };
    env.ns.must(&[
        "ip",
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "10.1.2.254",
        "dev",
        "up0",
    ]);
    env.ns
        .must(&["ip", "addr", "add", "100.64.0.9/32", "dev", "sky0"]);
    let before = snapshot(&env.ns);
    let path = env.journal();
    in_ns(&env.ns.name, || {
        let (mut j, _) = Journal::open(&path).unwrap();
        j.add_address("sky0", ip("100.64.0.2"), 32).unwrap();
        let e = j
            .add_route(ip("203.0.113.0"), 24, "up0", Some(ip("10.1.2.254")))
            .unwrap_err();
        assert!(
            e.starts_with("route 203.0.113.0/24 dev up0 via 10.1.2.254 already exists"),
            "{e}"
        );
        // The kernel keys on the prefix: via another device (and with host bits) too.
        let e = j
            .add_route(ip("203.0.113.5"), 24, "sky0", None)
            .unwrap_err();
        assert!(
            e.starts_with("route 203.0.113.0/24 dev sky0 already exists"),
            "{e}"
        );
        let e = j.add_address("sky0", ip("100.64.0.9"), 32).unwrap_err();
        assert_eq!(e, "address 100.64.0.9/32 on sky0 already exists");
        let e = j.add_route(ip("10.0.0.0"), 8, "nosuch0", None).unwrap_err();
        assert!(e.contains("no device nosuch0"), "{e}");
        // A ruleset nft rejects changes nothing and is not journaled.
        let bad = nat_ruleset("100.64.0.0/10", "up\"0", "sky0");
        let e = j.nft_table("ip", &env.table, &bad).unwrap_err();
        assert!(
            e.starts_with(&format!("load nft table ip {}: nft failed", env.table)),
            "{e}"
        );
        // Only our own address is journaled.
        assert_eq!(j.changes().len(), 1);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# skywire hostnet journal v1\naddr sky0 100.64.0.2/32\n"
        );
        let errors = j.undo_all();
        assert!(errors.is_empty(), "{errors:?}");
    });
    let after = snapshot(&env.ns);
    assert!(
        after.contains("203.0.113.0/24 via 10.1.2.254 dev up0"),
        "{after}"
    );
    assert!(after.contains("inet 100.64.0.9/32"), "{after}");
    assert_eq!(after, before);
}

// These two touch no network state and run anywhere.

#[test]
fn unparseable_journal_is_refused() {
    let dir = std::env::temp_dir().join(format!("skynode-hostnet-{}", tag()));
    private_dir(&dir);
    let path = dir.join("bad.journal");
    let text =
        "# skywire hostnet journal v1\naddr sky0 100.64.0.2/32\nroute 10.0.0.0/8 dev eth0 via\n";
    fs::write(&path, text).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("line 3: expected `route"), "{e}");
    // Nothing was undone or rewritten.
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn journal_is_exclusive() {
    let dir = std::env::temp_dir().join(format!("skynode-hostnet-{}", tag()));
    let path = dir.join("sub").join("x.journal");
    let (first, _) = Journal::open(&path).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.contains("in use by another process"), "{e}");
    drop(first);
    let (second, undone) = Journal::open(&path).unwrap();
    assert!(undone.is_empty());
    drop(second);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn symlinked_journal_files_are_refused() {
    use std::os::unix::fs::symlink;
    let dir = std::env::temp_dir().join(format!("skynode-hostnet-{}", tag()));
    private_dir(&dir);
    let victim = dir.join("victim");
    fs::write(&victim, "untouched").unwrap();
    // The journal itself: a planted journal elsewhere is not read (nor undone).
    let path = dir.join("x.journal");
    fs::write(
        &victim,
        format!("{}\nnft ip skyvictim\n", apps::hostnet::HEADER),
    )
    .unwrap();
    symlink(&victim, &path).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.contains("symlink"), "{e}");
    fs::remove_file(&path).unwrap();
    // The lock file.
    let lock = dir.join("x.journal.lock");
    let _ = fs::remove_file(&lock); // made by the open above
    symlink(&victim, &lock).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(e.contains("symlink"), "{e}");
    fs::remove_file(&lock).unwrap();
    // A temporary file planted as a symlink is removed, not written through.
    let before = fs::read_to_string(&victim).unwrap();
    symlink(&victim, dir.join("x.journal.tmp")).unwrap();
    let (j, _) = Journal::open(&path).unwrap();
    assert!(fs::symlink_metadata(dir.join("x.journal.tmp")).is_err());
    drop(j);
    assert_eq!(fs::read_to_string(&victim).unwrap(), before);
    // A symlinked state directory.
    let link = dir.join("linked");
    let real = dir.join("real");
    private_dir(&real);
    symlink(&real, &link).unwrap();
    let e = Journal::open(&link.join("y.journal")).unwrap_err();
    assert!(e.contains("symlink"), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_state_directory_others_can_use_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("skynode-hostnet-{}", tag()));
    let state = dir.join("state");
    fs::create_dir_all(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
    let path = state.join("x.journal");
    let e = Journal::open(&path).unwrap_err();
    assert!(e.contains("mode 0755") && e.contains("chmod 0700"), "{e}");
    assert!(!state.join("x.journal.lock").exists(), "a file was made");
    // Created when missing: 0700.
    let fresh = dir.join("fresh");
    let (j, _) = Journal::open(&fresh.join("x.journal")).unwrap();
    drop(j);
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
    // Owned by someone else (root can hand it over to test this).
    if rustix::process::geteuid().is_root() {
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&state, Some(54321), None).unwrap();
        let e = Journal::open(&path).unwrap_err();
        assert!(
            e.contains("owned by uid 54321") && e.contains("chown"),
            "{e}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// A journal line naming a sysctl the VPN apps do not set is refused before anything is
/// undone, and `set_sysctl` refuses such a sysctl too. In a namespace: the old code wrote it.
#[test]
fn a_journal_names_only_the_sysctls_the_vpn_sets() {
    let Some(env) = setup() else { return };
    let range = "net/ipv4/ip_local_port_range";
    let read = || {
        let out = env
            .ns
            .exec(&["sysctl", "-n", "net.ipv4.ip_local_port_range"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let before = read();
    private_dir(&env.dir);
    let path = env.journal();
    let text = format!(
        "# skywire hostnet journal v1\nnft ip {}\nsysctl {range} 1024\t1025\n",
        env.table
    );
    fs::write(&path, &text).unwrap();
    let e = in_ns(&env.ns.name, || Journal::open(&path).unwrap_err());
    assert!(e.contains(range) && e.contains("nothing was undone"), "{e}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "journal rewritten"
    );
    assert_eq!(read(), before, "the sysctl was written");
    fs::remove_file(&path).unwrap();
    let e = in_ns(&env.ns.name, || {
        let (mut j, _) = Journal::open(&path).unwrap();
        j.set_sysctl(range, "1024 1025").unwrap_err()
    });
    assert!(e.contains("not one the VPN apps set"), "{e}");
    assert_eq!(read(), before, "the sysctl was written");
}
