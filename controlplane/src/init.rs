//! `skywire-control init`: the files of one router, from flags alone (no prompts).
//!
//! In `DIR` (created 0700 when missing):
//!
//! - `node.key`: the identity (0600, [`Identity::load_or_create`]); an existing key is kept,
//!   also with `--force`, unless `--force-new-key`;
//! - `node.yaml`: skywire-node's static file, only its `node` section (sessions, rules and
//!   routes come from the controlplane through the fib ring `DIR/sky0.fib`);
//! - `control.yaml`: skywire-control's config ([`crate::config`]), app socket `DIR/sky0.ctl`;
//! - `config.yaml`: viscript's catalogue: skywire-node and skywire-control autostarted (the
//!   controlplane after the dataplane), the socks and vpn apps present but not started, and
//!   the control socket `DIR/viscript.sock`.
//!
//! Existing files are not overwritten without `--force` (the error names them). Every input is
//! checked before anything is written, and an invalid one is named with the reason
//! (`--neighbour "abc@1.2.3.4:7100": a public key is 64 hex digits`). The line a neighbour
//! needs, `pk@endpoint`, is [`Report::line`].

use crate::identity::{Identity, NodeId, PublicKey};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file names in `DIR`.
pub const KEY_FILE: &str = "node.key";
/// skywire-node's static file.
pub const NODE_FILE: &str = "node.yaml";
/// skywire-control's config.
pub const CONTROL_FILE: &str = "control.yaml";
/// viscript's catalogue.
pub const CATALOGUE_FILE: &str = "config.yaml";

/// The flags of `skywire-control init`, as typed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The router's directory.
    pub dir: PathBuf,
    /// Control listen address (TCP, Noise), `IP:PORT`.
    pub listen: String,
    /// The dataplane's base UDP port.
    pub data_port: u16,
    /// Dataplane shards (both files agree on it); `None`: this machine's CPU count.
    pub shards: Option<u16>,
    /// `PK@IP:PORT` (dialled) or `PK` (waited for, or found through a messenger).
    pub neighbours: Vec<String>,
    /// `PK@IP:PORT`.
    pub messengers: Vec<String>,
    /// Our control endpoint as neighbours dial it, `IP:PORT`.
    pub advertise: Option<String>,
    /// Where the binaries are.
    pub bin: PathBuf,
    /// Overwrite node.yaml, control.yaml and config.yaml.
    pub force: bool,
    /// Replace the key too.
    pub force_new_key: bool,
}

/// Why init failed; nothing was written for [`Error::Invalid`] and [`Error::Refused`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An input is invalid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// Files exist and `--force` was not given (the message names them).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The exit code: 2 for invalid input or a refusal, 1 for I/O errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Refused(_) => 2,
            Error::Io(_) => 1,
        }
    }
}

/// The checked inputs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// The binaries' directory (absolute).
    pub bin: PathBuf,
    /// Control listen address.
    pub listen: SocketAddr,
    /// Dataplane base port.
    pub data_port: u16,
    /// Dataplane shards.
    pub shards: u16,
    /// Neighbours (key, endpoint to dial).
    pub neighbours: Vec<(NodeId, Option<SocketAddr>)>,
    /// Messengers.
    pub messengers: Vec<(NodeId, SocketAddr)>,
    /// `--advertise`.
    pub advertise: Option<SocketAddr>,
}

/// What init did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The router's public key.
    pub pk: NodeId,
    /// `node.key` was created (else an existing one was kept).
    pub key_created: bool,
    /// The key file.
    pub key_path: PathBuf,
    /// The files written, in order.
    pub written: Vec<PathBuf>,
    /// Remarks for the operator (stderr).
    pub notes: Vec<String>,
    /// `pk@endpoint` (or `pk` alone when the endpoint is not known: see the notes).
    pub line: String,
}

fn invalid(flag: &str, value: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{flag} {value:?}: {why}"))
}

