//! recvmmsg/sendmmsg batches and UDP GSO/GRO: one syscall per batch of datagrams.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Datagrams per syscall.
pub const BATCH: usize = 32;

/// Converts an address for the kernel.
pub fn to_storage(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut st as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// Converts a kernel address back (`None` for families other than IPv4/IPv6).
pub fn from_storage(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(st.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((st as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((st as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receives up to `bufs.len()` datagrams (`lens[i]` gets each length). Returns how many; 0 when
/// nothing is pending.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [&mut [u8]],
    lens: &mut [usize],
) -> io::Result<usize> {
    recv_inner(fd, bufs, lens, None)
}

/// Sends `n` datagrams, the `i`th being `item(i)` (payload, destination). Returns how many the
/// kernel took; the rest would block (the caller counts them as dropped). A per-datagram error
/// after the first is skipped; an error on the first is returned.
pub fn send_batch<'a>(
    fd: BorrowedFd<'_>,
    n: usize,
    item: impl Fn(usize) -> (&'a [u8], SocketAddr),
) -> io::Result<usize> {
    let n = n.min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iov: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let (data, to) = item(i);
        let (st, len) = to_storage(&to);
        addrs[i] = st;
        iov[i].write(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        hdrs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        hdrs[i].msg_hdr.msg_iovlen = 1;
        hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = len;
    }
    let mut sent = 0;
    while sent < n {
        // SAFETY: hdrs[sent..n] point at initialised iovecs over live buffers (borrowed for 'a)
        // and at addresses in `addrs`; the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr().add(sent),
                (n - sent) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(sent),
                _ if sent == 0 => return Err(e),
                // A per-datagram error (e.g. unreachable peer) after some went out: skip it.
                _ => {
                    sent += 1;
                    continue;
                }
            }
        }
        if r == 0 {
            break;
        }
        sent += r as usize;
    }
    Ok(sent)
}

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a UDP GSO send.
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams, with their segment size in a cmsg.
pub const UDP_GRO: libc::c_int = 104;

/// Turns UDP GRO on for `fd`: [`recv_batch_gro`] may then return several datagrams' payloads
/// back to back in one buffer.
pub fn enable_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the live `one`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A control message carrying an `int` (laid out as CMSG_SPACE(4) bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct CmsgInt {
    hdr: libc::cmsghdr,
    val: libc::c_int,
    _pad: [u8; 4],
}

// SAFETY: CMSG_SPACE / CMSG_LEN are pure arithmetic on sizes.
const CMSG_INT_SPACE: usize = unsafe { libc::CMSG_SPACE(4) } as usize;
// SAFETY: as above.
const CMSG_INT_LEN: usize = unsafe { libc::CMSG_LEN(4) } as usize;
const _: () = assert!(size_of::<CmsgInt>() == CMSG_INT_SPACE);
const _: () = assert!(std::mem::offset_of!(CmsgInt, val) == CMSG_INT_LEN - 4);

/// [`recv_batch`] on a socket with UDP GRO on: `segs[i]` gets the segment size of datagram `i`
/// when it holds several (every one but the last that long), else 0.
pub fn recv_batch_gro(
    fd: BorrowedFd<'_>,
    bufs: &mut [&mut [u8]],
    lens: &mut [usize],
    segs: &mut [usize],
) -> io::Result<usize> {
    recv_inner(fd, bufs, lens, Some(segs))
}

/// recvmmsg into `bufs`; with `segs`, each datagram's UDP_GRO segment size is read too.
fn recv_inner(
    fd: BorrowedFd<'_>,
    bufs: &mut [&mut [u8]],
    lens: &mut [usize],
    mut segs: Option<&mut [usize]>,
) -> io::Result<usize> {
    let n = bufs
        .len()
        .min(lens.len())
        .min(segs.as_ref().map_or(BATCH, |s| s.len()))
        .min(BATCH);
    let mut iov: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut ctl: [CmsgInt; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iov[i].write(libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: bufs[i].len(),
        });
        hdrs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        hdrs[i].msg_hdr.msg_iovlen = 1;
        if segs.is_some() {
            hdrs[i].msg_hdr.msg_control = (&raw mut ctl[i]).cast();
            hdrs[i].msg_hdr.msg_controllen = CMSG_INT_SPACE as _;
        }
    }
    // SAFETY: hdrs[..n] point at n initialised iovecs over live, exclusively borrowed buffers
    // and (with segs) at n control buffers of CMSG_SPACE(4) bytes; the kernel writes at most
    // their lengths into each and fills msg_len / msg_controllen.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    let got = r as usize;
    for i in 0..got {
        lens[i] = hdrs[i].msg_len as usize;
        if let Some(segs) = segs.as_deref_mut() {
            let c = &ctl[i];
            segs[i] = gro_segment(
                hdrs[i].msg_hdr.msg_controllen as usize,
                c.hdr.cmsg_level,
                c.hdr.cmsg_type,
                c.val,
                lens[i],
            );
        }
    }
    Ok(got)
}

/// The UDP GRO segment size a received datagram of `len` bytes carries in its first control
/// message (`controllen` bytes of control data, that message's level, type and `int`), or 0
/// when it holds a single frame (no such message, or a size that does not split it).
fn gro_segment(
    controllen: usize,
    level: libc::c_int,
    ty: libc::c_int,
    val: libc::c_int,
    len: usize,
) -> usize {
    if controllen >= CMSG_INT_LEN
        && level == libc::SOL_UDP
        && ty == UDP_GRO
        && val > 0
        && (val as usize) < len
    {
        val as usize
    } else {
        0
    }
}

/// Bytes of control data to ask for to learn a datagram's UDP GRO segment size.
pub const GRO_CONTROL_LEN: usize = CMSG_INT_SPACE;

/// `gro_segment` of the control data a receive returned, as bytes (e.g. from an io_uring
/// multishot recvmsg). Anything short or unknown reads as a single frame.
pub fn gro_segment_of(control: &[u8], len: usize) -> usize {
    const L: usize = size_of::<libc::size_t>();
    const I: usize = size_of::<libc::c_int>();
    let (Some(level), Some(ty), Some(val)) = (
        control.get(L..L + I),
        control.get(L + I..L + 2 * I),
        control.get(CMSG_INT_LEN - I..CMSG_INT_LEN),
    ) else {
        return 0;
    };
    let int = |b: &[u8]| b.try_into().map(libc::c_int::from_ne_bytes).unwrap_or(0);
    gro_segment(control.len(), int(level), int(ty), int(val), len)
}

/// Most segments one UDP GSO send may carry (the kernel's UDP_MAX_SEGMENTS on older kernels).
pub const GSO_MAX_SEGS: usize = 64;
/// Most bytes one UDP GSO send may carry (below the 64 KiB IP datagram limit, v4 and v6).
pub const GSO_MAX_BYTES: usize = 65000;

/// A control message carrying a `u16` (laid out as CMSG_SPACE(2) bytes).
#[repr(C)]
struct CmsgU16 {
    hdr: libc::cmsghdr,
    val: u16,
    _pad: [u8; 6],
}

// SAFETY: CMSG_SPACE / CMSG_LEN are pure arithmetic on sizes.
const CMSG_U16_SPACE: usize = unsafe { libc::CMSG_SPACE(2) } as usize;
// SAFETY: as above.
const CMSG_U16_LEN: usize = unsafe { libc::CMSG_LEN(2) } as usize;
const _: () = assert!(size_of::<CmsgU16>() == CMSG_U16_SPACE);
const _: () = assert!(std::mem::offset_of!(CmsgU16, val) == CMSG_U16_LEN - 2);

/// Sends `data` to `to` as one UDP GSO send: the kernel cuts it into datagrams of `seg` bytes
/// (the last may be shorter). `Ok(false)` if it would block. An error such as `EIO` / `EINVAL`
/// means this path cannot do UDP GSO: send the datagrams one by one instead.
pub fn send_gso(fd: BorrowedFd<'_>, data: &[u8], seg: u16, to: &SocketAddr) -> io::Result<bool> {
    let (mut addr, alen) = to_storage(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: plain C structs; all-zero is valid.
    let mut cm: CmsgU16 = unsafe { std::mem::zeroed() };
    cm.hdr.cmsg_level = libc::SOL_UDP;
    cm.hdr.cmsg_type = UDP_SEGMENT;
    cm.hdr.cmsg_len = CMSG_U16_LEN as _;
    cm.val = seg;
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = alen;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut cm).cast();
    msg.msg_controllen = CMSG_U16_SPACE as _;
    loop {
        // SAFETY: `msg` points at the live address, iovec (over `data`, only read) and control
        // message above, all valid for the duration of the call.
        let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &raw const msg, libc::MSG_DONTWAIT) };
        if r >= 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn batch_round_trip_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let to = b.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        assert_eq!(send_batch(a.as_fd(), 5, |i| (&msgs[i][..], to)).unwrap(), 5);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut store = vec![[0u8; 64]; 8];
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let mut lens = [0usize; 8];
        let n = recv_batch(b.as_fd(), &mut bufs, &mut lens).unwrap();
        assert_eq!(n, 5);
        for i in 0..5 {
            assert_eq!(&bufs[i][..lens[i]], &msgs[i][..]);
        }
        assert_eq!(recv_batch(b.as_fd(), &mut bufs, &mut lens).unwrap(), 0);
        let back = from_storage(&to_storage(&to).0).unwrap();
        assert_eq!(back, to);
        let v6: SocketAddr = "[fd00::1]:7000".parse().unwrap();
        assert_eq!(from_storage(&to_storage(&v6).0).unwrap(), v6);
    }

    #[test]
    fn gro_segment_of_reads_the_kernels_layout_and_refuses_anything_else() {
        // SAFETY: all-zero is a valid CmsgInt.
        let mut c: CmsgInt = unsafe { std::mem::zeroed() };
        c.hdr.cmsg_len = CMSG_INT_LEN as _;
        c.hdr.cmsg_level = libc::SOL_UDP;
        c.hdr.cmsg_type = UDP_GRO;
        c.val = 1400;
        // SAFETY: a plain C struct seen as its bytes.
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts((&raw const c).cast::<u8>(), size_of::<CmsgInt>())
        };
        assert_eq!(gro_segment_of(bytes, 5000), 1400);
        assert_eq!(gro_segment_of(&bytes[..CMSG_INT_LEN], 5000), 1400);
        assert_eq!(
            gro_segment_of(&bytes[..CMSG_INT_LEN - 1], 5000),
            0,
            "truncated"
        );
        assert_eq!(gro_segment_of(&[], 5000), 0, "no control data");
        assert_eq!(
            gro_segment_of(bytes, 1400),
            0,
            "does not split the datagram"
        );
        let mut other = bytes.to_vec();
        other[size_of::<libc::size_t>() + 4] ^= 1; // another type
        assert_eq!(gro_segment_of(&other, 5000), 0);
        c.val = -1;
        // SAFETY: as above.
        let neg: &[u8] = unsafe {
            std::slice::from_raw_parts((&raw const c).cast::<u8>(), size_of::<CmsgInt>())
        };
        assert_eq!(gro_segment_of(neg, 5000), 0);
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let to = b.local_addr().unwrap();
        let data: Vec<u8> = (0..250u8).collect();
        assert!(send_gso(a.as_fd(), &data, 100, &to).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut store = vec![[0u8; 200]; 8];
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let mut lens = [0usize; 8];
        let n = recv_batch(b.as_fd(), &mut bufs, &mut lens).unwrap();
        assert_eq!(n, 3);
        assert_eq!(lens[..3], [100, 100, 50]);
        assert_eq!(&bufs[2][..50], &data[200..]);
    }

    #[test]
    fn gro_receive_sees_one_gso_send_whole_or_in_parts() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        enable_gro(b.as_fd()).unwrap();
        let to = b.local_addr().unwrap();
        let data: Vec<u8> = (0..250u8).collect();
        assert!(send_gso(a.as_fd(), &data, 100, &to).unwrap());
        a.send_to(b"single", to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut store = vec![[0u8; 400]; 8];
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let (mut lens, mut segs) = ([0usize; 8], [0usize; 8]);
        let n = recv_batch_gro(b.as_fd(), &mut bufs, &mut lens, &mut segs).unwrap();
        // Reassemble whatever way the kernel handed them over.
        let mut frames = Vec::new();
        for i in 0..n {
            let seg = if segs[i] == 0 { lens[i] } else { segs[i] };
            frames.extend(bufs[i][..lens[i]].chunks(seg).map(<[u8]>::to_vec));
        }
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0], &data[..100]);
        assert_eq!(frames[2], &data[200..]);
        assert_eq!(frames[3], b"single");
    }
}
