//! The driver's connection to its dataplane: the fib ring, and noticing when the dataplane goes
//! away and when one serves again.
//!
//! Gone means its process exited (a pidfd of the pid the fib socket's peer credentials name
//! becomes readable) or another process serves the socket path (the file's inode changed, or
//! it was removed). While gone, a connection is tried every [`RETRY`]; each try is one connect
//! with the attach protocol's own answer timeout, so the driver's loop never waits long.

use dataplane::fibring::FibClient;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a lost dataplane is looked for: short against the one-second heal target, long
/// against the cost of a failed connect (one syscall on a stale or missing socket).
pub const RETRY: Duration = Duration::from_millis(50);

/// What changed since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// The dataplane went away.
    Lost,
    /// A dataplane serves again (its tables are empty).
    Back,
}

/// The fib ring to the dataplane, while there is one.
pub struct DataplaneLink {
    path: PathBuf,
    fib: Option<FibClient>,
    pidfd: Option<OwnedFd>,
    ino: Option<u64>,
    next_try: Instant,
}

impl DataplaneLink {
    /// Connects to the dataplane at `path`, retrying for up to `within` (it may still be
    /// starting).
    pub fn connect(path: &Path, within: Duration) -> Result<DataplaneLink, String> {
        let t = Instant::now();
        loop {
            match attach(path) {
                Ok((fib, pidfd, ino)) => {
                    return Ok(DataplaneLink {
                        path: path.to_path_buf(),
                        fib: Some(fib),
                        pidfd,
                        ino,
                        next_try: Instant::now(),
                    });
                }
                Err(e) if t.elapsed() > within => {
                    return Err(format!("dataplane fib ring at {}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The fib ring, while the dataplane is there.
    pub fn fib(&mut self) -> Option<&mut FibClient> {
        self.fib.as_mut()
    }

    /// What to wait on with the other descriptors: the fib ring's bell (armed by the caller)
    /// and the pidfd (readable when the dataplane exits).
    pub fn wait_fds(&self) -> (Option<BorrowedFd<'_>>, Option<BorrowedFd<'_>>) {
        (
            self.fib.as_ref().map(|f| f.wait_fd()),
            self.pidfd.as_ref().map(|f| f.as_fd()),
        )
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks whether the dataplane went away, or (while it is away and a try is due at `now`)
    /// whether one serves again.
    pub fn poll_change(&mut self, now: Instant) -> Change {
        if self.fib.is_some() {
            if self.gone() {
                self.fib = None;
                self.pidfd = None;
                self.ino = None;
                self.next_try = now;
                return Change::Lost;
            }
            return Change::None;
        }
        if now < self.next_try {
            return Change::None;
        }
        self.next_try = now + RETRY;
        match attach(&self.path) {
            Ok((fib, pidfd, ino)) => {
                self.fib = Some(fib);
                self.pidfd = pidfd;
                self.ino = ino;
                Change::Back
            }
            Err(_) => Change::None,
        }
    }

    fn gone(&self) -> bool {
        if self.pidfd.as_ref().is_some_and(netbase::pidfd::exited) {
            return true;
        }
        match (self.ino, std::fs::metadata(&self.path)) {
            (Some(ino), Ok(m)) => m.ino() != ino,
            (Some(_), Err(_)) => true,
            (None, _) => false,
        }
    }
}

/// One connection attempt: the ring, a pidfd of the serving process (when the kernel names it
/// and it can be opened) and the socket file's inode.
fn attach(path: &Path) -> std::io::Result<(FibClient, Option<OwnedFd>, Option<u64>)> {
    let fib = FibClient::connect(path)?;
    let pidfd = fib.dataplane_pid().and_then(netbase::pidfd::open);
    let ino = std::fs::metadata(path).ok().map(|m| m.ino());
    Ok((fib, pidfd, ino))
}