fn parse_pk(flag: &str, whole: &str, s: &str) -> Result<NodeId, Error> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            flag,
            whole,
            "a public key is 64 hex digits (the pk of `skywire-control show`)",
        ));
    }
    let pk = NodeId::from_hex(s).map_err(|e| invalid(flag, whole, e))?;
    if pk.x25519_public().is_none() {
        return Err(invalid(flag, whole, "not an Ed25519 public key"));
    }
    Ok(pk)
}

/// An `IP:PORT` that can be dialled (a port, an address other than 0.0.0.0 / ::).
fn parse_dialable(flag: &str, whole: &str, s: &str) -> Result<SocketAddr, Error> {
    let a: SocketAddr = s.parse().map_err(|_| {
        invalid(
            flag,
            whole,
            format!(
                "an endpoint is IP:PORT, e.g. 10.0.0.2:7100 (names are not resolved), got {s:?}"
            ),
        )
    })?;
    if a.port() == 0 {
        return Err(invalid(flag, whole, "port 0 cannot be dialled"));
    }
    if a.ip().is_unspecified() {
        return Err(invalid(
            flag,
            whole,
            format!("{} cannot be dialled; give the host's address", a.ip()),
        ));
    }
    Ok(a)
}

/// `PK` or `PK@IP:PORT`.
fn parse_peer(flag: &str, s: &str) -> Result<(NodeId, Option<SocketAddr>), Error> {
    let s_trim = s.trim();
    match s_trim.split_once('@') {
        Some((pk, ep)) => Ok((parse_pk(flag, s, pk)?, Some(parse_dialable(flag, s, ep)?))),
        None => Ok((parse_pk(flag, s, s_trim)?, None)),
    }
}

fn checked_path(flag: &str, p: &Path) -> Result<PathBuf, Error> {
    let shown = p.display().to_string();
    let Some(s) = p.to_str() else {
        return Err(invalid(flag, &shown, "the path is not UTF-8"));
    };
    if s.is_empty() {
        return Err(invalid(flag, s, "an empty path"));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(flag, s, "the path has control characters"));
    }
    std::path::absolute(p).map_err(|e| invalid(flag, s, e))
}

/// Checks every input; touches no file.
pub fn check(o: &Options) -> Result<Plan, Error> {
    let dir = checked_path("--dir", &o.dir)?;
    let bin = checked_path("--bin", &o.bin)?;
    let listen: SocketAddr = o.listen.trim().parse().map_err(|_| {
        invalid(
            "--listen",
            &o.listen,
            "an address is IP:PORT, e.g. 0.0.0.0:7100",
        )
    })?;
    if listen.port() == 0 {
        return Err(invalid("--listen", &o.listen, "port 0: give the port"));
    }
    let shards = match o.shards {
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get().min(64) as u16)
            .unwrap_or(1),
    };
    if !(1..=256).contains(&shards) {
        return Err(invalid(
            "--shards",
            &shards.to_string(),
            "from 1 to 256 shards",
        ));
    }
    if o.data_port == 0 || u32::from(o.data_port) + u32::from(shards) - 1 > 65535 {
        return Err(invalid(
            "--data-port",
            &o.data_port.to_string(),
            format!(
                "shard i listens on port + i: ports 1 to {}",
                65536 - u32::from(shards)
            ),
        ));
    }
    let mut neighbours: Vec<(NodeId, Option<SocketAddr>)> = Vec::new();
    for n in &o.neighbours {
        let (pk, ep) = parse_peer("--neighbour", n)?;
        if neighbours.iter().any(|(k, _)| *k == pk) {
            return Err(invalid("--neighbour", n, "this key is listed twice"));
        }
        neighbours.push((pk, ep));
    }
    let mut messengers = Vec::new();
    for m in &o.messengers {
        match parse_peer("--messenger", m)? {
            (pk, Some(ep)) => messengers.push((pk, ep)),
            (_, None) => {
                return Err(invalid(
                    "--messenger",
                    m,
                    "a messenger is PK@IP:PORT (it is dialled)",
                ));
            }
        }
    }
    let advertise = match &o.advertise {
        Some(a) => Some(parse_dialable("--advertise", a, a.trim())?),
        None => None,
    };
    Ok(Plan {
        dir,
        bin,
        listen,
        data_port: o.data_port,
        shards,
        neighbours,
        messengers,
        advertise,
    })
}

