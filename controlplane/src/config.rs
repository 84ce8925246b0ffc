//! skywire-control's configuration file.
//!
//! ```yaml
//! key: /var/lib/skywire/node.key      # created on first start (0600)
//! tun: sky0                           # the dataplane's device (the overlay address goes on it)
//! fib_socket: /run/skywire/sky0.fib   # the dataplane's fib ring
//! app_socket: /run/skywire/sky0.ctl   # where apps ask for routes (default: fib_socket's
//!                                     # path with the extension .ctl; see `appsock`)
//! listen: 0.0.0.0:7100                # control TCP (Noise) for neighbours
//! data_port: 7000                     # our dataplane's base UDP port
//! data_shards: 2
//! keepalive_ms: 200                   # link keepalive period (RTT is measured on it)
//! dead_after: 3                       # missed keepalives before a link is down
//! probe_ms: 50                        # dataplane liveness probes on idle links (0: off)...
//! probe_dead_after: 4                 # ... silent probe intervals before a link is down
//! allow_any: false                    # accept links from keys not listed below
//! rekey_secs: 120                     # rotate a link's data keys this often...
//! rekey_bytes: 1073741824             # ... or after this much traffic (at least 64 MiB)
//! route_rekey_secs: 120               # replace a route's end-to-end keys this often
//! neighbours:
//!   - pk: <64 hex>
//!     endpoint: 10.0.0.2:7100         # optional: dial it (else wait for it)
//!     cost_us: 500                    # optional operator override of the measured RTT
//! policy: {drain: false, no_transit: false}
//! messengers:                         # optional: publish our record, find keys without endpoint
//!   - {pk: <64 hex>, endpoint: 10.0.0.9:7200}
//! advertise: [10.0.0.1:7100]          # our control endpoints as published
//! services: [{kind: socks, port: 8001}]  # what this node offers (messenger service queries)
//! metrics: 127.0.0.1:9101             # optional: Prometheus metrics at GET /metrics (off by
//!                                     # default; see `metrics`); port 0 picks a free one
//! metrics_any: false                  # allow a metrics address other than loopback (the
//!                                     # endpoint has no authentication)
//! ```

use crate::identity::NodeId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    key: PathBuf,
    #[serde(default = "sky0")]
    tun: String,
    fib_socket: Option<PathBuf>,
    app_socket: Option<PathBuf>,
    listen: SocketAddr,
    data_port: u16,
    #[serde(default = "one")]
    data_shards: u16,
    #[serde(default = "keepalive")]
    keepalive_ms: u64,
    #[serde(default = "three")]
    dead_after: u32,
    #[serde(default = "probe_ms")]
    probe_ms: u16,
    #[serde(default = "four")]
    probe_dead_after: u8,
    #[serde(default)]
    allow_any: bool,
    #[serde(default = "rekey_secs")]
    rekey_secs: u64,
    #[serde(default = "rekey_bytes")]
    rekey_bytes: u64,
    #[serde(default = "rekey_secs")]
    route_rekey_secs: u64,
    neighbours: Option<Vec<NeighbourFile>>,
    #[serde(default)]
    policy: Policy,
    messengers: Option<Vec<MessengerFile>>,
    advertise: Option<Vec<SocketAddr>>,
    services: Option<Vec<ServiceFile>>,
    metrics: Option<SocketAddr>,
    #[serde(default)]
    metrics_any: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    kind: String,
    port: u16,
    #[serde(default)]
    meta: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessengerFile {
    pk: String,
    endpoint: SocketAddr,
}

fn sky0() -> String {
    "sky0".into()
}
fn one() -> u16 {
    1
}
fn keepalive() -> u64 {
    200
}
fn three() -> u32 {
    3
}
/// 50 ms probes, down after 4 silent: a dead link is noticed in 200 ms (400 ms while the router
/// is behind, see `dataplane::liveness`), three times sooner than the keepalive's 600 ms, and an
/// idle link costs 20 small frames a second each way. A false link-down costs a reconnect and
/// every route over the link a failover, so the default leaves room for a loaded router;
/// 5 ms x 4 fails over in ~25 ms where the machine keeps up (`scripts/bench-control.sh`).
fn probe_ms() -> u16 {
    50
}
fn four() -> u8 {
    4
}
fn rekey_secs() -> u64 {
    120
}
fn rekey_bytes() -> u64 {
    1 << 30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighbourFile {
    pk: String,
    endpoint: Option<SocketAddr>,
    cost_us: Option<u32>,
}

/// Operator policy.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Carry no new transit routes; move existing ones away.
    #[serde(default)]
    pub drain: bool,
    /// Never relay for others.
    #[serde(default)]
    pub no_transit: bool,
}

