//! Finding a service through the messengers (the app tracker): connect to each configured
//! messenger in turn as this node, ask for records offering `kind`, take the first.

use controlplane::identity::{Identity, NodeId};
use controlplane::messenger::{ClientConfig, ClientEvent, MessengerClient, net};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Parses `PK@ADDR:PORT`.
pub fn parse_messenger(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (pk, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected PK@ADDR:PORT"))?;
    let pk = NodeId::from_hex(pk)?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not ADDR:PORT"))?;
    Ok((pk, addr))
}

/// Parses every `PK@ADDR:PORT` argument.
pub fn parse_messengers(args: &[String]) -> Result<Vec<(NodeId, SocketAddr)>, String> {
    args.iter().map(|m| parse_messenger(m)).collect()
}

/// The first node offering `kind`, and the port it gives, per the first messenger that answers.
pub fn find_service(
    key: &Path,
    messengers: &[(NodeId, SocketAddr)],
    kind: &str,
    timeout: Duration,
) -> Result<(NodeId, u16), String> {
    // The node key, refused when others may read it (as skywire-control refuses it).
    let seed = Identity::load(key).map_err(|e| e.to_string())?.seed();
    let mut last = String::from("no messenger configured");
    for (pk, addr) in messengers {
        let id = Identity::from_seed(seed)?;
        let conn = match net::connect(*addr, *pk, &id) {
            Ok(c) => c,
            Err(e) => {
                last = format!("messenger {addr}: {e}");
                continue;
            }
        };
        let epoch = Instant::now();
        let now = || epoch.elapsed().as_millis() as u64;
        let mut client =
            MessengerClient::new(Identity::from_seed(seed)?, ClientConfig::new(vec![*pk], 0));
        client.connected(now(), *pk);
        client.query(now(), kind);
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        while epoch.elapsed() < timeout {
            while let Some((_, bytes)) = client.poll_transmit() {
                conn.send(&bytes)
                    .map_err(|e| format!("messenger {addr}: {e}"))?;
            }
            if let Ok(b) = conn.recv() {
                client.handle(now(), *pk, &b);
            }
            client.tick(now());
            while let Some(ev) = client.poll_event() {
                if let ClientEvent::Services { records, .. } = ev {
                    let found = records.iter().find_map(|r| {
                        r.services
                            .iter()
                            .find(|s| s.kind == kind)
                            .map(|s| (r.pk, s.port))
                    });
                    match found {
                        Some(f) => return Ok(f),
                        None => {
                            last = format!("messenger {addr}: no node offers {kind:?}");
                        }
                    }
                }
            }
            if last.contains("no node offers") {
                break;
            }
        }
        conn.shutdown();
        if !last.contains("no node offers") {
            last = format!("messenger {addr}: no answer within {timeout:?}");
        }
    }
    Err(last)
}

/// [`find_service`], asked again every second until one is found or `within` has passed
/// (the server may be starting at the same time as the client and not be published yet).
pub fn find_service_within(
    key: &Path,
    messengers: &[(NodeId, SocketAddr)],
    kind: &str,
    within: Duration,
) -> Result<(NodeId, u16), String> {
    let t = Instant::now();
    loop {
        match find_service(key, messengers, kind, Duration::from_secs(5)) {
            Ok(f) => return Ok(f),
            Err(e) if t.elapsed() >= within => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messenger_argument() {
        let pk = "ab".repeat(32);
        let (id, addr) = parse_messenger(&format!("{pk}@10.0.0.9:7200")).unwrap();
        assert_eq!(id.hex(), pk);
        assert_eq!(addr.port(), 7200);
        assert!(parse_messenger("nonsense").is_err());
        assert!(parse_messenger(&format!("{pk}@nope")).is_err());
    }

    /// A node key others may read is refused before any messenger is asked.
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skywire-lookup-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("node.key");
        let id = Identity::generate().unwrap();
        std::fs::write(&key, format!("{}\n", NodeId(id.seed()).hex())).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = find_service(&key, &[], "socks", Duration::from_millis(10)).unwrap_err();
        assert!(e.contains("readable by others"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = find_service(&key, &[], "socks", Duration::from_millis(10)).unwrap_err();
        assert!(e.contains("no messenger"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
