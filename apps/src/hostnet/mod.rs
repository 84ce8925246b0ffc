//! Changes to the host's network state (addresses, routes, sysctls, nftables tables) that are
//! undone on exit and, after a crash, at the next start.
//!
//! Every change goes through a [`Journal`]: its entry is written to the journal file (temp
//! file, fsync, rename) *before* the change is applied, and removed again if applying fails.
//! So whatever moment the process dies at, the file lists every change that may have been
//! made; [`Journal::open`] undoes those leftovers. Undoing a change that never happened is
//! harmless ("not found" is not an error), and an address or route that already existed is
//! refused without being journaled, so undo never removes what we did not add.
//!
//! The file is plain text, one change per line after a header:
//!
//! ```text
//! # skywire hostnet journal v1
//! addr sky0 100.64.0.2/32
//! route 0.0.0.0/1 dev sky0
//! route 10.1.2.3/32 dev eth0 via 10.1.2.254
//! sysctl net/ipv4/ip_forward 0
//! nft ip skywire_vpn
//! ```
//!
//! `sysctl` lines hold the value to restore. Blank lines and further `#` lines are ignored.
//!
//! The journal drives changes made as root, so it is trusted only where only its owner can
//! write: its directory must be owned by root or by the current user and have no group or
//! other permissions (0700; created so when missing), every file in it is opened without
//! following symlinks (relative to the directory opened once), the temporary file is created
//! exclusively, and only the sysctls in [`ALLOWED_SYSCTLS`] (those the VPN apps set) may be
//! written or restored: a journal naming another one is refused before anything is undone.
//!
//! All operations act on the network namespace of the calling thread (netlink sockets are
//! opened per call, `/proc/sys/net` and spawned `nft` follow the thread).

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use netbase::Prefix;
use netbase::netlink::{Netlink, os_errno};

mod nft;
pub use nft::{EXIT_ALWAYS_DENIED, EXIT_PRIVATE, ExitFilter, exit_ruleset, nat_ruleset};
use nft::{nft_delete_script, run_nft};

/// First line of every journal file.
pub const HEADER: &str = "# skywire hostnet journal v1";

/// The sysctls a journal may set and restore: those the VPN apps change
/// (`skywire-vpn-server` turns on IPv4 forwarding).
pub const ALLOWED_SYSCTLS: &[&str] = &["net/ipv4/ip_forward"];

/// Longest journal file read (a journal holds a few lines per client route).
const MAX_JOURNAL_BYTES: u64 = 1 << 20;

/// One change to the host, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An address added to a device.
    Addr { dev: String, addr: IpAddr, len: u8 },
    /// A route added to the main table (`dst` has no host bits set).
    Route {
        dst: IpAddr,
        len: u8,
        dev: String,
        gw: Option<IpAddr>,
    },
    /// A sysctl (path relative to `/proc/sys`) and the value to restore.
    Sysctl { path: String, old: String },
    /// An nftables table we created; undo deletes it.
    NftTable { family: String, name: String },
}

/// The journal line, e.g. `route 10.1.2.3/32 dev eth0 via 10.1.2.254`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Addr { dev, addr, len } => write!(f, "addr {dev} {addr}/{len}"),
            Change::Route { dst, len, dev, gw } => {
                write!(f, "route {dst}/{len} dev {dev}")?;
                match gw {
                    Some(gw) => write!(f, " via {gw}"),
                    None => Ok(()),
                }
            }
            Change::Sysctl { path, old } => write!(f, "sysctl {path} {old}"),
            Change::NftTable { family, name } => write!(f, "nft {family} {name}"),
        }
    }
}

/// Parses one journal line (without its newline). The result is validated.
impl FromStr for Change {
    type Err = String;

