//! The socks server under viscript's headless console: it registers, reports its counters
//! through `ru` and exits 0 on `sd`.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn registers_counts_and_shuts_down_under_viscript() {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_skywire-socks-server"));
    let Some(viscript) = server
        .parent()
        .map(|d| d.join("viscript"))
        .filter(|p| p.exists())
    else {
        eprintln!("viscript binary not built (cargo build -p viscript); skipping");
        return;
    };
    // An echo that answers once.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = echo.accept() {
            let mut r = s.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut s);
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("apps-viscript-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apps:\n  socks:\n    daemon: true\n    desc: socks\n    path: {}\n    \
             default_args: [\"s0\", \"x\", \"0\", \"--listen\", \"127.0.0.1:{port}\", \"--allow-all\", \"--allow-dst\", \"127.0.0.1\"]\n",
            server.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(viscript)
        .args(["--headless", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "s -w socks").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("registered"), "{line}");

    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let req = apps::socks::Request {
        command: apps::socks::Command::Connect,
        target: apps::socks::Target::Ip(echo_addr),
    };
    s.write_all(&req.encode()).unwrap();
    s.write_all(b"hello").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.ends_with(b"hello"), "{got:?}");
    // A refused destination (the metadata address) is counted.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let req = apps::socks::Request {
        command: apps::socks::Command::Connect,
        target: apps::socks::Target::Ip("169.254.169.254:80".parse().unwrap()),
    };
    s.write_all(&req.encode()).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.get(..4), Some(&[5, 0, 5, 2][..]), "{got:?}");
    std::thread::sleep(Duration::from_millis(200));

    writeln!(stdin, "ru 1\nsd 1").unwrap();
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
    for want in [
        "connections_total 2",
        "refused_dst 1",
        "active 0",
        "bytes_up 5",
        "bytes_down 5",
        "stopped: exit 0",
    ] {
        assert!(rest.contains(want), "{want:?} missing from {rest}");
    }
}
