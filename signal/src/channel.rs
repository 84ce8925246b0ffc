//! One side's view of a signal connection: a sending half and a receiving half, each a ring in
//! the shared region plus an eventfd doorbell.

use crate::proto::{DecodeError, EncodeError, Msg};
use crate::ring::{Consumer, Corrupt, Producer, PushError};
use crate::shm::{Region, ShmRing, Side};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spin iterations before a blocking receive goes to sleep on its doorbell. A busy peer answers
/// within this window and no syscall is made; an idle one costs one short burst per wait.
const SPIN_ITERS: u32 = 20_000;

/// The descriptors a client needs: the region and the two doorbells.
#[derive(Debug)]
pub struct ClientFds {
    /// The sealed memfd holding the rings.
    pub memfd: OwnedFd,
    /// Rung by the server when the client should look at its receive ring.
    pub to_client: OwnedFd,
    /// Rung by the client when the server should look at its receive ring.
    pub to_server: OwnedFd,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The ring refused it.
    #[error(transparent)]
    Push(#[from] PushError),
    /// The doorbell could not be rung.
    #[error("doorbell: {0}")]
    Io(#[from] io::Error),
}

/// Why a receive failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The peer broke the ring: the connection is unusable.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// One record was not a valid message; the next may be fine.
    #[error("bad message: {0}")]
    Decode(#[from] DecodeError),
}

impl RecvError {
    /// Whether the connection must be dropped.
    pub fn is_fatal(&self) -> bool {
        matches!(self, RecvError::Corrupt(_))
    }
}

fn new_bell() -> io::Result<OwnedFd> {
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

fn ring_bell(fd: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::io::write(fd, &1u64.to_ne_bytes()) {
        Ok(_) => Ok(()),
        // The counter is saturated: the peer has plenty of wake-ups pending.
        Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn drain_bell(fd: BorrowedFd<'_>) {
    let mut b = [0u8; 8];
    // EAGAIN (nothing pending) is the normal case; any other error would reappear on poll.
    let _ = rustix::io::read(fd, &mut b);
}

/// The sending half.
pub struct Tx {
    prod: Producer<ShmRing>,
    bell: OwnedFd,
    buf: Vec<u8>,
}

impl Tx {
    /// Encodes and publishes `msg`, ringing the peer's doorbell if it sleeps.
    pub fn send(&mut self, msg: &Msg) -> Result<(), SendError> {
        msg.encode(&mut self.buf)?;
        self.send_raw_record()
    }

    /// Encodes `msg` into the ring without publishing it; [`Tx::flush`] publishes everything
    /// queued at once. For bursts (log lines, counters): one publication instead of many.
    pub fn queue(&mut self, msg: &Msg) -> Result<(), SendError> {
        msg.encode(&mut self.buf)?;
        Ok(self.prod.stage(&self.buf)?)
    }

    /// Publishes what [`Tx::queue`] staged, ringing the peer's doorbell if it sleeps.
    pub fn flush(&mut self) -> Result<(), SendError> {
        if self.prod.publish() {
            ring_bell(self.bell.as_fd())?;
        }
        Ok(())
    }

    /// Publishes raw bytes as one record (tests use this to play a hostile peer).
    pub fn send_raw(&mut self, rec: &[u8]) -> Result<(), SendError> {
        self.buf.clear();
        self.buf.extend_from_slice(rec);
        self.send_raw_record()
    }

    fn send_raw_record(&mut self) -> Result<(), SendError> {
        if self.prod.push(&self.buf)? {
            ring_bell(self.bell.as_fd())?;
        }
        Ok(())
    }

    /// Largest encoded message this ring takes.
    pub fn max_record(&self) -> usize {
        self.prod.max_record()
    }
}

/// The receiving half.
pub struct Rx {
    cons: Consumer<ShmRing>,
    bell: OwnedFd,
    buf: Vec<u8>,
}

impl Rx {
    /// Takes the next message if one is queued.
    pub fn try_recv(&mut self) -> Result<Option<Msg>, RecvError> {
        if !self.cons.pop(&mut self.buf)? {
            return Ok(None);
        }
        Ok(Some(Msg::decode(&self.buf)?))
    }

    /// Takes the next record, undecoded (for protocols other than [`Msg`] on the same rings).
    pub fn try_recv_raw(&mut self) -> Result<Option<&[u8]>, Corrupt> {
        if !self.cons.pop(&mut self.buf)? {
            return Ok(None);
        }
        Ok(Some(&self.buf))
    }

    /// Waits up to `timeout` for a message: spins briefly, then sleeps on the doorbell.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Msg>, RecvError> {
        if !self.wait_ready(timeout)? {
            return Ok(None);
        }
        self.try_recv()
    }

    /// [`Rx::recv_timeout`] for raw records.
    pub fn recv_raw_timeout(&mut self, timeout: Duration) -> Result<Option<&[u8]>, Corrupt> {
        if !self.wait_ready(timeout)? {
            return Ok(None);
        }
        self.try_recv_raw()
    }

    /// Whether a record arrived within `timeout`.
    fn wait_ready(&mut self, timeout: Duration) -> Result<bool, Corrupt> {
        for _ in 0..SPIN_ITERS {
            if self.cons.has_data()? {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.cons.prepare_sleep()? {
                let left = deadline.saturating_duration_since(Instant::now());
                let ts = rustix::time::Timespec::try_from(left).unwrap_or(rustix::time::Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                });
                let mut fds = [PollFd::new(&self.bell, PollFlags::IN)];
                // EINTR and the (practically impossible) EINVAL/ENOMEM all mean "look again";
                // the deadline bounds the loop either way.
                let _ = poll(&mut fds, Some(&ts));
                self.disarm();
            }
            if self.cons.has_data()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// For event-loop users: announce that this side is going to sleep on [`Rx::bell_fd`].
    /// `Ok(false)` means a record is already queued: process it instead of sleeping.
    pub fn arm(&mut self) -> Result<bool, RecvError> {
        Ok(self.cons.prepare_sleep()?)
    }

    /// After waking: clears the doorbell and lowers the sleep flag.
    pub fn disarm(&mut self) {
        drain_bell(self.bell.as_fd());
        self.cons.end_sleep();
    }

    /// The doorbell to poll for readability.
    pub fn bell_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

/// Both halves of one side, plus the region (for heartbeats).
pub struct Channel {
    /// Sending half.
    pub tx: Tx,
    /// Receiving half.
    pub rx: Rx,
    /// The shared region.
    pub region: Arc<Region>,
    /// Which side this is.
    pub side: Side,
}

impl Channel {
    /// Server side: creates a region of `ring_cap` bytes per ring and its doorbells. Returns the
    /// server's channel and the descriptors to give the client.
    pub fn create(ring_cap: usize) -> io::Result<(Channel, ClientFds)> {
        let (region, memfd) = Region::create(ring_cap)?;
        let to_client = new_bell()?;
        let to_server = new_bell()?;
        let chan = Channel {
            tx: Tx {
                prod: Producer::new(region.tx(Side::Server)),
                bell: to_client.try_clone()?,
                buf: Vec::new(),
            },
            rx: Rx {
                cons: Consumer::new(region.rx(Side::Server)),
                bell: to_server.try_clone()?,
                buf: Vec::new(),
            },
            region,
            side: Side::Server,
        };
        Ok((
            chan,
            ClientFds {
                memfd,
                to_client,
                to_server,
            },
        ))
    }

    /// Client side: maps the region the server made, after checking it.
    pub fn open(fds: ClientFds) -> io::Result<Channel> {
        let region = Region::open(fds.memfd)?;
        Ok(Channel {
            tx: Tx {
                prod: Producer::new(region.tx(Side::Client)),
                bell: fds.to_server,
                buf: Vec::new(),
            },
            rx: Rx {
                cons: Consumer::new(region.rx(Side::Client)),
                bell: fds.to_client,
                buf: Vec::new(),
            },
            region,
            side: Side::Client,
        })
    }

    /// Bumps this side's heartbeat word.
    pub fn beat(&self) {
        self.region.beat(self.side);
    }

    /// The peer's heartbeat counter.
    pub fn peer_heartbeat(&self) -> u64 {
        let peer = if self.side == Side::Server {
            Side::Client
        } else {
            Side::Server
        };
        self.region.heartbeat(peer)
    }
}
