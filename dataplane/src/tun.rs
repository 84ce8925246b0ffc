//! Multi-queue, non-persistent TUN device (`IFF_TUN | IFF_NO_PI |
//! IFF_MULTI_QUEUE`).
//!
//! The device lives as long as at least one queue fd is open: dropping the
//! [`Tun`] (or the process exiting/crashing) removes it. The device is
//! created in the network namespace of the calling thread.
//!
//! Packets are read/written by the caller on the non-blocking queue fds,
//! e.g. with [`read_packet`] / [`write_packet`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use netbase::netlink::Netlink;

const IFNAMSIZ: usize = 16;
/// Kernel limit on queues per tun device (MAX_TAP_QUEUES).
pub const MAX_QUEUES: usize = 256;
const TUN_PATH: &str = "/dev/net/tun";

/// `struct ifreq` as used by TUNSETIFF: name, then `short ifr_flags` in the
/// 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReq>() == size_of::<libc::ifreq>());

/// A multi-queue TUN device; one non-blocking fd per queue.
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<OwnedFd>,
}

impl Tun {
    /// Create tun `name` with `queues` queues (1..=256) in the calling
    /// thread's network namespace. A `%d` in `name` lets the kernel pick
    /// the number; [`Tun::name`] returns the final name.
    ///
    /// Fails with `AlreadyExists` if a link of that name already exists
    /// (use [`Tun::remove_stale`] to clear a leftover one), `InvalidInput`
    /// for a bad name or queue count, `PermissionDenied` without
    /// CAP_NET_ADMIN.
    pub fn create(name: &str, queues: usize) -> io::Result<Tun> {
        Tun::create_with(name, queues, false)
    }

