//! Watching another process through a pidfd: whether the process behind a socket exited.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

/// A pidfd of process `pid`, when it can be opened.
pub fn open(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// A pidfd of the process at the other end of `s` (its peer credentials), when the kernel
/// names it.
pub fn of_peer(s: &UnixStream) -> Option<OwnedFd> {
    let pid = rustix::net::sockopt::socket_peercred(s).ok()?.pid;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Whether the process behind `pidfd` exited (a look, no wait).
pub fn exited(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_peer_that_exits_is_seen() {
        let dir = std::env::temp_dir().join(format!("fibpid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(30)",
            ])
            .arg(&path)
            .spawn()
            .unwrap();
        let (s, _) = l.accept().unwrap();
        let fd = of_peer(&s).expect("a pidfd of the peer");
        assert!(!exited(&fd));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(exited(&fd), "the peer's exit is seen");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