    fn from_str(line: &str) -> Result<Change, String> {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        let change = match kind {
            "addr" => match words(rest)[..] {
                [dev, cidr] => {
                    let (addr, len) = parse_cidr(cidr)?;
                    Change::Addr {
                        dev: dev.to_string(),
                        addr,
                        len,
                    }
                }
                _ => return Err("expected `addr DEV ADDR/LEN`".into()),
            },
            "route" => {
                let (cidr, dev, gw) = match words(rest)[..] {
                    [cidr, "dev", dev] => (cidr, dev, None),
                    [cidr, "dev", dev, "via", gw] => (cidr, dev, Some(parse_ip(gw)?)),
                    _ => return Err("expected `route DST/LEN dev DEV [via GATEWAY]`".into()),
                };
                let (dst, len) = parse_cidr(cidr)?;
                Change::Route {
                    dst,
                    len,
                    dev: dev.to_string(),
                    gw,
                }
            }
            // The value is the rest of the line, verbatim (it may contain tabs).
            "sysctl" => match rest.split_once(' ') {
                Some((path, old)) => Change::Sysctl {
                    path: path.to_string(),
                    old: old.to_string(),
                },
                None => return Err("expected `sysctl PATH VALUE`".into()),
            },
            "nft" => match words(rest)[..] {
                [family, name] => Change::NftTable {
                    family: family.to_string(),
                    name: name.to_string(),
                },
                _ => return Err("expected `nft FAMILY TABLE`".into()),
            },
            _ => {
                return Err(format!(
                    "unknown change {kind:?} (expected addr, route, sysctl or nft)"
                ));
            }
        };
        change.validate()?;
        Ok(change)
    }
}

fn words(s: &str) -> Vec<&str> {
    s.split(' ').filter(|w| !w.is_empty()).collect()
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/LENGTH"))?;
    let ip = parse_ip(ip)?;
    let len = match len.parse::<u8>() {
        Ok(l) if len.bytes().all(|b| b.is_ascii_digit()) => l,
        _ => return Err(format!("{len:?} is not a prefix length")),
    };
    check_len(ip, len)?;
    Ok((ip, len))
}

#[cfg(test)]
fn max_len(ip: IpAddr) -> u8 {
    Prefix::host(ip).len()
}

/// The prefix `ip/len` (host bits cleared), or why `len` is too long.
fn prefix_of(ip: IpAddr, len: u8) -> Result<Prefix, String> {
    Prefix::new(ip, len).ok_or_else(|| format!("prefix length /{len} too long for {ip}"))
}

fn check_len(ip: IpAddr, len: u8) -> Result<(), String> {
    prefix_of(ip, len).map(|_| ())
}

/// `ip` with the bits beyond `len` cleared.
fn network(ip: IpAddr, len: u8) -> IpAddr {
    Prefix::new(ip, len).map_or(ip, |p| p.addr())
}

/// A Linux interface name we accept: 1..=15 bytes of printable ASCII, no whitespace, `/`,
/// `:` or quotes (so it is also safe inside a quoted nft string), not `.` or `..`.
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b'"' | b'\'' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid interface name"))
    }
}

fn check_sysctl_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && !path.contains("..")
        && !path.starts_with('/')
        && path.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'/' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a sysctl path (relative to /proc/sys, made of [a-z0-9_./-], no `..`)"
        ))
    }
}

/// A sysctl value that fits on a journal line: not empty, no surrounding whitespace, no
/// control characters other than tab.
fn check_sysctl_value(v: &str) -> Result<(), String> {
    let ok = !v.is_empty() && v.trim() == v && v.chars().all(|c| c == '\t' || !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sysctl value {v:?} cannot be recorded (empty, multi-line or with control characters)"
        ))
    }
}

fn check_nft(family: &str, name: &str) -> Result<(), String> {
    if !matches!(family, "ip" | "ip6" | "inet") {
        return Err(format!(
            "nft family {family:?} not supported (expected ip, ip6 or inet)"
        ));
    }
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(format!(
            "{name:?} is not an nft table name ([A-Za-z0-9_-], 1 to 63 characters)"
        ));
    }
    Ok(())
}

fn check_sysctl_allowed(path: &str) -> Result<(), String> {
    if ALLOWED_SYSCTLS.contains(&path) {
        Ok(())
    } else {
        Err(format!(
            "sysctl {path} is not one the VPN apps set (allowed: {})",
            ALLOWED_SYSCTLS.join(", ")
        ))
    }
}

impl Change {
    /// Checks every field (the journal is input from another process).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Change::Addr { dev, addr, len } => {
                check_ifname(dev)?;
                check_len(*addr, *len)
            }
            Change::Route { dst, len, dev, gw } => {
                check_ifname(dev)?;
                check_len(*dst, *len)?;
                if network(*dst, *len) != *dst {
                    return Err(format!("route destination {dst}/{len} has host bits set"));
                }
                if let Some(gw) = gw
                    && gw.is_ipv4() != dst.is_ipv4()
                {
                    return Err(format!(
                        "gateway {gw} is not of the address family of {dst}"
                    ));
                }
                Ok(())
            }
            Change::Sysctl { path, old } => {
                check_sysctl_path(path)?;
                check_sysctl_value(old)
            }
            Change::NftTable { family, name } => check_nft(family, name),
        }
    }
}

