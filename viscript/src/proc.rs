//! Process plumbing: spawning an app with its signal descriptors in its own process group,
//! signalling through pidfds, reaping.
//!
//! Between fork and exec only async-signal-safe calls run (`dup2`, `sigprocmask`, `setpgid`,
//! `prctl`, `getppid`, `_exit`), and they allocate nothing.

use signal::ClientFds;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Descriptor numbers the child finds its signal connection at.
pub const CHILD_FDS: [RawFd; 3] = [3, 4, 5];

/// A started child.
pub struct Spawned {
    /// Its pid (also its process group id).
    pub pid: u32,
    /// Its pidfd: every signal goes through this.
    pub pidfd: OwnedFd,
    /// Read ends of its stdout and stderr.
    pub stdout: OwnedFd,
    /// See `stdout`.
    pub stderr: OwnedFd,
}

/// Starts `path args...` with the signal descriptors at 3, 4, 5, in a new process group, killed
/// if this thread dies. `SIGNAL_ID` is `id`.
pub fn spawn(
    path: &Path,
    args: &[String],
    env: &[(String, String)],
    id: u64,
    fds: &ClientFds,
) -> io::Result<Spawned> {
    // Move the sources above the target numbers so no dup2 is a no-op (which would keep
    // CLOEXEC set) and none overwrites another source.
    let hi: Vec<OwnedFd> = [
        fds.memfd.as_fd(),
        fds.to_client.as_fd(),
        fds.to_server.as_fd(),
    ]
    .iter()
    .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 10).map_err(io::Error::from))
    .collect::<io::Result<_>>()?;
    let src: [RawFd; 3] = [hi[0].as_raw_fd(), hi[1].as_raw_fd(), hi[2].as_raw_fd()];
    let parent = std::process::id() as i32;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(signal::ENV_FDS, "3,4,5")
        .env(signal::ENV_ID, id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The service manager talks to viscript, not to its apps (even when the config sets them).
    for v in crate::notify::ENV_VARS {
        cmd.env_remove(v);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe syscalls on integers it captured by value; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for (s, t) in src.iter().zip(CHILD_FDS) {
                if libc::dup2(*s, t) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // viscript blocks its termination signals (they are handled on one thread); the
            // child starts with none blocked.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::setpgid(0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before PDEATHSIG was armed.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let pid = child.id();
    // The child is ours and unreaped, so its pid cannot have been reused.
    let pidfd = pidfd_open(pid)?;
    let stdout: OwnedFd = child
        .stdout
        .take()
        .map(Into::into)
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr: OwnedFd = child
        .stderr
        .take()
        .map(Into::into)
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    for fd in [&stdout, &stderr] {
        let fl = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
    }
    // `child` is dropped without waiting: the supervisor reaps with waitpid.
    Ok(Spawned {
        pid,
        pidfd,
        stdout,
        stderr,
    })
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(
        p,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Sends `sig` through a pidfd. A process that already exited is not an error.
pub fn signal_pidfd(pidfd: BorrowedFd<'_>, sig: rustix::process::Signal) -> io::Result<()> {
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pgrp_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid pgrp ...
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(2)?.parse().ok()
}

/// Signals every process in group `pgid` (the app's whole tree), each through its own pidfd:
/// the pidfd is opened first and the group re-checked after, so a recycled pid is never hit.
/// Returns how many processes were signalled.
pub fn signal_group(pgid: u32, sig: rustix::process::Signal) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pgrp_of(pid) != Some(pgid as i32) {
            continue;
        }
        let Ok(fd) = pidfd_open(pid as u32) else {
            continue;
        };
        if pgrp_of(pid) == Some(pgid as i32) && signal_pidfd(fd.as_fd(), sig).is_ok() {
            n += 1;
        }
    }
    n
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(
                f,
                "signal {s}{}",
                match *s {
                    libc::SIGKILL => " (KILL)",
                    libc::SIGTERM => " (TERM)",
                    libc::SIGSEGV => " (SEGV)",
                    libc::SIGABRT => " (ABRT)",
                    _ => "",
                }
            ),
        }
    }
}

/// Reaps one exited child of this process (any: our apps, or orphans we adopted as subreaper).
pub fn reap_one() -> Option<(u32, Exit)> {
    match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        Ok(Some((pid, st))) => {
            let exit = if let Some(c) = st.exit_status() {
                Exit::Code(c)
            } else if let Some(s) = st.terminating_signal() {
                Exit::Signal(s)
            } else {
                return Some((pid.as_raw_nonzero().get() as u32, Exit::Code(-1)));
            };
            Some((pid.as_raw_nonzero().get() as u32, exit))
        }
        _ => None,
    }
}

/// Makes this process adopt orphaned descendants, so their exit is reaped here.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}
