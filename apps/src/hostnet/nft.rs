//! The nftables side of the VPN exit: the rulesets (NAT, and the filter that keeps clients to
//! the uplink) and running `nft`.

use netbase::Prefix;
use std::io::{self, Write};
use std::process::{Command, Stdio};

/// Destinations no VPN client may reach through the exit, whatever the options: "this
/// network", loopback, link-local (with the cloud metadata address 169.254.169.254),
/// multicast and reserved/broadcast.
pub const EXIT_ALWAYS_DENIED: &str =
    "0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4";
/// Private destinations, denied unless the exit allows them: RFC 1918 and the RFC 6598 shared
/// space (CGNAT).
pub const EXIT_PRIVATE: &str = "10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16";

/// Which destinations a VPN exit's clients may reach out of the uplink.
#[derive(Debug, Clone, Default)]
pub struct ExitFilter {
    /// Let clients reach the private ranges ([`EXIT_PRIVATE`]) on the uplink's side.
    pub allow_private: bool,
    /// Prefixes opened even when private (never those in [`EXIT_ALWAYS_DENIED`]).
    pub allow: Vec<Prefix>,
}

/// [`exit_ruleset`] with the default filter (private destinations denied).
pub fn nat_ruleset(pool: &str, uplink: &str, tun: &str) -> String {
    exit_ruleset(pool, uplink, tun, &ExitFilter::default())
}

/// The body of an `ip` family nftables table for a VPN exit: masquerade the client pool
/// out of `uplink`; in the input hook, drop every packet from the pool on `tun` to this host
/// (but answers to connections the host made), so clients reach no service of the exit's
/// host, on any of its addresses; in the forward hook, clamp the TCP MSS of SYNs through
/// `tun` to the route MTU, drop clients' packets to [`EXIT_ALWAYS_DENIED`] and (unless
/// allowed) [`EXIT_PRIVATE`], let them out of the uplink only, let only the answers (ct state
/// established,related) reach the pool, and drop every other packet from the pool on `tun`
/// and to the pool or from `uplink` to `tun`. The chains' policies are accept: they only
/// restrict traffic of the tunnel.
///
/// `pool` is an IPv4 prefix such as `100.64.0.0/10`; `uplink` and `tun` are interface names
/// (see [`check_ifname`]). They are inserted as given (names in quotes): anything else makes
/// `nft` reject the script, and [`Journal::nft_table`] then changes nothing.
pub fn exit_ruleset(pool: &str, uplink: &str, tun: &str, filter: &ExitFilter) -> String {
    let mut out = String::new();
    for p in filter.allow.iter().filter(|p| p.addr().is_ipv4()) {
        out.push_str(&format!(
            "        iifname \"{tun}\" ip saddr {pool} oifname \"{uplink}\" ip daddr {p} accept\n"
        ));
    }
    if !filter.allow_private {
        out.push_str(&format!(
            "        iifname \"{tun}\" ip saddr {pool} ip daddr {{ {EXIT_PRIVATE} }} drop\n"
        ));
    }
    format!(
        r#"    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{tun}" ip saddr {pool} ct state established,related accept
        iifname "{tun}" ip saddr {pool} drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {pool} oifname "{uplink}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{tun}" tcp flags syn tcp option maxseg size set rt mtu
        oifname "{tun}" tcp flags syn tcp option maxseg size set rt mtu
        iifname "{uplink}" oifname "{tun}" ct state established,related accept
        iifname "{uplink}" oifname "{tun}" drop
        ip daddr {pool} drop
        iifname "{tun}" ip saddr {pool} ip daddr {{ {EXIT_ALWAYS_DENIED} }} drop
{out}        iifname "{tun}" ip saddr {pool} oifname "{uplink}" accept
        iifname "{tun}" ip saddr {pool} drop
    }}
"#
    )
}

/// Runs `nft -f -` with `script` on stdin.
pub(super) fn run_nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => "nft not found: install nftables".to_string(),
            _ => format!("start nft: {e}"),
        })?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(script.as_bytes()),
        None => Err(io::Error::other("no stdin pipe")),
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for nft: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("nft failed ({}): {}", out.status, stderr.trim()));
    }
    written.map_err(|e| format!("write script to nft: {e}"))
}

/// Creates-then-deletes `table FAMILY NAME` in one transaction: removes it whether or not
/// it exists.
pub(super) fn nft_delete_script(family: &str, name: &str) -> String {
    format!("table {family} {name}\ndelete table {family} {name}\n")
}