/// Parses a journal file's bytes. Errors name the 1-based line.
pub fn parse_journal(bytes: &[u8]) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    let mut lines = bytes.split(|b| *b == b'\n').enumerate();
    match lines.next() {
        Some((_, first)) if first == HEADER.as_bytes() => {}
        _ => return Err(format!("line 1: expected the header {HEADER:?}")),
    }
    for (i, raw) in lines {
        let n = i + 1;
        let line = std::str::from_utf8(raw).map_err(|_| format!("line {n}: not UTF-8"))?;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        changes.push(line.parse().map_err(|e| format!("line {n}: {e}"))?);
    }
    Ok(changes)
}

/// The journal file's text for `changes`.
pub fn render_journal(changes: &[Change]) -> String {
    let mut s = format!("{HEADER}\n");
    for c in changes {
        s.push_str(&format!("{c}\n"));
    }
    s
}

fn sysctl_file(path: &str) -> PathBuf {
    Path::new("/proc/sys").join(path)
}

/// Current value of a sysctl, without the trailing newline.
fn read_sysctl(path: &str) -> io::Result<String> {
    check_sysctl_allowed(path).map_err(io::Error::other)?;
    let v = fs::read_to_string(sysctl_file(path))?;
    Ok(v.strip_suffix('\n').unwrap_or(&v).to_string())
}

fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    check_sysctl_allowed(path).map_err(io::Error::other)?;
    // No create/truncate: only existing sysctls are written.
    let mut f = OpenOptions::new().write(true).open(sysctl_file(path))?;
    f.write_all(value.as_bytes())
}

/// A netlink socket opened on first use.
#[derive(Default)]
struct Nl(Option<Netlink>);

impl Nl {
    fn get(&mut self) -> Result<&mut Netlink, String> {
        if self.0.is_none() {
            self.0 = Some(Netlink::open().map_err(|e| format!("netlink: {e}"))?);
        }
        self.0
            .as_mut()
            .ok_or_else(|| "netlink: not open".to_string())
    }

    /// Interface index of `dev`; `Ok(None)` if there is no such device.
    fn index(&mut self, dev: &str) -> Result<Option<u32>, String> {
        self.get()?
            .link_index(dev)
            .map_err(|e| format!("look up device {dev}: {e}"))
    }
}

/// Undoes one change. `Ok(false)`: it was already gone.
fn undo(nl: &mut Nl, change: &Change) -> Result<bool, String> {
    let gone = |e: &io::Error, errnos: &[i32]| os_errno(e).is_some_and(|n| errnos.contains(&n));
    match change {
        Change::Addr { dev, addr, len } => {
            let Some(index) = nl.index(dev)? else {
                return Ok(false);
            };
            match nl.get()?.del_address(index, *addr, *len) {
                Ok(()) => Ok(true),
                Err(e) if gone(&e, &[libc::EADDRNOTAVAIL, libc::ENODEV]) => Ok(false),
                Err(e) => Err(format!("undo `{change}`: {e}")),
            }
        }
        Change::Route { dst, len, dev, gw } => {
            let Some(index) = nl.index(dev)? else {
                return Ok(false);
            };
            match nl.get()?.del_route(*dst, *len, index, *gw, None) {
                Ok(()) => Ok(true),
                Err(e) if gone(&e, &[libc::ESRCH, libc::ENOENT, libc::ENODEV]) => Ok(false),
                Err(e) => Err(format!("undo `{change}`: {e}")),
            }
        }
        Change::Sysctl { path, old } => {
            match read_sysctl(path) {
                Ok(cur) if cur == *old => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(format!("undo `{change}`: read /proc/sys/{path}: {e}")),
            }
            match write_sysctl(path, old) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("undo `{change}`: write /proc/sys/{path}: {e}")),
            }
        }
        Change::NftTable { family, name } => run_nft(&nft_delete_script(family, name))
            .map(|()| true)
            .map_err(|e| format!("undo `{change}`: {e}")),
    }
}

