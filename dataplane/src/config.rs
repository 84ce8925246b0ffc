//! The static mode file: sessions, rules and routes, so nodes forward with no controlplane.
//!
//! ```yaml
//! node:
//!   tun: sky0                 # device name (default sky0)
//!   mtu: 1400                 # default 1400 (fits a 1500-byte IPv4 underlay)
//!   addresses: [fd00::1/128, 10.10.0.1/24]
//!   listen: 0.0.0.0:7000      # base endpoint: shard i listens on port + i
//!   shards: 2                 # default: number of CPUs
//!   route_idle_secs: 300      # idle routes without keepalive expire (default: never)
//! sessions:
//!   - id: 1                   # our index: frames from the peer carry it
//!     peer_id: 1              # the peer's index for this session
//!     peer: 10.77.0.2:7000    # the peer's base endpoint
//!     peer_shards: 2          # default 1
//!     cipher: aes-256-gcm     # or chacha20-poly1305; default: AES when the CPU has it
//!     tx_key: <64 hex>        # we seal with this
//!     rx_key: <64 hex>        # we open with this
//! route_keys:                 # end-to-end keys of the routes this node is an end of
//!   - id: 1
//!     key: <64 hex>           # one direction: ours to seal, or the peer's to open
//!     cipher: aes-256-gcm     # as for sessions
//! rules:
//!   - {session: 1, label: 100, deliver: [fd00::2/128], key: 2}  # egress: key and sources
//!   - {session: 1, label: 101, forward: {session: 2, label: 7}}  # relay: no key
//! routes:
//!   - {prefix: fd00::2/128, session: 1, label: 100, key: 1, keepalive: true}
//! ```
//!
//! A file with sessions or route keys holds keys: group and others must have no access to it
//! ([`Static::load`] refuses it otherwise).

use crate::fib::{Action, Fib, Prefix, Route, RouteKeyCfg, SessionCfg};
use crate::stats::Traffic;
use crate::wire::Cipher;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    node: NodeFile,
    // Option: an empty `routes:` (null) means none, like a missing key.
    sessions: Option<Vec<SessionFile>>,
    route_keys: Option<Vec<RouteKeyFile>>,
    rules: Option<Vec<RuleFile>>,
    routes: Option<Vec<RouteFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    #[serde(default = "default_tun")]
    tun: String,
    #[serde(default = "default_mtu")]
    mtu: u32,
    #[serde(default)]
    addresses: Vec<String>,
    listen: SocketAddr,
    shards: Option<usize>,
    route_idle_secs: Option<u64>,
}

fn default_tun() -> String {
    "sky0".into()
}
/// Fits a 1500-byte IPv4 underlay: 1400 + 60 (frame) + 8 (UDP) + 20 (IPv4) = 1488. Over an
/// IPv6 underlay set 1380 or less.
fn default_mtu() -> u32 {
    1400
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    id: u32,
    peer_id: u32,
    peer: SocketAddr,
    #[serde(default = "one")]
    peer_shards: u16,
    cipher: Option<String>,
    tx_key: String,
    rx_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteKeyFile {
    id: u64,
    key: String,
    cipher: Option<String>,
}

fn one() -> u16 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    session: u32,
    label: u32,
    deliver: Option<Vec<String>>,
    /// The route key a deliver rule opens with.
    key: Option<u64>,
    forward: Option<ForwardFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardFile {
    session: u32,
    label: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    prefix: String,
    session: u32,
    label: u32,
    key: u64,
    #[serde(default)]
    keepalive: bool,
}

/// The node's own settings.
#[derive(Debug, Clone)]
pub struct NodeCfg {
    /// TUN device name.
    pub tun: String,
    /// Device MTU.
    pub mtu: u32,
    /// Addresses to assign to the device (address with its prefix length; host bits kept).
    pub addresses: Vec<(IpAddr, u8)>,
    /// Base endpoint.
    pub listen: SocketAddr,
    /// Shard count (`None`: one per CPU).
    pub shards: Option<usize>,
}

/// A parsed static file.
pub struct Static {
    /// Node settings.
    pub node: NodeCfg,
    /// The tables.
    pub fib: Fib,
}

fn key(hex: &str, what: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return Err(format!(
            "{what} must be 64 hex digits (32 bytes), got {} characters",
            hex.len()
        ));
    }
    // Checked before slicing: a non-ASCII character would put a slice boundary inside it.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} is not hex"));
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{what} is not hex"))?;
    }
    Ok(k)
}

/// Parses a cipher name.
pub fn cipher(name: Option<&str>) -> Result<Cipher, String> {
    match name {
        None => Ok(crate::wire::preferred()),
        Some("aes-256-gcm") => Ok(Cipher::Aes256Gcm),
        Some("chacha20-poly1305") => Ok(Cipher::ChaCha20Poly1305),
        Some(o) => Err(format!(
            "unknown cipher {o:?}: aes-256-gcm or chacha20-poly1305"
        )),
    }
}

