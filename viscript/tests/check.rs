//! `viscript check`: validates the catalogue and exits, starting nothing.

mod common;

use common::*;
use std::process::Command;

fn check(config: &std::path::Path) -> std::process::Output {
    Command::new(viscript_bin())
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn a_valid_catalogue_passes_and_missing_executables_are_named() {
    let s = Scratch::new("check");
    let exe = viscript_bin();
    let cfg = s.write(
        "config.yaml",
        &format!(
            "apps:\n  b:\n    path: {}\n    daemon: true\n    autostart: true\n    after: [a]\n  \
             a:\n    path: {}\n    autostart: true\n  gone:\n    path: bin/nothing-here\n",
            path_str(&exe),
            path_str(&exe),
        ),
    );
    let o = check(&cfg);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("{}: ok, 3 apps, autostart: a, b", cfg.display())
    );
    let missing = s.dir.join("bin/nothing-here");
    assert_eq!(
        err.trim(),
        format!(
            "viscript: warning: app gone: {}: no such file",
            missing.display()
        )
    );
}

#[test]
fn an_invalid_catalogue_fails_with_its_position() {
    let s = Scratch::new("check-bad");
    let cfg = s.write(
        "config.yaml",
        "apps:\n  a:\n    path: x\n    dameon: true\n",
    );
    let o = check(&cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config.yaml:4:5") && err.contains("dameon"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    let o = check(&s.dir.join("absent.yaml"));
    assert_eq!(o.status.code(), Some(2));
}