/// The write-ahead journal of host changes. See the [module docs](self).
///
/// Holds an exclusive lock on `PATH.lock`, so a second process cannot open (and undo) a
/// journal in use. Dropping a journal undoes what is left in it (errors go to stderr); call
/// [`Journal::undo_all`] to see the errors.
pub struct Journal {
    path: PathBuf,
    /// The journal's directory, opened once: every file is opened relative to it.
    dir: OwnedFd,
    /// The journal file's name in `dir`.
    name: OsString,
    changes: Vec<Change>,
    _lock: File,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn name_with(name: &OsString, suffix: &str) -> OsString {
    let mut s = name.clone();
    s.push(suffix);
    s
}

/// Opens (creating it 0700 when missing) the journal directory and checks that only its owner
/// can use it: owned by root or by us, no group or other permission bits, not a symlink.
fn open_state_dir(dir: &Path) -> Result<OwnedFd, String> {
    use rustix::fs::{Mode, OFlags};
    let shown = dir.display();
    if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| format!("create directory {}: {e}", parent.display()))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("create directory {shown}: {e}")),
    }
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => format!(
            "state directory {shown} is a symlink or not a directory: give a real directory              (owned by root, mode 0700)"
        ),
        e => format!("open state directory {shown}: {e}"),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("stat {shown}: {e}"))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != 0 && st.st_uid != me {
        return Err(format!(
            "state directory {shown} is owned by uid {}, not root or uid {me}:              fix with `chown root {shown}` (or give another --state-dir)",
            st.st_uid
        ));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "state directory {shown} has mode {mode:04o}: others could replace the journal;              fix with `chmod 0700 {shown}` (or give another --state-dir)"
        ));
    }
    Ok(fd)
}