impl Static {
    /// Reads and checks a static file.
    pub fn load(path: &Path, shards: usize) -> Result<Static, String> {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let st = Static::parse(&text, path, shards)?;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .permissions()
            .mode();
        let keys = !st.fib.sessions.is_empty() || !st.fib.route_keys.is_empty();
        if keys && mode & 0o077 != 0 {
            return Err(format!(
                "{}: holds keys but group or others may read it (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
        Ok(st)
    }

    /// Parses `text` (named `path` in errors). Counters are sized for `shards` shards.
    pub fn parse(text: &str, path: &Path, shards: usize) -> Result<Static, String> {
        let shown = PathBuf::from(path);
        let f: File =
            serde_saphyr::from_str(text).map_err(|e| format!("{}: {e}", shown.display()))?;
        let err = |m: String| format!("{}: {m}", shown.display());
        let mut addresses = Vec::new();
        for a in &f.node.addresses {
            // The network part must parse as a prefix; the address keeps its host bits.
            let p = a
                .parse::<Prefix>()
                .map_err(|e| err(format!("node.addresses: {e}")))?;
            let host: IpAddr = a
                .split('/')
                .next()
                .unwrap_or(a)
                .parse()
                .map_err(|_| err(format!("node.addresses: {a:?}")))?;
            addresses.push((host, p.len()));
        }
        if !(576..=65535 - 80).contains(&f.node.mtu) {
            return Err(err(format!(
                "node.mtu {} is out of range 576..=65455",
                f.node.mtu
            )));
        }
        let mut fib = Fib {
            route_idle: f.node.route_idle_secs.map(Duration::from_secs),
            ..Fib::default()
        };
        for s in f.sessions.unwrap_or_default() {
            let cfg = SessionCfg {
                id: s.id,
                peer_id: s.peer_id,
                peer: s.peer,
                peer_shards: s.peer_shards.max(1),
                cipher: cipher(s.cipher.as_deref())
                    .map_err(|e| err(format!("session {}: {e}", s.id)))?,
                tx_key: key(&s.tx_key, "tx_key")
                    .map_err(|e| err(format!("session {}: {e}", s.id)))?,
                rx_key: key(&s.rx_key, "rx_key")
                    .map_err(|e| err(format!("session {}: {e}", s.id)))?,
                prev_rx_key: None,
                traffic: Arc::new(Traffic::new(shards)),
                // Static sessions have no controlplane to tell of a silent peer.
                liveness: None,
            };
            if fib.sessions.insert(s.id, Arc::new(cfg)).is_some() {
                return Err(err(format!("session id {} appears twice", s.id)));
            }
        }
        for k in f.route_keys.unwrap_or_default() {
            let cfg = RouteKeyCfg {
                cipher: cipher(k.cipher.as_deref())
                    .map_err(|e| err(format!("route key {}: {e}", k.id)))?,
                key: key(&k.key, "key").map_err(|e| err(format!("route key {}: {e}", k.id)))?,
                traffic: Arc::new(Traffic::new(shards)),
            };
            if fib.route_keys.insert(k.id, Arc::new(cfg)).is_some() {
                return Err(err(format!("route key id {} appears twice", k.id)));
            }
        }
        for r in f.rules.unwrap_or_default() {
            let action = match (r.deliver, r.forward) {
                (Some(srcs), None) => {
                    let Some(key) = r.key else {
                        return Err(err(format!(
                            "rule ({}, {}) delivers, so it needs the route key it opens with (key: ID)",
                            r.session, r.label
                        )));
                    };
                    let mut sources = Vec::new();
                    for p in srcs {
                        sources.push(
                            p.parse::<Prefix>().map_err(|e| {
                                err(format!("rule ({}, {}): {e}", r.session, r.label))
                            })?,
                        );
                    }
                    Action::Deliver { sources, key }
                }
                (None, Some(_)) if r.key.is_some() => {
                    return Err(err(format!(
                        "rule ({}, {}) forwards: a relay holds no route key (drop key:)",
                        r.session, r.label
                    )));
                }
                (None, Some(fw)) => Action::Forward {
                    session: fw.session,
                    label: fw.label,
                },
                _ => {
                    return Err(err(format!(
                        "rule ({}, {}) needs exactly one of deliver or forward",
                        r.session, r.label
                    )));
                }
            };
            if fib.rules.insert((r.session, r.label), action).is_some() {
                return Err(err(format!(
                    "rule ({}, {}) appears twice",
                    r.session, r.label
                )));
            }
        }
        for r in f.routes.unwrap_or_default() {
            let prefix = r
                .prefix
                .parse::<Prefix>()
                .map_err(|e| err(format!("route {}: {e}", r.prefix)))?;
            let route = Route {
                session: r.session,
                label: r.label,
                key: r.key,
                keepalive: r.keepalive,
                traffic: Arc::new(Traffic::new(shards)),
            };
            if fib.routes.insert(prefix, route).is_some() {
                return Err(err(format!("route {prefix} appears twice")));
            }
        }
        fib.validate().map_err(err)?;
        let node = NodeCfg {
            tun: f.node.tun,
            mtu: f.node.mtu,
            addresses,
            listen: f.node.listen,
            shards: f.node.shards,
        };
        Ok(Static { node, fib })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ok_file() -> String {
        format!(
            "node:\n  listen: 127.0.0.1:7000\n  addresses: [fd00::1/128]\nsessions:\n  - id: 1\n    peer_id: 2\n    peer: 127.0.0.1:7100\n    tx_key: {K}\n    rx_key: {K}\nroute_keys:\n  - {{id: 1, key: {K}}}\n  - {{id: 2, key: {K}}}\nrules:\n  - {{session: 1, label: 5, deliver: [fd00::2/128], key: 2}}\nroutes:\n  - {{prefix: fd00::2/128, session: 1, label: 5, key: 1}}\n"
        )
    }

    #[test]
    fn the_example_files_are_valid() {
        for f in ["node-a.yaml", "node-b.yaml"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(f);
            // Checked out 0644: parsed here, the mode is the copy's business.
            let text = std::fs::read_to_string(&p).unwrap();
            let s = Static::parse(&text, &p, 2).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.fib.sessions.len(), 1);
            assert_eq!(s.fib.routes.len(), 2);
        }
    }

    #[test]
    fn parses_a_good_file() {
        let s = Static::parse(&ok_file(), Path::new("n.yaml"), 2).unwrap();
        assert_eq!(s.node.tun, "sky0");
        assert_eq!(s.node.addresses, vec![("fd00::1".parse().unwrap(), 128)]);
        assert_eq!(s.fib.sessions.len(), 1);
        assert_eq!(s.fib.rules.len(), 1);
        assert_eq!(s.fib.routes.len(), 1);
    }

    /// Found by the fuzz target config_node: a 64-byte key with a multi-byte character in it
    /// panicked (a byte slice inside the character) instead of being refused.
    #[test]
    fn non_ascii_key_is_an_error_not_a_panic() {
        let odd = format!("{}\u{1dd}{}", &K[..49], &K[..13]);
        assert_eq!(odd.len(), 64);
        let bad = ok_file().replace(&format!("rx_key: {K}"), &format!("rx_key: {odd}"));
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("rx_key is not hex"), "{e}");
        assert!(
            key(
                "+0+1+2+3+4+5+6+7+8+9+a+b+c+d+e+f+0+1+2+3+4+5+6+7+8+9+a+b+c+d+e+f",
                "k"
            )
            .is_err()
        );
        assert!(key(K, "k").is_ok());
    }

    #[test]
    fn route_keys_are_required_at_the_ends_and_refused_at_relays() {
        let bad = ok_file().replace(", key: 2}", "}");
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("needs the route key"), "{e}");
        let bad = ok_file().replace("key: 2}", "key: 9}");
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("unknown route key 9"), "{e}");
        let bad = ok_file().replace(", key: 1}", "}");
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("key"), "{e}");
        let bad = ok_file().replace(
            "deliver: [fd00::2/128], key: 2}",
            "forward: {session: 1, label: 6}, key: 2}",
        );
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("a relay holds no route key"), "{e}");
    }

    /// Label 1 is the liveness probe's: a route or rule on it would be refused on every data
    /// port, so the file is refused instead (the bench's first 2-node file used it, and
    /// carried nothing).
    #[test]
    fn the_probe_label_is_refused_for_rules_and_routes() {
        for (from, to) in [
            (
                "{session: 1, label: 5, deliver",
                "{session: 1, label: 1, deliver",
            ),
            (
                "session: 1, label: 5, key: 1}",
                "session: 1, label: 1, key: 1}",
            ),
        ] {
            let bad = ok_file().replace(from, to);
            assert_ne!(bad, ok_file());
            let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
            assert!(e.contains("reserved for liveness probes"), "{e}");
        }
        let bad = ok_file().replace(
            "deliver: [fd00::2/128], key: 2}",
            "forward: {session: 1, label: 1}}",
        );
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("reserved for liveness probes"), "{e}");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skywire-static-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("n.yaml");
        std::fs::write(&p, ok_file()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Static::load(&p, 1).err().unwrap();
        assert!(e.contains("others may read it") && e.contains("644"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Static::load(&p, 1).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_problem_and_place() {
        let bad = ok_file().replace("peer_id: 2", "peer_idd: 2");
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(
            e.contains("n.yaml") && e.contains("peer_idd") && e.contains("line"),
            "{e}"
        );
        let bad = ok_file().replace(
            "session: 1, label: 5, key: 1}",
            "session: 9, label: 5, key: 1}",
        );
        let e = Static::parse(&bad, Path::new("n.yaml"), 1).err().unwrap();
        assert!(e.contains("unknown session 9"), "{e}");
        let bad = ok_file().replace(&format!("rx_key: {K}"), "rx_key: abc");
        assert!(
            Static::parse(&bad, Path::new("n.yaml"), 1)
                .err()
                .unwrap()
                .contains("64 hex digits")
        );
    }
}
