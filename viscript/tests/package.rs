//! The Debian package (scripts/package.sh): built from the debug binaries (`--profile debug
//! --no-build`, seconds), installed with dpkg into a scratch root with its own dpkg database,
//! then its files, modes, fields and conffile are checked, and the installed viscript
//! validates the installed catalogue. Removal keeps the conffile. lintian is not run here
//! (tens of seconds): `scripts/package.sh --lint` does.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use viscript::config::Config;

const BINS: &[&str] = &[
    "viscript",
    "skywire-node",
    "skywire-control",
    "skywire-socks-server",
    "skywire-socks-client",
    "skywire-vpn-server",
    "skywire-vpn-client",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ok(o: Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what}: {}\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The other crates' binaries beside viscript's (scripts/test.sh builds them all first).
fn debug_bins() -> PathBuf {
    let dir = viscript_bin().parent().unwrap().to_path_buf();
    if BINS.iter().any(|b| !dir.join(b).exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--locked"])
            .status()
            .unwrap();
        assert!(st.success(), "cannot build the binaries");
    }
    dir
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("dpkg.log").display()))
        .args([
            "--force-not-root",
            "--force-depends",
            "--force-script-chrootless",
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_package_installs_a_router_that_viscript_accepts() {
    if !Path::new("/usr/bin/dpkg-deb").exists() {
        eprintln!("skipped: no dpkg-deb on this machine");
        return;
    }
    let bins = debug_bins();
    let s = Scratch::new("package");
    let out = s.dir.join("out");
    let o = Command::new(repo().join("scripts/package.sh"))
        .args(["--profile", "debug", "--no-build", "--out"])
        .arg(&out)
        .env("CARGO_TARGET_DIR", bins.parent().unwrap())
        .output()
        .unwrap();
    let deb = PathBuf::from(ok(o, "scripts/package.sh").lines().last().unwrap());
    let arch = ok(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap(),
        "dpkg",
    );
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        deb,
        out.join(format!("skywire_{version}_{}.deb", arch.trim()))
    );

    // The control fields.
    let field = |f: &str| {
        let o = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .arg(f)
            .output()
            .unwrap();
        ok(o, f).trim().to_string()
    };
    assert_eq!(field("Package"), "skywire");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), arch.trim());
    assert_eq!(field("Section"), "net");
    assert_eq!(field("Priority"), "optional");
    assert!(field("Maintainer").contains('@'));
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));
    let desc = field("Description");
    assert!(
        desc.lines().count() > 5 && desc.contains("skywire-control init"),
        "{desc}"
    );
    // Every member is root's (--root-owner-group).
    let list = ok(
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    assert!(
        list.lines()
            .all(|l| l.split_whitespace().nth(1) == Some("root/root")),
        "{list}"
    );

    // Install into a scratch root with an empty dpkg database.
    let root = s.dir.join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    let installed = ok(dpkg(&root, &["-i", path_str(&deb)]), "dpkg -i");
    assert!(
        installed.contains("skywire-control init --dir /var/lib/skywire"),
        "postinst says what to do next: {installed}"
    );
    let status = ok(dpkg(&root, &["-s", "skywire"]), "dpkg -s");
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("Conffiles:\n /etc/skywire/config.yaml "),
        "{status}"
    );

    // Files and modes.
    for b in BINS {
        let p = root.join("usr/bin").join(b);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        let man = root.join(format!("usr/share/man/man1/{b}.1.gz"));
        assert_eq!(mode(&man), 0o644, "{}", man.display());
    }
    assert_eq!(mode(&root.join("var/lib/skywire")), 0o700);
    assert!(root.join("var/lib/skywire").is_dir());
    for (f, from) in [
        ("etc/skywire/config.yaml", Some("dist/config.yaml")),
        (
            "lib/systemd/system/viscript.service",
            Some("dist/viscript.service"),
        ),
        (
            "usr/share/doc/skywire/copyright",
            Some("dist/debian/copyright"),
        ),
        ("usr/share/doc/skywire/changelog.Debian.gz", None),
    ] {
        let p = root.join(f);
        assert_eq!(mode(&p), 0o644, "{f}");
        if let Some(from) = from {
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(repo().join(from)).unwrap(),
                "{f} is {from}"
            );
        }
    }
    assert_eq!(mode(&root.join("etc/skywire")), 0o755);

    // The installed viscript validates the installed catalogue.
    let cfg_path = root.join("etc/skywire/config.yaml");
    let o = Command::new(root.join("usr/bin/viscript"))
        .arg("check")
        .arg("--config")
        .arg(&cfg_path)
        .output()
        .unwrap();
    let checked = ok(o, "viscript check");
    assert!(
        checked
            .trim()
            .ends_with("ok, 6 apps, autostart: skywire-node, skywire-control"),
        "{checked}"
    );
    // Its executables are the package's, under /usr/bin (looked up in the scratch root), and
    // its files are in /var/lib/skywire, where `skywire-control init` writes them.
    let cfg = Config::load(&cfg_path).unwrap();
    for app in &cfg.apps {
        let rel = app
            .path
            .strip_prefix("/usr/bin")
            .unwrap_or_else(|_| panic!("{}: {} is not in /usr/bin", app.name, app.path.display()));
        assert_eq!(mode(&root.join("usr/bin").join(rel)), 0o755, "{}", app.name);
    }
    let control = cfg.app("skywire-control").unwrap();
    assert_eq!(
        control.default_args,
        ["run", "--config", "/var/lib/skywire/control.yaml"]
    );
    assert_eq!(
        cfg.settings.socket.as_deref(),
        Some(Path::new("/var/lib/skywire/viscript.sock"))
    );

    // Removal takes the binaries and keeps the (possibly edited) conffile; purge takes it.
    ok(dpkg(&root, &["-r", "skywire"]), "dpkg -r");
    assert!(!root.join("usr/bin/viscript").exists());
    assert!(cfg_path.exists(), "a removed package keeps its conffile");
    ok(dpkg(&root, &["-P", "skywire"]), "dpkg -P");
    assert!(!cfg_path.exists(), "purge removes the conffile");
}
