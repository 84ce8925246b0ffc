//! Errors and the parsing of kernel replies: every length from the kernel is bounds-checked.

use super::consts::*;
use std::io;
use std::net::IpAddr;

// ---- errors ----

/// A request refused by the kernel. Wrapped inside the returned
/// [`io::Error`] (whose kind is derived from `errno`).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {}{}", io::Error::from_raw_os_error(*errno), ext_msg.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub struct NetlinkError {
    /// Human-readable operation, e.g. `add address 10.1.0.1/24 to sky0`.
    pub op: String,
    /// Positive errno reported by the kernel.
    pub errno: i32,
    /// Extended-ACK message from the kernel, if it sent one.
    pub ext_msg: Option<String>,
}

impl NetlinkError {
    pub(super) fn into_io(self) -> io::Error {
        let kind = io::Error::from_raw_os_error(self.errno).kind();
        io::Error::new(kind, self)
    }
}

/// The errno of an error returned by [`Netlink`] (kernel refusal) or a plain
/// OS error; `None` otherwise.
pub fn os_errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<NetlinkError>())
            .map(|e| e.errno)
    })
}

/// Error from parsing a kernel reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink message truncated: header needs {NLMSG_HDRLEN} bytes, {0} left")]
    ShortHeader(usize),
    #[error("netlink message length {len} invalid ({left} bytes left)")]
    BadLength { len: usize, left: usize },
    #[error("netlink error message too short ({0} bytes)")]
    ShortError(usize),
    #[error("netlink payload too short for {what} ({len} bytes)")]
    ShortPayload { what: &'static str, len: usize },
    #[error("netlink attribute at offset {offset} has invalid length {len} ({left} bytes left)")]
    BadAttribute {
        offset: usize,
        len: usize,
        left: usize,
    },
    #[error("netlink attribute {what} has invalid size {len}")]
    BadAttrValue { what: &'static str, len: usize },
    #[error("netlink reply lacks attribute {0}")]
    MissingAttr(&'static str),
}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

// ---- parsing ----

/// One netlink message inside a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    pub payload: &'a [u8],
}

pub(super) fn align(len: usize) -> usize {
    len.saturating_add(NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

pub(super) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

pub(super) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Split a datagram into netlink messages, checking every length field.
pub fn parse_messages(mut buf: &[u8]) -> Result<Vec<NlMsg<'_>>, ParseError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (Some(len), Some(ty), Some(flags), Some(seq), Some(pid)) = (
            u32_at(buf, 0),
            u16_at(buf, 4),
            u16_at(buf, 6),
            u32_at(buf, 8),
            u32_at(buf, 12),
        ) else {
            return Err(ParseError::ShortHeader(buf.len()));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(ParseError::BadLength {
                len,
                left: buf.len(),
            });
        }
        out.push(NlMsg {
            ty,
            flags,
            seq,
            pid,
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = buf.get(align(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Iterate over `(type, value)` of the route attributes in `buf`. Stops (with
/// no panic) at the first malformed attribute.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u16_at(rest, 0)? as usize;
        let ty = u16_at(rest, 2)? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > rest.len() {
            rest = &[];
            return None;
        }
        let val = &rest[NLA_HDRLEN..len];
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((ty, val))
    })
}

/// Decoded `NLMSG_ERROR` payload (`errno == 0` is an ACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub errno: i32,
    pub ext_msg: Option<String>,
}

/// Decode the payload of an `NLMSG_ERROR` message with header flags `flags`.
pub fn parse_error(payload: &[u8], flags: u16) -> Result<ErrorMsg, ParseError> {
    let Some(raw) = u32_at(payload, 0) else {
        return Err(ParseError::ShortError(payload.len()));
    };
    // The kernel sends a negative errno; accept either sign defensively.
    let errno = (raw as i32).checked_abs().unwrap_or(i32::MAX);
    let mut ext_msg = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // struct nlmsgerr { int error; struct nlmsghdr msg; } then, unless
        // capped, the echoed request payload; then the TLVs.
        let echoed_len = u32_at(payload, 4).unwrap_or(0) as usize;
        let tlv_off = if flags & NLM_F_CAPPED != 0 {
            4 + NLMSG_HDRLEN
        } else {
            4usize.saturating_add(align(echoed_len.max(NLMSG_HDRLEN)))
        };
        if let Some(tlvs) = payload.get(tlv_off..) {
            ext_msg = attrs(tlvs)
                .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
                .map(|(_, v)| {
                    let v = v.split(|b| *b == 0).next().unwrap_or(&[]);
                    String::from_utf8_lossy(v).into_owned()
                })
                .filter(|s| !s.is_empty());
        }
    }
    Ok(ErrorMsg { errno, ext_msg })
}

/// Link properties decoded from an `RTM_NEWLINK` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: Option<String>,
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

pub(super) fn parse_link(payload: &[u8]) -> Result<LinkInfo, ParseError> {
    // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32
    let (Some(index), Some(flags)) = (u32_at(payload, 4), u32_at(payload, 8)) else {
        return Err(ParseError::ShortPayload {
            what: "ifinfomsg",
            len: payload.len(),
        });
    };
    let mut info = LinkInfo {
        index,
        name: None,
        mtu: None,
        up: flags & IFF_UP != 0,
    };
    for (ty, val) in attrs(payload.get(16..).unwrap_or(&[])) {
        match ty {
            IFLA_IFNAME => {
                let v = val.split(|b| *b == 0).next().unwrap_or(&[]);
                info.name = Some(String::from_utf8_lossy(v).into_owned());
            }
            IFLA_MTU => info.mtu = u32_at(val, 0),
            _ => {}
        }
    }
    Ok(info)
}

/// Like [`attrs`], but a malformed attribute (length shorter than its
/// header or running past the buffer) is an error instead of the end.
/// Trailing bytes too short for an attribute header are an error too.
pub fn attrs_strict(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, ParseError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < buf.len() {
        let rest = &buf[off..];
        let (Some(len), Some(ty)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Err(ParseError::BadAttribute {
                offset: off,
                len: rest.len(),
                left: rest.len(),
            });
        };
        let len = len as usize;
        if len < NLA_HDRLEN || len > rest.len() {
            return Err(ParseError::BadAttribute {
                offset: off,
                len,
                left: rest.len(),
            });
        }
        out.push((ty & NLA_TYPE_MASK, &rest[NLA_HDRLEN..len]));
        off = off.saturating_add(align(len));
    }
    Ok(out)
}

/// Where the kernel would send a packet, from an `RTM_GETROUTE` lookup
/// (`ip route get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHop {
    /// Output interface index.
    pub oif: u32,
    /// Next hop, if not directly connected.
    pub gateway: Option<IpAddr>,
    /// Preferred source address for the destination.
    pub prefsrc: Option<IpAddr>,
}

/// An address attribute of `family` (AF_INET or AF_INET6).
pub(super) fn ip_attr(what: &'static str, family: u8, val: &[u8]) -> Result<IpAddr, ParseError> {
    match (family, val.len()) {
        (AF_INET, 4) => Ok(IpAddr::from([val[0], val[1], val[2], val[3]])),
        (AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(val);
            Ok(IpAddr::from(a))
        }
        _ => Err(ParseError::BadAttrValue {
            what,
            len: val.len(),
        }),
    }
}

/// Decode the `RTM_NEWROUTE` answer to a route lookup. `Ok(None)` for
/// routes that deliver nowhere (unreachable, prohibit, blackhole, throw).
pub fn parse_route_hop(payload: &[u8]) -> Result<Option<RouteHop>, ParseError> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags u32
    let Some(h) = payload.get(..12) else {
        return Err(ParseError::ShortPayload {
            what: "rtmsg",
            len: payload.len(),
        });
    };
    let (family, rtype) = (h[0], h[7]);
    if family != AF_INET && family != AF_INET6 {
        return Err(ParseError::BadAttrValue {
            what: "rtmsg family",
            len: usize::from(family),
        });
    }
    let mut oif = None;
    let mut gateway = None;
    let mut prefsrc = None;
    for (ty, val) in attrs_strict(&payload[12..])? {
        match ty {
            RTA_OIF => {
                oif = Some(u32_at(val, 0).filter(|_| val.len() == 4).ok_or(
                    ParseError::BadAttrValue {
                        what: "RTA_OIF",
                        len: val.len(),
                    },
                )?);
            }
            RTA_GATEWAY => gateway = Some(ip_attr("RTA_GATEWAY", family, val)?),
            RTA_PREFSRC => prefsrc = Some(ip_attr("RTA_PREFSRC", family, val)?),
            RTA_VIA => {
                // struct rtvia { sa_family_t family (u16); u8 addr[]; }
                let via_family = u16_at(val, 0).ok_or(ParseError::BadAttrValue {
                    what: "RTA_VIA",
                    len: val.len(),
                })?;
                let fam = u8::try_from(via_family).unwrap_or(AF_UNSPEC);
                gateway = Some(ip_attr("RTA_VIA", fam, &val[2..])?);
            }
            _ => {}
        }
    }
    if rtype != RTN_UNICAST && rtype != RTN_LOCAL {
        return Ok(None);
    }
    let oif = oif.ok_or(ParseError::MissingAttr("RTA_OIF"))?;
    Ok(Some(RouteHop {
        oif,
        gateway,
        prefsrc,
    }))
}