/// A configured neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Its identity.
    pub pk: NodeId,
    /// Where to dial it, if we dial.
    pub endpoint: Option<SocketAddr>,
    /// Cost override.
    pub cost_us: Option<u32>,
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Key file.
    pub key: PathBuf,
    /// TUN device name.
    pub tun: String,
    /// Fib socket.
    pub fib_socket: PathBuf,
    /// The app socket (route requests from apps on this router).
    pub app_socket: PathBuf,
    /// Control listen address.
    pub listen: SocketAddr,
    /// Dataplane base port.
    pub data_port: u16,
    /// Dataplane shards.
    pub data_shards: u16,
    /// Keepalive period.
    pub keepalive_ms: u64,
    /// Missed keepalives before down.
    pub dead_after: u32,
    /// Fast failure detection of each link's data session by the dataplane (`None`: off).
    pub liveness: Option<dataplane::liveness::Liveness>,
    /// Accept unknown callers.
    pub allow_any: bool,
    /// Rotate a link's data keys after this many seconds...
    pub rekey_secs: u64,
    /// ... or this many bytes through its session, whichever comes first.
    pub rekey_bytes: u64,
    /// Replace a route's end-to-end keys (make-before-break, a new handshake) this often.
    pub route_rekey_secs: u64,
    /// Neighbours.
    pub neighbours: Vec<Neighbour>,
    /// Policy.
    pub policy: Policy,
    /// Messengers to publish our record with and look neighbours up in.
    pub messengers: Vec<(NodeId, SocketAddr)>,
    /// Our control endpoints as others should dial them (published through the messengers).
    pub advertise: Vec<SocketAddr>,
    /// Services this node offers (published through the messengers: the app tracker).
    pub services: Vec<crate::messenger::Service>,
    /// Where to serve Prometheus metrics, if anywhere (a loopback address unless the file
    /// said `metrics_any: true`).
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// Reads and checks a config file; errors name the file (and line/column for YAML errors).
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text, path)
    }

    /// Parses `text`, naming `path` in errors. Relative paths resolve against its folder.
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let f: File =
            serde_saphyr::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let mut neighbours = Vec::new();
        for n in f.neighbours.unwrap_or_default() {
            let pk = NodeId::from_hex(&n.pk)
                .map_err(|e| format!("{}: neighbour: {e}", path.display()))?;
            if neighbours.iter().any(|x: &Neighbour| x.pk == pk) {
                return Err(format!(
                    "{}: neighbour {} listed twice",
                    path.display(),
                    &n.pk
                ));
            }
            neighbours.push(Neighbour {
                pk,
                endpoint: n.endpoint,
                cost_us: n.cost_us,
            });
        }
        let mut messengers = Vec::new();
        for m in f.messengers.unwrap_or_default() {
            let pk = NodeId::from_hex(&m.pk)
                .map_err(|e| format!("{}: messenger: {e}", path.display()))?;
            messengers.push((pk, m.endpoint));
        }
        if f.keepalive_ms == 0 || f.dead_after == 0 {
            return Err(format!(
                "{}: keepalive_ms and dead_after must be at least 1",
                path.display()
            ));
        }
        let liveness = match f.probe_ms {
            0 => None,
            ms => Some(
                dataplane::liveness::Liveness::new(ms, f.probe_dead_after).ok_or_else(|| {
                    use dataplane::liveness as l;
                    format!(
                        "{}: probe_ms must be 0 (off) or {}..={}, probe_dead_after {}..={}",
                        path.display(),
                        l::MIN_INTERVAL_MS,
                        l::MAX_INTERVAL_MS,
                        l::MIN_MULTIPLIER,
                        l::MAX_MULTIPLIER
                    )
                })?,
            ),
        };
        match f.metrics {
            None if f.metrics_any => {
                return Err(format!(
                    "{}: metrics_any needs metrics: IP:PORT",
                    path.display()
                ));
            }
            Some(a) => netbase::metrics_http::check_addr(
                a,
                f.metrics_any,
                "metrics",
                "`metrics_any: true`",
            )
            .map_err(|e| format!("{}: {e}", path.display()))?,
            None => {}
        }
        let fib_socket = abs(f
            .fib_socket
            .unwrap_or_else(|| PathBuf::from(format!("/run/skywire/{}.fib", f.tun))));
        Ok(Config {
            key: abs(f.key),
            app_socket: match f.app_socket {
                Some(p) => abs(p),
                None => fib_socket.with_extension("ctl"),
            },
            fib_socket,
            tun: f.tun,
            listen: f.listen,
            data_port: f.data_port,
            data_shards: f.data_shards.max(1),
            keepalive_ms: f.keepalive_ms,
            dead_after: f.dead_after,
            liveness,
            allow_any: f.allow_any,
            rekey_secs: f.rekey_secs.max(1),
            // Not below 64 MiB: 50 ms at 10 Gbit/s, the responder's MIN_REKEY_INTERVAL.
            rekey_bytes: f.rekey_bytes.max(64 << 20),
            route_rekey_secs: f.route_rekey_secs.max(1),
            neighbours,
            policy: f.policy,
            messengers,
            advertise: f.advertise.unwrap_or_default(),
            services: f
                .services
                .unwrap_or_default()
                .into_iter()
                .map(|s| crate::messenger::Service {
                    kind: s.kind,
                    port: s.port,
                    meta: s.meta,
                })
                .collect(),
            metrics: f.metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/control.yaml");
        let c = Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.neighbours.len(), 1);
        assert_eq!(c.messengers.len(), 1);
        assert_eq!(c.metrics, Some("127.0.0.1:9101".parse().unwrap()));
    }

    #[test]
    fn parses_and_reports_errors() {
        let pk = "11".repeat(32);
        let text = format!(
            "key: k/node.key\nlisten: 0.0.0.0:7100\ndata_port: 7000\nneighbours:\n  - {{pk: {pk}, endpoint: \"10.0.0.2:7100\"}}\n"
        );
        let c = Config::parse(&text, Path::new("/etc/sky/control.yaml")).unwrap();
        assert_eq!(c.key, PathBuf::from("/etc/sky/k/node.key"));
        assert_eq!(c.neighbours.len(), 1);
        assert_eq!(c.fib_socket, PathBuf::from("/run/skywire/sky0.fib"));
        assert_eq!(c.app_socket, PathBuf::from("/run/skywire/sky0.ctl"));
        let bad = text.replace("data_port", "data_prot");
        let e = Config::parse(&bad, Path::new("c.yaml")).unwrap_err();
        assert!(e.contains("c.yaml") && e.contains("data_prot"), "{e}");
        assert_eq!(c.metrics, None);
        let m = Config::parse(
            &format!("{text}metrics: 127.0.0.1:9101\n"),
            Path::new("c.yaml"),
        );
        assert_eq!(m.unwrap().metrics, Some("127.0.0.1:9101".parse().unwrap()));
        let far = format!("{text}metrics: \"0.0.0.0:9101\"\n");
        let e = Config::parse(&far, Path::new("c.yaml")).unwrap_err();
        assert!(
            e.starts_with("c.yaml: metrics 0.0.0.0:9101: not a loopback address")
                && e.contains("metrics_any: true"),
            "{e}"
        );
        let any = Config::parse(&format!("{far}metrics_any: true\n"), Path::new("c.yaml"));
        assert_eq!(any.unwrap().metrics, Some("0.0.0.0:9101".parse().unwrap()));
        let alone = format!("{text}metrics_any: true\n");
        let e = Config::parse(&alone, Path::new("c.yaml")).unwrap_err();
        assert!(e.contains("metrics_any needs metrics"), "{e}");
        let dup = format!("{text}  - {{pk: {pk}}}\n");
        assert!(
            Config::parse(&dup, Path::new("c.yaml"))
                .unwrap_err()
                .contains("twice")
        );
    }
}
