//! Handing a signal connection to a process viscript did not start, over viscript's unix control
//! socket: the client asks with one line, the server answers with one line carrying the three
//! descriptors as SCM_RIGHTS.
//!
//! Request: `{"attach":"NAME","pid":PID}\n` (NAME is `[A-Za-z0-9._-]{1,64}`).
//! Answer: `OK ID\n` with the memfd, to-client and to-server eventfds attached, or `ERR text\n`.

use crate::channel::ClientFds;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Whether `name` is acceptable as a component name.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Longest the server may take to answer an attach request: a server that accepts and then
/// says nothing must not hang its client.
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An attachment granted by a server: its id, the ring descriptors and the server's pid (from
/// the socket's peer credentials; `None` when the kernel gives none), so that the client can
/// watch the server's process.
pub struct Attached {
    /// The id the server gave.
    pub id: u64,
    /// The ring descriptors.
    pub fds: ClientFds,
    /// The serving process.
    pub server_pid: Option<u32>,
}

/// Client side: asks the viscript at `socket` for a signal connection. Returns the sequence id
/// the server gave and the descriptors.
pub fn request(socket: &Path, name: &str) -> io::Result<(u64, ClientFds)> {
    request_attached(socket, name).map(|a| (a.id, a.fds))
}

/// [`request`], also naming the serving process.
pub fn request_attached(socket: &Path, name: &str) -> io::Result<Attached> {
    if !valid_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "component name must be 1-64 of [A-Za-z0-9._-]",
        ));
    }
    let mut s = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot reach viscript at {}: {e}", socket.display()),
        )
    })?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let server_pid = rustix::net::sockopt::socket_peercred(&s)
        .ok()
        .map(|c| c.pid.as_raw_nonzero().get() as u32);
    writeln!(
        s,
        "{{\"attach\":\"{name}\",\"pid\":{}}}",
        std::process::id()
    )?;
    let mut line = [0u8; 512];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &s,
        &mut [IoSliceMut::new(&mut line)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = msg {
            fds.extend(r);
        }
    }
    let text = String::from_utf8_lossy(&line[..got.bytes]);
    let text = text.trim_end();
    if let Some(err) = text.strip_prefix("ERR ") {
        return Err(io::Error::other(format!("viscript refused: {err}")));
    }
    let id = text
        .strip_prefix("OK ")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer {text:?}"),
            )
        })?;
    if fds.len() != 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected 3 descriptors, got {}", fds.len()),
        ));
    }
    let to_server = fds.pop();
    let to_client = fds.pop();
    let memfd = fds.pop();
    match (memfd, to_client, to_server) {
        (Some(memfd), Some(to_client), Some(to_server)) => Ok(Attached {
            id,
            fds: ClientFds {
                memfd,
                to_client,
                to_server,
            },
            server_pid,
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptors missing",
        )),
    }
}

/// Server side: answers an attach request with `OK id` and the descriptors.
pub fn grant(stream: &UnixStream, id: u64, fds: &ClientFds) -> io::Result<()> {
    let line = format!("OK {id}\n");
    let raw = [
        fds.memfd.as_fd(),
        fds.to_client.as_fd(),
        fds.to_server.as_fd(),
    ];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !anc.push(SendAncillaryMessage::ScmRights(&raw)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    sendmsg(
        stream,
        &[IoSlice::new(line.as_bytes())],
        &mut anc,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Server side: refuses an attach request.
pub fn refuse(mut stream: &UnixStream, why: &str) -> io::Result<()> {
    let why = why.replace('\n', " ");
    stream.write_all(format!("ERR {why}\n").as_bytes())
}
