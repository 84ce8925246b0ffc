//! Helpers shared by the controlplane's end-to-end tests.

use std::path::Path;
use std::process::Command;
use testbed::bin;

/// Creates `DIR/NAME.key` with `skywire-control keygen`; returns (public key hex, overlay address).
pub fn keygen(dir: &Path, name: &str) -> (String, String) {
    let out = Command::new(bin("controlplane", "skywire-control"))
        .args([
            "--key",
            dir.join(format!("{name}.key")).to_str().unwrap_or_default(),
            "keygen",
        ])
        .output()
        .expect("run skywire-control keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("pk "), field("address "))
}
