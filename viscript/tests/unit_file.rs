//! The shipped systemd unit (dist/viscript.service): `systemd-analyze verify` accepts it, and it
//! keeps the options the supervisor relies on.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/viscript.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("dist/viscript.service")
}

fn option(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

#[test]
fn the_unit_has_what_viscript_relies_on() {
    let t = unit_text();
    for (k, v) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/bin/viscript serve --config /etc/skywire/config.yaml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "always"),
        ("RestartSec", "1"),
        ("WatchdogSec", "10"),
        ("KillMode", "mixed"),
        ("DeviceAllow", "/dev/net/tun rw"),
        ("ProtectSystem", "strict"),
        ("RuntimeDirectoryPreserve", "yes"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        ),
    ] {
        assert_eq!(option(&t, k).as_deref(), Some(v), "{k}=");
    }
    assert!(
        option(&t, "CapabilityBoundingSet").is_some_and(|c| c.contains("CAP_NET_ADMIN")),
        "the router needs CAP_NET_ADMIN"
    );
    // The VPN server writes /proc/sys/net/ipv4/ip_forward.
    assert_eq!(option(&t, "ProtectKernelTunables"), None);
    // The graceful stop (2 x (3 s + 2 s + 2 s) with the default settings) fits.
    let stop: u64 = option(&t, "TimeoutStopSec").unwrap().parse().unwrap();
    assert!(stop >= 20, "TimeoutStopSec={stop}");
}

/// `systemd-analyze verify` on a copy whose ExecStart is the built binary (so the one
/// complaint about a missing /usr/bin/viscript does not apply); any output fails.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let tool = Path::new("/usr/bin/systemd-analyze");
    if !tool.exists() {
        eprintln!("skipped: no {} on this machine", tool.display());
        return;
    }
    let s = Scratch::new("unit");
    let t = unit_text().replace(
        "ExecStart=/usr/bin/viscript ",
        &format!("ExecStart={} ", viscript_bin().display()),
    );
    assert!(t.contains(path_str(&viscript_bin())));
    let unit = s.write("viscript.service", &t);
    let out = Command::new(tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{text}",
        out.status
    );
}
