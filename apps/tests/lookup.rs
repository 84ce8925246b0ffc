//! The socks client finds a server through a messenger's service query: a node registers a
//! record offering `socks` on port 8123; the client, given only the messenger, relays to that
//! node's overlay address and port.

#![forbid(unsafe_code)]

use controlplane::identity::Identity;
use controlplane::messenger::{ClientConfig, ClientEvent, MessengerClient, Service, net};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::*;

#[test]
fn socks_client_finds_its_server_through_the_messenger() {
    let dir = scratch(&format!("lookup{}", std::process::id()));
    let (mpk, _) = keygen(&dir, "m");
    let (_, _) = keygen(&dir, "client");
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let ctl = bin("controlplane", "skywire-control");
    let mut m = KillOnDrop(
        Command::new(&ctl)
            .args([
                "--key",
                dir.join("m.key").to_str().unwrap(),
                "messenger",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The socks node registers its record (as skywire-control would with `services:`).
    let server = Identity::from_seed([9; 32]).unwrap();
    let m_id = controlplane::identity::NodeId::from_hex(&mpk).unwrap();
    let t = Instant::now();
    let conn = loop {
        match net::connect(format!("127.0.0.1:{port}").parse().unwrap(), m_id, &server) {
            Ok(c) => break c,
            Err(_) if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("messenger: {e}"),
        }
    };
    let mut client = MessengerClient::new(
        Identity::from_seed([9; 32]).unwrap(),
        ClientConfig::new(vec![m_id], 1),
    );
    client.connected(0, m_id);
    client
        .set_record(
            0,
            vec![],
            vec![Service {
                kind: "socks".into(),
                port: 8123,
                meta: String::new(),
            }],
        )
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    'reg: loop {
        assert!(t.elapsed() < Duration::from_secs(10), "not registered");
        while let Some((_, b)) = client.poll_transmit() {
            conn.send(&b).unwrap();
        }
        if let Ok(b) = conn.recv() {
            client.handle(1, m_id, &b);
        }
        while let Some(ev) = client.poll_event() {
            if matches!(ev, ClientEvent::Registered { .. }) {
                break 'reg;
            }
        }
    }
    // The client, given only the messenger.
    let mut c = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_skywire-socks-client"))
            .args([
                "sockscli0",
                "127.0.0.1:7100",
                "0",
                "--listen",
                "127.0.0.1:0",
                "--key",
                dir.join("client.key").to_str().unwrap(),
                "--messenger",
                &format!("{mpk}@127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = c.0.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let want = format!("[{}]:8123", server.id().overlay_addr());
    let mut seen = String::new();
    for _ in 0..4 {
        let Some(Ok(l)) = lines.next() else { break };
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("relaying to") {
            break;
        }
    }
    assert!(
        seen.contains(&server.id().hex()) && seen.contains(&want),
        "{seen}"
    );
    let _ = m.0.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