/// A YAML double-quoted scalar (the paths are checked for control characters).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

impl Plan {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn bin(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }

    /// The endpoint neighbours dial: `--advertise`, else `--listen` unless it is 0.0.0.0 / ::.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.advertise
            .or_else(|| (!self.listen.ip().is_unspecified()).then_some(self.listen))
    }

    /// `node.yaml`.
    pub fn node_yaml(&self) -> String {
        format!(
            "# skywire-node's static file for this router (written by `skywire-control init`;\n\
             # format: dataplane/src/config.rs). Only the node: sessions, rules and routes come\n\
             # from skywire-control through the fib ring {fib}.\n\
             node:\n  tun: sky0\n  listen: {listen}\n  shards: {shards}\n",
            fib = self.path("sky0.fib"),
            listen = q(&SocketAddr::new(self.listen.ip(), self.data_port).to_string()),
            shards = self.shards,
        )
    }

    /// `control.yaml`.
    pub fn control_yaml(&self) -> String {
        let mut s = format!(
            "# skywire-control's config for this router (written by `skywire-control init`;\n\
             # format: controlplane/src/config.rs).\n\
             key: {key}\ntun: sky0\nfib_socket: {fib}\napp_socket: {ctl}\nlisten: {listen}\n\
             data_port: {dp}\ndata_shards: {shards}\nallow_any: false\n",
            key = q(&self.path(KEY_FILE)),
            fib = q(&self.path("sky0.fib")),
            ctl = q(&self.path("sky0.ctl")),
            listen = q(&self.listen.to_string()),
            dp = self.data_port,
            shards = self.shards,
        );
        if self.neighbours.is_empty() {
            s.push_str("neighbours: []\n");
        } else {
            s.push_str("neighbours:\n");
            for (pk, ep) in &self.neighbours {
                match ep {
                    Some(ep) => s.push_str(&format!(
                        "  - {{pk: {}, endpoint: {}}}\n",
                        pk.hex(),
                        q(&ep.to_string())
                    )),
                    None => s.push_str(&format!("  - {{pk: {}}}\n", pk.hex())),
                }
            }
        }
        if !self.messengers.is_empty() {
            s.push_str("messengers:\n");
            for (pk, ep) in &self.messengers {
                s.push_str(&format!(
                    "  - {{pk: {}, endpoint: {}}}\n",
                    pk.hex(),
                    q(&ep.to_string())
                ));
            }
        }
        if let Some(ep) = self.endpoint() {
            s.push_str(&format!("advertise: [{}]\n", q(&ep.to_string())));
        }
        s
    }

    /// `config.yaml`: viscript's catalogue.
    pub fn catalogue_yaml(&self) -> String {
        let ctl = self.path("sky0.ctl");
        let key = self.path(KEY_FILE);
        let mut s = format!(
            "# viscript's app catalogue for this router (written by `skywire-control init`).\n\
             # Run it: viscript serve --config {cfg}\n\
             settings:\n  socket: {sock}\napps:\n",
            cfg = self.path(CATALOGUE_FILE),
            sock = q(&self.path("viscript.sock")),
        );
        let mut app = |name: &str,
                       exe: &str,
                       args: Vec<String>,
                       autostart: bool,
                       restart: &str,
                       after: Option<&str>,
                       desc: &str,
                       help: &str| {
            s.push_str(&format!(
                "  {name}:\n    daemon: true\n    autostart: {autostart}\n    restart: {restart}\n"
            ));
            if let Some(a) = after {
                s.push_str(&format!("    after: [{a}]\n"));
            }
            s.push_str(&format!(
                "    desc: {}\n    path: {}\n    default_args: {}\n    help: |\n",
                q(desc),
                q(&self.bin(exe)),
                list(&args)
            ));
            for l in help.replace("{ctl}", &ctl).replace("{key}", &key).lines() {
                s.push_str("      ");
                s.push_str(l);
                s.push('\n');
            }
        };
        app(
            "skywire-node",
            "skywire-node",
            vec![
                "--static".into(),
                self.path(NODE_FILE),
                "--fib-socket".into(),
                self.path("sky0.fib"),
            ],
            true,
            "on-failure",
            None,
            "Skywire dataplane: forwards IP between sky0 and encrypted UDP links",
            HELP_NODE,
        );
        app(
            "skywire-control",
            "skywire-control",
            vec!["run".into(), "--config".into(), self.path(CONTROL_FILE)],
            true,
            "on-failure",
            Some("skywire-node"),
            "Skywire controlplane: links, routes, messenger client; programs skywire-node",
            HELP_CONTROL,
        );
        app(
            "skywire-socks-server",
            "skywire-socks-server",
            vec![
                "sockssrv0".into(),
                ctl.clone(),
                "8001".into(),
                "--key".into(),
                key.clone(),
            ],
            false,
            "never",
            Some("skywire-control"),
            "Skywire SOCKS5 server: CONNECT for allowed mesh nodes, on this node's overlay address",
            HELP_SOCKS_SERVER,
        );
        app(
            "skywire-socks-client",
            "skywire-socks-client",
            vec!["sockscli0".into(), ctl.clone(), "9001".into()],
            false,
            "on-failure",
            Some("skywire-control"),
            "Skywire SOCKS client: local SOCKS5 port relayed to a socks server on the mesh",
            HELP_SOCKS_CLIENT,
        );
        app(
            "skywire-vpn-server",
            "skywire-vpn-server",
            vec!["vpnsrv0".into(), ctl.clone(), "8100".into()],
            false,
            "on-failure",
            Some("skywire-control"),
            "Skywire VPN server: an IPv4 exit (address pool, nftables NAT) for allowed mesh nodes",
            HELP_VPN_SERVER,
        );
        app(
            "skywire-vpn-client",
            "skywire-vpn-client",
            vec!["vpncli0".into(), ctl.clone()],
            false,
            "on-failure",
            Some("skywire-control"),
            "Skywire VPN client: routes this router's IPv4 through a VPN server on the mesh",
            HELP_VPN_CLIENT,
        );
        s
    }
}