    /// Like [`Tun::create`]; with `offload` the device is opened with `IFF_VNET_HDR` (every
    /// packet read or written starts with a [`crate::offload::VnetHdr`]) and offers the stack
    /// checksum offload and TSO (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6): reads may return
    /// partially checksummed packets and TCP super-packets of up to 64 KiB.
    pub fn create_with(name: &str, queues: usize, offload: bool) -> io::Result<Tun> {
        check_name(name)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("create tun {name}: queue count {queues} not in 1..={MAX_QUEUES}"),
            ));
        }
        // Refuse to attach to an existing device: it might be a persistent
        // leftover (which would then outlive us) or someone else's tun.
        if !name.contains('%') && link_exists(name)? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "create tun {name}: a link named {name} already exists \
                     (stale device from an earlier run? see Tun::remove_stale)"
                ),
            ));
        }
        let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
        let flags =
            (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | vnet) as libc::c_short;
        let mut actual = name.to_owned();
        let mut fds = Vec::with_capacity(queues);
        for q in 0..queues {
            let fd = rustix::fs::open(
                TUN_PATH,
                OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .map_err(|e| {
                let hint = match e {
                    Errno::NOENT | Errno::NODEV | Errno::NXIO => " (tun driver not available?)",
                    Errno::ACCESS | Errno::PERM => " (needs root / CAP_NET_ADMIN)",
                    _ => "",
                };
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!(
                        "create tun {name}: open {TUN_PATH}: {}{hint}",
                        io::Error::from(e)
                    ),
                )
            })?;
            let mut req = IfReq {
                name: [0; IFNAMSIZ],
                flags,
                _pad: [0; 22],
            };
            // check_name guarantees len < IFNAMSIZ, so a NUL terminator remains.
            req.name[..actual.len()].copy_from_slice(actual.as_bytes());
            // SAFETY: `fd` is an open /dev/net/tun fd and `req` is a live,
            // properly sized `struct ifreq` that TUNSETIFF reads and writes
            // back (name) for the duration of the call only.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
            if rc < 0 {
                return Err(setiff_error(name, q, io::Error::last_os_error()));
            }
            if q == 0 {
                let end = req.name.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ);
                actual = String::from_utf8_lossy(&req.name[..end]).into_owned();
            }
            if q == 0 && offload {
                set_offload(&fd).map_err(|e| {
                    io::Error::new(e.kind(), format!("create tun {name}: offloads: {e}"))
                })?;
            }
            fds.push(fd);
        }
        Ok(Tun {
            name: actual,
            queues: fds,
        })
    }

    /// Queue `i`'s fd. Panics if `i >= self.queues()` (like slice indexing).
    pub fn queue(&self, i: usize) -> BorrowedFd<'_> {
        self.queues[i].as_fd()
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Device name (as assigned by the kernel).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index, resolved in the calling thread's network namespace.
    pub fn index(&self) -> io::Result<u32> {
        let sock = ioctl_socket()?;
        rustix::net::netdevice::name_to_index(&sock, &self.name).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("ifindex of {}: {}", self.name, io::Error::from(e)),
            )
        })
    }

    /// Delete a link named `name` if one exists (e.g. a tun left persistent
    /// by an earlier run). Returns whether one was removed.
    pub fn remove_stale(name: &str) -> io::Result<bool> {
        check_name(name)?;
        let mut nl = Netlink::open()?;
        let Some(index) = nl.link_index(name)? else {
            return Ok(false);
        };
        match nl.del_link(index) {
            Ok(()) => Ok(true),
            // Vanished between lookup and delete.
            Err(e) if netbase::netlink::os_errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Device-wide: the vnet header size, then the offloads the stack may use.
fn set_offload(fd: &OwnedFd) -> io::Result<()> {
    let sz = crate::offload::VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is live for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const sz) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes the feature bits as the (integer) argument itself.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            features as libc::c_ulong,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read one packet from a queue fd. `Ok(None)` if none is pending (EAGAIN).
pub fn read_packet<Fd: AsFd>(fd: Fd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(fd.as_fd(), &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write one packet to a queue fd. `Ok(false)` if the queue is full (EAGAIN).
pub fn write_packet<Fd: AsFd>(fd: Fd, pkt: &[u8]) -> io::Result<bool> {
    loop {
        match rustix::io::write(fd.as_fd(), pkt) {
            Ok(n) if n == pkt.len() => return Ok(true),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short tun write: {n} of {} bytes", pkt.len()),
                ));
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Same rules as the kernel's `dev_valid_name`.
fn check_name(name: &str) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() >= IFNAMSIZ {
        return bad(&format!(
            "{} bytes long, at most {} allowed (IFNAMSIZ {IFNAMSIZ} incl. NUL)",
            name.len(),
            IFNAMSIZ - 1
        ));
    }
    if name == "." || name == ".." {
        return bad("reserved");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return bad("contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

fn ioctl_socket() -> io::Result<OwnedFd> {
    rustix::net::socket_with(
        rustix::net::AddressFamily::NETLINK,
        rustix::net::SocketType::RAW,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn link_exists(name: &str) -> io::Result<bool> {
    let sock = ioctl_socket()?;
    match rustix::net::netdevice::name_to_index(&sock, name) {
        Ok(_) => Ok(true),
        Err(Errno::NODEV) => Ok(false),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("look up link {name}: {}", io::Error::from(e)),
        )),
    }
}

fn setiff_error(name: &str, queue: usize, e: io::Error) -> io::Error {
    let what = format!("create tun {name} (TUNSETIFF, queue {queue})");
    let msg = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "{what}: permission denied: needs CAP_NET_ADMIN in the network \
             namespace's user namespace, or the device is owned by another user"
        ),
        Some(libc::EBUSY) => format!(
            "{what}: device busy: {name} exists and is not a multi-queue tun \
             of ours (single-queue tun in use, or IFF_MULTI_QUEUE mismatch)"
        ),
        Some(libc::EINVAL) => format!(
            "{what}: rejected (EINVAL): {name} exists as a different device type \
             (tap, non-tun, or a tun without IFF_MULTI_QUEUE), or the flags are unsupported"
        ),
        _ => format!("{what}: {e}"),
    };
    io::Error::new(e.kind(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::in_netns;
    use netbase::netlink::{Netlink, os_errno};
    use rustix::event::{PollFd, PollFlags, poll};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    fn proc_net(file: &str) -> String {
        std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap()
    }

    fn ipv4_checksum(h: &[u8]) -> u16 {
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn udp4_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + data.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let c = ipv4_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        // UDP checksum 0 = none (allowed for IPv4).
        p[28..].copy_from_slice(data);
        p
    }

    /// Poll all queues until a packet matching `pred` arrives.
    fn recv_matching(tun: &Tun, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let mut fds: Vec<PollFd<'_>> = (0..tun.queues())
                .map(|i| PollFd::new(&tun.queues[i], PollFlags::IN))
                .collect();
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            poll(&mut fds, Some(&ts)).unwrap();
            for i in 0..tun.queues() {
                while let Some(n) = read_packet(tun.queue(i), &mut buf).unwrap() {
                    if pred(&buf[..n]) {
                        return Some(buf[..n].to_vec());
                    }
                }
            }
        }
        None
    }

    #[test]
    fn tun_full_cycle_in_netns() {
        in_netns(|| {
            let mut nl = Netlink::open().unwrap();
            let tun = Tun::create("skytest0", 2).unwrap();
            assert_eq!(tun.name(), "skytest0");
            assert_eq!(tun.queues(), 2);
            let idx = tun.index().unwrap();
            assert_eq!(nl.link_index("skytest0").unwrap(), Some(idx));

            nl.set_mtu(idx, 1400).unwrap();
            let v4: IpAddr = "10.99.0.1".parse().unwrap();
            let v6: IpAddr = "fd00::1".parse().unwrap();
            nl.add_address(idx, v4, 24).unwrap();
            nl.add_address(idx, v6, 64).unwrap();
            nl.set_link_up(idx, true).unwrap();
            let info = nl.link("skytest0").unwrap().unwrap();
            assert_eq!(info.index, idx);
            assert_eq!(info.mtu, Some(1400));
            assert_eq!(info.name.as_deref(), Some("skytest0"));
            assert!(info.up);

            // Duplicate address: clear error naming the operation.
            let e = nl.add_address(idx, v4, 24).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(os_errno(&e), Some(libc::EEXIST));
            assert!(
                e.to_string()
                    .starts_with("add address 10.99.0.1/24 to skytest0: File exists"),
                "{e}"
            );
            // Invalid input rejected before the kernel.
            assert_eq!(
                nl.add_address(idx, v4, 33).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );

            // IPv6 address present and not tentative (IFA_F_NODAD).
            let inet6 = proc_net("if_inet6");
            let line = inet6
                .lines()
                .find(|l| l.starts_with("fd000000000000000000000000000001"))
                .unwrap_or_else(|| panic!("fd00::1 missing:\n{inet6}"));
            assert!(line.ends_with("skytest0"), "{line}");
            let flags = u32::from_str_radix(line.split_whitespace().nth(4).unwrap(), 16).unwrap();
            assert_eq!(flags & 0x40, 0, "address tentative: {line}");

            // Outbound: UDP from 10.99.0.1 to 10.99.0.2:9 appears on a queue.
            let sock = UdpSocket::bind("10.99.0.1:0").unwrap();
            let sport = sock.local_addr().unwrap().port();
            sock.send_to(b"sky", "10.99.0.2:9").unwrap();
            let pkt = recv_matching(&tun, |p| {
                p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 17 && p[16..20] == [10, 99, 0, 2]
            })
            .expect("UDP packet not seen on any tun queue");
            assert_eq!(pkt[0] >> 4, 4);
            assert_eq!(&pkt[12..16], &[10, 99, 0, 1]);
            assert_eq!(&pkt[16..20], &[10, 99, 0, 2]);
            assert_eq!(pkt[9], 17);
            assert_eq!(u16::from_be_bytes([pkt[20], pkt[21]]), sport);
            assert_eq!(u16::from_be_bytes([pkt[22], pkt[23]]), 9);
            assert_eq!(&pkt[28..], b"sky");

            // Inbound: a packet written to a queue reaches the socket.
            let inject = udp4_packet(
                Ipv4Addr::new(10, 99, 0, 2),
                Ipv4Addr::new(10, 99, 0, 1),
                4242,
                sport,
                b"back",
            );
            assert!(write_packet(tun.queue(1), &inject).unwrap());
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 64];
            let (n, from) = sock.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], b"back");
            assert_eq!(from, "10.99.0.2:4242".parse::<SocketAddr>().unwrap());

            // Routes: add / duplicate / replace / delete / delete again.
            let dst: IpAddr = "10.98.0.0".parse().unwrap();
            let has_route = || {
                proc_net("route")
                    .lines()
                    .any(|l| l.starts_with("skytest0\t0000620A\t"))
            };
            nl.add_route(dst, 16, idx, None, None).unwrap();
            assert!(has_route(), "{}", proc_net("route"));
            let e = nl.add_route(dst, 16, idx, None, None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
            nl.replace_route(dst, 16, idx, None, None).unwrap();
            nl.del_route(dst, 16, idx, None, None).unwrap();
            assert!(!has_route(), "{}", proc_net("route"));
            let e = nl.del_route(dst, 16, idx, None, None).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("delete route 10.98.0.0/16 dev skytest0:"),
                "{e}"
            );
            // Host bits are masked.
            nl.replace_route("10.98.7.7".parse().unwrap(), 16, idx, None, None)
                .unwrap();
            assert!(has_route());
            nl.del_route(dst, 16, idx, None, None).unwrap();

            // Gateway + non-main tables (<256 in rtm_table, >=256 via RTA_TABLE).
            let gw: IpAddr = "10.99.0.2".parse().unwrap();
            let d2: IpAddr = "10.97.0.0".parse().unwrap();
            for table in [Some(100), Some(1000)] {
                nl.add_route(d2, 16, idx, Some(gw), table).unwrap();
                nl.replace_route(d2, 16, idx, Some(gw), table).unwrap();
                nl.del_route(d2, 16, idx, Some(gw), table).unwrap();
            }
            // Main-table routes only in /proc/net/route: table 100 left none.
            assert!(!proc_net("route").contains("0000610A"));

            // IPv6 route.
            let d6: IpAddr = "fd01::".parse().unwrap();
            let has6 = || {
                proc_net("ipv6_route").lines().any(|l| {
                    l.starts_with("fd010000000000000000000000000000 40 ") && l.ends_with("skytest0")
                })
            };
            nl.add_route(d6, 64, idx, None, None).unwrap();
            assert!(has6(), "{}", proc_net("ipv6_route"));
            // The kernel's extended-ACK text is carried into the error.
            let fd02: IpAddr = "fd02::".parse().unwrap();
            let e = nl.add_route(fd02, 64, idx, Some(v6), None).unwrap_err();
            assert!(
                e.to_string().contains("Gateway can not be a local address"),
                "{e}"
            );
            let gw6: IpAddr = "fd00::2".parse().unwrap();
            nl.add_route(fd02, 64, idx, Some(gw6), None).unwrap();
            nl.del_route(fd02, 64, idx, Some(gw6), None).unwrap();
            nl.del_route(d6, 64, idx, None, None).unwrap();
            assert!(!has6());
            let e = nl.add_route(d6, 64, idx, Some(gw), None).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

            nl.set_link_up(idx, false).unwrap();
            assert!(!nl.link("skytest0").unwrap().unwrap().up);

            drop(tun);
            assert_eq!(nl.link_index("skytest0").unwrap(), None);
        });
    }

    #[test]
    fn tun_errors_and_stale_in_netns() {
        in_netns(|| {
            let mut nl = Netlink::open().unwrap();
            assert!(!Tun::remove_stale("skynothere0").unwrap());

            let e = Tun::create("skytest0123456789abc", 1).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("IFNAMSIZ"), "{e}");
            assert_eq!(
                Tun::create("skytest0", 0).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(
                Tun::create("sky/0", 1).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );

            // Existing link: refuse to attach.
            let t = Tun::create("skystale0", 2).unwrap();
            let e = Tun::create("skystale0", 2).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("remove_stale"), "{e}");
            let e = Tun::create("lo", 1).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");

            // remove_stale deletes an existing link even while fds are open.
            assert!(Tun::remove_stale("skystale0").unwrap());
            assert_eq!(nl.link_index("skystale0").unwrap(), None);
            assert!(!Tun::remove_stale("skystale0").unwrap());
            drop(t); // closing fds of a deleted device is fine

            // Kernel-assigned names.
            let t = Tun::create("skyq%d", 1).unwrap();
            assert_eq!(t.name(), "skyq0");
            assert_eq!(nl.link_index("skyq0").unwrap(), Some(t.index().unwrap()));
            // Nothing pending on a down device.
            let mut buf = [0u8; 1500];
            assert_eq!(read_packet(t.queue(0), &mut buf).unwrap(), None);

            // Ops on a missing ifindex name the operation.
            let e = nl.set_mtu(999_999, 1400).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("set mtu 1400 on ifindex 999999: "),
                "{e}"
            );
        });
    }

    #[test]
    fn name_validation() {
        assert!(check_name("skytest0").is_ok());
        assert!(check_name("a23456789012345").is_ok());
        assert!(check_name("a234567890123456").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("a b").is_err());
    }
}