/// Opens `name` in `dir` without following a symlink.
fn open_in(
    dir: &OwnedFd,
    name: &OsString,
    flags: rustix::fs::OFlags,
    shown: &Path,
) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::openat(
        dir,
        name.as_os_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::LOOP) => Err(io::Error::other(format!(
            "{} is a symlink: refused (remove it)",
            shown.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

impl Journal {
    /// Opens the journal at `path` (creating its directory, 0700, if needed; an existing one
    /// must be owned by root or this user with mode 0700). If a journal file is
    /// left over (a previous run crashed), undoes its changes first (reverse order, tolerating
    /// already-gone state) and returns their journal lines in the order undone (suffixed
    /// ` (already gone)` where nothing was left to undo), so the caller can log "restored N
    /// changes left by a previous run".
    ///
    /// Fails, naming the file, if it is unparseable (the line is named too), locked by a
    /// running process, or if a leftover change cannot be undone; in the last case the file
    /// then lists just the changes not undone.
    pub fn open(path: &Path) -> Result<(Journal, Vec<String>), String> {
        use rustix::fs::OFlags;
        let shown = path.display();
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return Err(format!("journal path {shown} does not name a file"));
        };
        let dir_path = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = open_state_dir(dir_path)?;
        let lock_path = with_suffix(path, ".lock");
        let lock = open_in(
            &dir,
            &name_with(&name, ".lock"),
            OFlags::WRONLY | OFlags::CREATE,
            &lock_path,
        )
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "journal {shown} is in use by another process (lock {} held)",
                    lock_path.display()
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("lock {}: {e}", lock_path.display()));
            }
        }
        let journal = Journal {
            path: path.to_path_buf(),
            dir,
            name,
            changes: Vec::new(),
            _lock: lock,
        };
        let read = |f: File| -> io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            f.take(MAX_JOURNAL_BYTES + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > MAX_JOURNAL_BYTES {
                return Err(io::Error::other(format!(
                    "longer than {MAX_JOURNAL_BYTES} bytes"
                )));
            }
            Ok(bytes)
        };
        let opened = open_in(&journal.dir, &journal.name, OFlags::RDONLY, path);
        let leftovers = match opened.and_then(read) {
            Ok(bytes) => parse_journal(&bytes)
                .and_then(|changes| {
                    for c in &changes {
                        if let Change::Sysctl { path, .. } = c {
                            check_sysctl_allowed(path)?;
                        }
                    }
                    Ok(changes)
                })
                .map_err(|e| {
                    format!("journal {shown}: {e} (fix or remove the file; nothing was undone)")
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("read journal {shown}: {e}")),
        };
        let _ = rustix::fs::unlinkat(
            &journal.dir,
            name_with(&journal.name, ".tmp").as_os_str(),
            rustix::fs::AtFlags::empty(),
        );
        let mut nl = Nl::default();
        let mut undone = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for change in leftovers.iter().rev() {
            match undo(&mut nl, change) {
                Ok(true) => undone.push(change.to_string()),
                Ok(false) => undone.push(format!("{change} (already gone)")),
                Err(e) => {
                    errors.push(e);
                    failed.push(change.clone());
                }
            }
        }
        if !failed.is_empty() {
            failed.reverse();
            journal.persist(&failed)?;
            return Err(format!(
                "journal {shown}: cannot undo {} change(s) left by a previous run: {} \
                 (they stay in the journal; remove it to give up on them)",
                failed.len(),
                errors.join("; ")
            ));
        }
        journal.remove_file()?;
        Ok((journal, undone))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes made (and not undone) so far, oldest first.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Puts the journaled addresses and routes on `dev` back (nothing new is journaled): a
    /// device that was removed and made again (a restarted skywire-node's sky0) lost them
    /// with the old one. Those still there are left alone. Returns how many were put back.
    pub fn restore_on(&mut self, dev: &str) -> Result<usize, String> {
        let mut nl = Nl::default();
        let Some(index) = nl.index(dev)? else {
            return Ok(0);
        };
        let mut restored = 0;
        for c in &self.changes {
            let r = match c {
                Change::Addr { dev: d, addr, len } if d == dev => {
                    nl.get()?.add_address(index, *addr, *len)
                }
                Change::Route {
                    dst,
                    len,
                    dev: d,
                    gw,
                } if d == dev => nl.get()?.add_route(*dst, *len, index, *gw, None),
                _ => continue,
            };
            match r {
                Ok(()) => restored += 1,
                Err(e) if os_errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(format!("{c}: {e}")),
            }
        }
        Ok(restored)
    }

    /// Adds `addr/len` to `dev`. Refused (and not journaled) if `dev` already has it.
    pub fn add_address(&mut self, dev: &str, addr: IpAddr, len: u8) -> Result<(), String> {
        let change = Change::Addr {
            dev: dev.to_string(),
            addr,
            len,
        };
        change.validate()?;
        let mut nl = Nl::default();
        let index = nl
            .index(dev)?
            .ok_or_else(|| format!("{change}: no device {dev}"))?;
        self.apply(change, |c| match nl.get()?.add_address(index, addr, len) {
            Ok(()) => Ok(()),
            Err(e) if os_errno(&e) == Some(libc::EEXIST) => {
                Err(format!("address {addr}/{len} on {dev} already exists"))
            }
            Err(e) => Err(format!("{c}: {e}")),
        })
    }

    /// Adds a route to the main table (host bits of `dst` are cleared). Refused (and not
    /// journaled) if the main table already has a route to `dst/len`.
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        len: u8,
        dev: &str,
        gw: Option<IpAddr>,
    ) -> Result<(), String> {
        check_len(dst, len)?;
        let dst = network(dst, len);
        let change = Change::Route {
            dst,
            len,
            dev: dev.to_string(),
            gw,
        };
        change.validate()?;
        let mut nl = Nl::default();
        let index = nl
            .index(dev)?
            .ok_or_else(|| format!("{change}: no device {dev}"))?;
        self.apply(change, |c| {
            match nl.get()?.add_route(dst, len, index, gw, None) {
                Ok(()) => Ok(()),
                Err(e) if os_errno(&e) == Some(libc::EEXIST) => Err(format!(
                    "{c} already exists (the main table has a route to {dst}/{len})"
                )),
                Err(e) => Err(format!("{c}: {e}")),
            }
        })
    }

    /// Sets `/proc/sys/PATH` to `value`, journaling the old value. Nothing is recorded if
    /// the value is already `value`.
    pub fn set_sysctl(&mut self, path: &str, value: &str) -> Result<(), String> {
        check_sysctl_path(path)?;
        check_sysctl_allowed(path)?;
        check_sysctl_value(value)?;
        let old = read_sysctl(path).map_err(|e| format!("read /proc/sys/{path}: {e}"))?;
        if old == value {
            return Ok(());
        }
        check_sysctl_value(&old).map_err(|e| format!("/proc/sys/{path}: {e}"))?;
        let change = Change::Sysctl {
            path: path.to_string(),
            old,
        };
        self.apply(change, |_| {
            write_sysctl(path, value)
                .map_err(|e| format!("write {value:?} to /proc/sys/{path}: {e}"))
        })
    }

    /// Loads an nft script that creates `table FAMILY NAME { BODY }`, deleting a stale table
    /// of that name first (in the same transaction: on failure nothing changes).
    pub fn nft_table(&mut self, family: &str, name: &str, body: &str) -> Result<(), String> {
        let change = Change::NftTable {
            family: family.to_string(),
            name: name.to_string(),
        };
        change.validate()?;
        let script = format!(
            "{}table {family} {name} {{\n{body}\n}}\n",
            nft_delete_script(family, name)
        );
        let load = |_: &Change| {
            run_nft(&script).map_err(|e| format!("load nft table {family} {name}: {e}"))
        };
        if self.changes.contains(&change) {
            // Already journaled: replacing the table needs no second entry.
            return load(&change);
        }
        self.apply(change, load)
    }

    /// Undoes everything in reverse order and removes the journal file. Returns the errors
    /// other than "already gone". Changes that could not be undone stay in the file (and are
    /// retried by the next [`Journal::open`]); they are forgotten here.
    pub fn undo_all(&mut self) -> Vec<String> {
        let mut nl = Nl::default();
        let mut errors = Vec::new();
        let mut failed = Vec::new();
        let changes = std::mem::take(&mut self.changes);
        for change in changes.iter().rev() {
            if let Err(e) = undo(&mut nl, change) {
                errors.push(e);
                failed.push(change.clone());
            }
        }
        let saved = if failed.is_empty() {
            self.remove_file()
        } else {
            failed.reverse();
            self.persist(&failed).map(|()| {
                errors.push(format!(
                    "{} change(s) not undone are kept in {} for the next start",
                    failed.len(),
                    self.path.display()
                ))
            })
        };
        if let Err(e) = saved {
            errors.push(e);
        }
        errors
    }

    /// Forgets the changes without undoing them and releases the lock, leaving the journal
    /// file as a crash would. For tests of crash recovery.
    pub fn crash(mut self) {
        self.changes.clear();
    }

    /// Write-ahead: journal `change`, then `apply` it; if that fails, unjournal it.
    fn apply(
        &mut self,
        change: Change,
        apply: impl FnOnce(&Change) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut next = self.changes.clone();
        next.push(change);
        self.persist(&next)?;
        let Some(change) = next.pop() else {
            return Err("journal: internal error".into());
        };
        match apply(&change) {
            Ok(()) => {
                self.changes.push(change);
                Ok(())
            }
            Err(e) => match self.persist(&self.changes) {
                Ok(()) => Err(e),
                Err(pe) => Err(format!(
                    "{e}; and removing `{change}` from the journal failed: {pe}"
                )),
            },
        }
    }

    /// Atomically replaces the journal file with `changes`.
    fn persist(&self, changes: &[Change]) -> Result<(), String> {
        use rustix::fs::{AtFlags, OFlags};
        let tmp = name_with(&self.name, ".tmp");
        let write = || -> io::Result<()> {
            // A stale temporary file (a crash mid-write) is ours to replace; the new one is
            // created exclusively, so nothing planted in its place is written through.
            match rustix::fs::unlinkat(&self.dir, tmp.as_os_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            let mut f = open_in(
                &self.dir,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                &with_suffix(&self.path, ".tmp"),
            )?;
            f.write_all(render_journal(changes).as_bytes())?;
            f.sync_all()?;
            rustix::fs::renameat(&self.dir, tmp.as_os_str(), &self.dir, self.name.as_os_str())?;
            self.sync_dir()
        };
        write().map_err(|e| format!("write journal {}: {e}", self.path.display()))
    }

    fn remove_file(&self) -> Result<(), String> {
        match rustix::fs::unlinkat(
            &self.dir,
            self.name.as_os_str(),
            rustix::fs::AtFlags::empty(),
        ) {
            Ok(()) => self.sync_dir(),
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
        .map_err(|e| format!("remove journal {}: {e}", self.path.display()))
    }

    /// fsync the directory so a rename or removal is durable.
    fn sync_dir(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.dir)?)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        for e in self.undo_all() {
            tracing::error!("hostnet: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