const HELP_NODE: &str = "\
[--static FILE]      sessions, rules and routes from a file (no controlplane)
[--shards N]         shard threads (default: node.shards, else one per CPU)
[--backend B]        auto | epoll | uring
[--offload O]        auto | on | off: TSO/GSO/GRO offloads (auto: on, epoll backend)
[--fib-socket PATH]  where the controlplane programs it (default /run/skywire/<tun>.fib)
[--no-pin]           do not pin shard i to CPU i";

const HELP_CONTROL: &str = "\
run --config FILE           links, routes and the dataplane's fib ring
keygen | show [--key FILE]  create / print the identity
init --dir DIR ...          (re)write this router's files (see skywire-control init --help)";

const HELP_SOCKS_SERVER: &str = "\
[1] Text name of app, must be unique
[2] Controlplane app socket which app will be talked with. ex {ctl}
[3] Port which socks server will use for connecting with target host. ex 8001
--allow PK...        serve only these nodes (public keys, 64 hex digits; repeatable);
--allow-all          or serve every mesh node (one of the two is required: no open proxy
                     by default)
[--listen ADDR]      listen here instead of the overlay address (ADDR:PORT or ADDR)
[--key FILE]         skywire-control's key file (this router's: {key})
[--user U --pass P]  require username/password (RFC 1929)
[--max-conns N]      concurrent connections (default 1024)
Full Example Command:
start skywire-socks-server sockssrv0 {ctl} 8001 --key {key} --allow <64 hex>";

const HELP_SOCKS_CLIENT: &str = "\
[1] Text name of app, must be unique
[2] Controlplane app socket which app will be talked with. ex {ctl}
    (with no server named, a socks server is found through the controlplane's messengers)
[3] Local port (127.0.0.1) that applications use as their SOCKS5 proxy. ex 9001
--server ADDR:PORT                 the socks server (overlay address), or
--server-pk HEX --server-port PORT the socks server by public key
[--listen ADDR]  listen here instead of 127.0.0.1:PORT
Full Example Command:
start skywire-socks-client sockscli0 {ctl} 9001 --server-pk <64 hex> --server-port 8001";

const HELP_VPN_SERVER: &str = "\
[1] Text name of app, must be unique (names its state file and nftables table)
[2] Controlplane app socket which app will be talked with. ex {ctl}
[3] Port (on this node's overlay address) clients connect to. ex 8100
--allow PK...        serve only these nodes (public keys, 64 hex digits; repeatable);
--allow-all          or serve every mesh node (one of the two is required)
[--pool PREFIX]      client addresses (default 100.64.0.0/10)
[--uplink DEV]       NAT out of this interface (default: the default route's)
[--tun DEV]          the dataplane's device (default sky0)
[--state-dir DIR]    journal of host changes (default /run/skywire/vpn)
[--max-conns N]      client connections at once (default 1024)
[--cleanup]          undo what a crashed run left, then exit
Full Example Command:
start skywire-vpn-server vpnsrv0 {ctl} 8100 --allow <64 hex> --uplink eth0";

const HELP_VPN_CLIENT: &str = "\
[1] Text name of app, must be unique (names its state file)
[2] Controlplane app socket which app will be talked with. ex {ctl}
--server-pk PK [--server-port P]     the server's node (port default 8100); without it the
                                     controlplane's messengers are asked (service \"vpn\")
[--route PREFIX]...  IPv4 prefixes sent through the VPN (default 0.0.0.0/0, installed
                     as 0.0.0.0/1 + 128.0.0.0/1; the mesh's underlay addresses stay out)
[--tun DEV]          the dataplane's device (default sky0)
[--state-dir DIR]    journal of routing changes (default /run/skywire/vpn)
[--cleanup]          restore what a crashed run left, then exit
Full Example Command:
start skywire-vpn-client vpncli0 {ctl} --server-pk <64 hex>";

/// Writes `text` to `path` through a temporary file and a rename (mode 0644).
fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("yaml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Checks the inputs, then writes the router's files (see the module doc).
pub fn init(o: &Options) -> Result<Report, Error> {
    let plan = check(o)?;
    let dir = &plan.dir;
    let key_path = dir.join(KEY_FILE);
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let mut existing: Vec<&str> = [NODE_FILE, CONTROL_FILE, CATALOGUE_FILE]
        .into_iter()
        .filter(|n| exists(&dir.join(n)))
        .collect();
    if o.force_new_key && exists(&key_path) {
        existing.insert(0, KEY_FILE);
    }
    if !existing.is_empty() && !o.force {
        return Err(Error::Refused(format!(
            "{}: {} already there; --force overwrites {} (the key is kept unless \
             --force-new-key)",
            dir.display(),
            existing.join(", "),
            if existing.len() == 1 { "it" } else { "them" },
        )));
    }
    let mut notes = Vec::new();
    if dir.is_dir() {
        // Keep the operator's directory mode.
    } else {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    if o.force_new_key && exists(&key_path) {
        std::fs::remove_file(&key_path)
            .map_err(|e| Error::Io(format!("{}: {e}", key_path.display())))?;
    }
    let (id, key_created) = Identity::load_or_create(&key_path)
        .map_err(|e| Error::Io(format!("{}: {e}", key_path.display())))?;
    let pk = id.id();
    if let Some(n) = o
        .neighbours
        .iter()
        .zip(&plan.neighbours)
        .find(|(_, (k, _))| *k == pk)
    {
        return Err(invalid(
            "--neighbour",
            n.0,
            format!("this is the router's own key ({})", key_path.display()),
        ));
    }
    let mut written = Vec::new();
    for (name, text) in [
        (NODE_FILE, plan.node_yaml()),
        (CONTROL_FILE, plan.control_yaml()),
        (CATALOGUE_FILE, plan.catalogue_yaml()),
    ] {
        let p = dir.join(name);
        write_file(&p, &text)?;
        written.push(p);
    }
    for exe in ["skywire-node", "skywire-control"] {
        if !plan.bin.join(exe).exists() {
            notes.push(format!(
                "{} is not there yet (config.yaml starts it; --bin DIR names the binaries' folder)",
                plan.bin.join(exe).display()
            ));
        }
    }
    if plan.messengers.is_empty() {
        for ((_, ep), n) in plan.neighbours.iter().zip(&o.neighbours) {
            if ep.is_none() {
                notes.push(format!(
                    "neighbour {}: no endpoint and no --messenger: this router waits for it to dial",
                    n.trim()
                ));
            }
        }
    }
    let line = match plan.endpoint() {
        Some(ep) => format!("{}@{ep}", pk.hex()),
        None => {
            notes.push(format!(
                "listening on {} (any address): a neighbour adds @HOST:{} to the line below, \
                 HOST being this router's address as it reaches it (or give --advertise HOST:PORT)",
                plan.listen,
                plan.listen.port()
            ));
            pk.hex()
        }
    };
    Ok(Report {
        pk,
        key_created,
        key_path,
        written,
        notes,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn opts(dir: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            listen: "0.0.0.0:7100".into(),
            data_port: 7000,
            shards: Some(2),
            neighbours: vec![],
            messengers: vec![],
            advertise: None,
            bin: "/usr/local/bin".into(),
            force: false,
            force_new_key: false,
        }
    }

    fn pk(n: u8) -> String {
        Identity::from_seed([n; 32]).unwrap().id().hex()
    }

    #[test]
    fn generated_control_yaml_parses_with_every_field() {
        let mut o = opts(Path::new("/etc/sky \"r1\""));
        o.neighbours = vec![format!("{}@10.0.0.2:7100", pk(1)), pk(2)];
        o.messengers = vec![format!("{}@[2001:db8::9]:7200", pk(3))];
        o.advertise = Some("192.0.2.1:7100".into());
        let p = check(&o).unwrap();
        let dir = Path::new("/etc/sky \"r1\"");
        let c = Config::parse(&p.control_yaml(), &dir.join(CONTROL_FILE))
            .unwrap_or_else(|e| panic!("{e}\n{}", p.control_yaml()));
        assert_eq!(c.key, dir.join("node.key"));
        assert_eq!(c.fib_socket, dir.join("sky0.fib"));
        assert_eq!(c.app_socket, dir.join("sky0.ctl"));
        assert_eq!(c.listen, "0.0.0.0:7100".parse().unwrap());
        assert_eq!((c.data_port, c.data_shards), (7000, 2));
        assert_eq!(c.neighbours.len(), 2);
        assert_eq!(
            c.neighbours[0].endpoint,
            Some("10.0.0.2:7100".parse().unwrap())
        );
        assert_eq!(c.neighbours[1].endpoint, None);
        assert_eq!(c.messengers[0].1, "[2001:db8::9]:7200".parse().unwrap());
        assert_eq!(c.advertise, vec!["192.0.2.1:7100".parse().unwrap()]);
        assert!(!c.allow_any);
        // Without neighbours, messengers or a known endpoint.
        let p = check(&opts(Path::new("/r"))).unwrap();
        let c = Config::parse(&p.control_yaml(), Path::new("/r/control.yaml")).unwrap();
        assert!(c.neighbours.is_empty() && c.messengers.is_empty() && c.advertise.is_empty());
        assert_eq!(p.endpoint(), None);
    }

    #[test]
    fn node_yaml_parses_as_the_dataplane_static_file() {
        let mut o = opts(Path::new("/r"));
        o.listen = "10.1.2.3:7100".into();
        o.data_port = 7300;
        let p = check(&o).unwrap();
        let s = dataplane::config::Static::parse(&p.node_yaml(), Path::new("/r/node.yaml"), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.node.listen, "10.1.2.3:7300".parse().unwrap());
        assert_eq!(s.node.shards, Some(2));
        assert_eq!(p.endpoint(), Some("10.1.2.3:7100".parse().unwrap()));
    }

    #[test]
    fn catalogue_names_the_binaries_and_this_routers_files() {
        let p = check(&opts(Path::new("/r"))).unwrap();
        let y = p.catalogue_yaml();
        for want in [
            "path: \"/usr/local/bin/skywire-node\"",
            "default_args: [\"--static\", \"/r/node.yaml\", \"--fib-socket\", \"/r/sky0.fib\"]",
            "default_args: [\"run\", \"--config\", \"/r/control.yaml\"]",
            "after: [skywire-node]",
            "socket: \"/r/viscript.sock\"",
            "start skywire-socks-server sockssrv0 /r/sky0.ctl 8001 --key /r/node.key",
        ] {
            assert!(y.contains(want), "{want} not in\n{y}");
        }
        assert_eq!(y.matches("autostart: true").count(), 2);
        assert_eq!(y.matches("autostart: false").count(), 4);
    }

    /// dist/config.yaml (the Debian package's /etc/skywire/config.yaml) is, below its own
    /// comment header, what `init --dir /var/lib/skywire --bin /usr/bin` writes.
    #[test]
    fn the_packaged_catalogue_is_what_init_writes_for_var_lib_skywire() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/config.yaml");
        let packaged = std::fs::read_to_string(&file).expect("dist/config.yaml");
        let mut o = opts(Path::new("/var/lib/skywire"));
        o.bin = "/usr/bin".into();
        let want = check(&o).unwrap().catalogue_yaml();
        let body = |s: &str| s.find("\nsettings:\n").map(|i| s[i + 1..].to_string());
        assert!(
            body(&packaged) == body(&want) && body(&want).is_some(),
            "{} differs from init's catalogue; below its header it should be:\n{}",
            file.display(),
            body(&want).unwrap_or_default()
        );
        assert!(packaged.contains("/usr/bin/skywire-node") && !packaged.contains("/tmp"));
    }

    #[test]
    fn invalid_inputs_are_named() {
        let o = opts(Path::new("/r"));
        type Edit = fn(&mut Options);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |o| o.neighbours = vec!["abc@1.2.3.4:7100".into()],
                "--neighbour \"abc@1.2.3.4:7100\": a public key is 64 hex digits",
            ),
            (
                |o| o.neighbours = vec![format!("{}@1.2.3.4", pk(1))],
                "an endpoint is IP:PORT",
            ),
            (
                |o| o.neighbours = vec![format!("{}@0.0.0.0:7100", pk(1))],
                "0.0.0.0 cannot be dialled",
            ),
            (
                |o| o.neighbours = vec![pk(1), format!("{}@1.2.3.4:1", pk(1))],
                "listed twice",
            ),
            (|o| o.messengers = vec![pk(1)], "--messenger \""),
            (
                |o| o.messengers = vec![format!("{}@host:7200", pk(1))],
                "--messenger",
            ),
            (|o| o.listen = "7100".into(), "--listen \"7100\""),
            (|o| o.listen = "1.2.3.4:0".into(), "--listen"),
            (|o| o.advertise = Some("0.0.0.0:7100".into()), "--advertise"),
            (|o| o.data_port = 65535, "--data-port"),
            (|o| o.shards = Some(0), "--shards"),
            (|o| o.dir = PathBuf::from("/tmp/a\nb"), "--dir"),
        ];
        for (f, want) in cases {
            let mut o = o.clone();
            f(&mut o);
            let e = check(&o).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)) && e.exit_code() == 2);
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
        // 64 hex digits that are not a curve point.
        let bad = (0..=255u8)
            .map(|n| NodeId([n; 32]))
            .find(|k| k.x25519_public().is_none())
            .unwrap();
        let mut o2 = o.clone();
        o2.neighbours = vec![bad.hex()];
        let e = check(&o2).unwrap_err().to_string();
        assert!(
            e.contains("--neighbour") && e.contains("not an Ed25519"),
            "{e}"
        );
    }
}
