//! The shared region of one client: a sealed memfd holding a header (magic, version, ring size,
//! one heartbeat word per side) and two rings, server->client and client->server.
//!
//! ```text
//! 0      header: magic u64 | version u32 | ring_cap u32 | ...
//! 64     server heartbeat (own cache line)
//! 128    client heartbeat (own cache line)
//! 256    RingCtl server->client (3 cache lines)
//! 512    RingCtl client->server (3 cache lines)
//! 4096   data server->client (ring_cap bytes)
//! 4096+ring_cap  data client->server (ring_cap bytes)
//! ```
//!
//! The server creates and seals the memfd (no shrink, no grow, no further seals), so the mapping
//! can never be truncated under either side (which would turn reads into SIGBUS). The client checks
//! those seals and the size before it maps anything.

use crate::ring::{RingCtl, RingMem};
use crate::sync::{AtomicU64, Ordering};
use memmap2::MmapRaw;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// "SKYSIGNL" as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SKYSIGNL");
/// Layout version of the shared region.
pub const LAYOUT_VERSION: u32 = 1;
/// Default bytes per ring.
pub const DEFAULT_RING_CAP: usize = 256 * 1024;
/// Smallest and largest ring a client accepts.
pub const MIN_RING_CAP: usize = 4096;
/// See [`MIN_RING_CAP`].
pub const MAX_RING_CAP: usize = 64 * 1024 * 1024;

const HB_SERVER: usize = 64;
const HB_CLIENT: usize = 128;
const CTL_S2C: usize = 256;
const CTL_C2S: usize = 512;
const DATA: usize = 4096;

/// Which end of the region this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// viscript.
    Server,
    /// The supervised component.
    Client,
}

/// A mapped region.
pub struct Region {
    map: MmapRaw,
    cap: usize,
    _file: File,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("ring_cap", &self.cap)
            .finish()
    }
}

fn region_len(cap: usize) -> usize {
    DATA + 2 * cap
}

impl Region {
    /// Creates, sizes, seals and maps a new region (server side). Returns it with the memfd to
    /// hand to the client.
    pub fn create(ring_cap: usize) -> io::Result<(Arc<Region>, OwnedFd)> {
        if !ring_cap.is_power_of_two() || !(MIN_RING_CAP..=MAX_RING_CAP).contains(&ring_cap) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring capacity must be a power of two in 4 KiB..=64 MiB",
            ));
        }
        let mfd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .allow_sealing(true)
            .create("viscript-signal")
            .map_err(memfd_err)?;
        mfd.as_file().set_len(region_len(ring_cap) as u64)?;
        let mut seals = memfd::SealsHashSet::new();
        seals.insert(memfd::FileSeal::SealShrink);
        seals.insert(memfd::FileSeal::SealGrow);
        seals.insert(memfd::FileSeal::SealSeal);
        mfd.add_seals(&seals).map_err(memfd_err)?;
        let file = mfd.into_file();
        let fd: OwnedFd = file.try_clone()?.into();
        let map = MmapRaw::map_raw(&file)?;
        let region = Region {
            map,
            cap: ring_cap,
            _file: file,
        };
        // The file is fresh (all zero): write the header; indices start at zero.
        region.write_header();
        Ok((Arc::new(region), fd))
    }

    fn write_header(&self) {
        let p = self.map.as_mut_ptr();
        // SAFETY: the mapping is DATA + 2*cap >= 4096 bytes long and page aligned; the header
        // occupies bytes 0..16; nobody else has the fd yet.
        unsafe {
            p.cast::<u64>().write(MAGIC);
            p.add(8).cast::<u32>().write(LAYOUT_VERSION);
            p.add(12).cast::<u32>().write(self.cap as u32);
        }
    }

    /// Maps a region received from the server (client side), checking seals, size and header.
    pub fn open(fd: OwnedFd) -> io::Result<Arc<Region>> {
        let bad =
            |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("signal region: {m}"));
        let seals = rustix::fs::fcntl_get_seals(fd.as_fd())?;
        if !seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW) {
            return Err(bad("memfd is not sealed against resizing"));
        }
        let file = File::from(fd);
        let len = file.metadata()?.len() as usize;
        if len < DATA {
            return Err(bad("too small"));
        }
        let mut hdr = [0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut hdr, 0)?;
        let magic = u64::from_le_bytes(hdr[0..8].try_into().unwrap_or_default());
        let version = u32::from_le_bytes(hdr[8..12].try_into().unwrap_or_default());
        let cap = u32::from_le_bytes(hdr[12..16].try_into().unwrap_or_default()) as usize;
        if magic != MAGIC {
            return Err(bad("bad magic"));
        }
        if version != LAYOUT_VERSION {
            return Err(bad(&format!(
                "layout version {version}, this build speaks {LAYOUT_VERSION}"
            )));
        }
        if !cap.is_power_of_two() || !(MIN_RING_CAP..=MAX_RING_CAP).contains(&cap) {
            return Err(bad("ring capacity out of range"));
        }
        if len != region_len(cap) {
            return Err(bad("size does not match the ring capacity"));
        }
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arc::new(Region {
            map,
            cap,
            _file: file,
        }))
    }

    /// Bytes per ring.
    pub fn ring_cap(&self) -> usize {
        self.cap
    }

    fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off + 8 <= DATA && off.is_multiple_of(8));
        // SAFETY: `off` is one of the fixed header offsets, 8-aligned and inside the mapping,
        // which lives as long as `self`. AtomicU64 has the layout of u64 and any bit pattern is
        // valid; the peer may change it at any time, which atomics allow.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }
    }

    fn ctl(&self, off: usize) -> &RingCtl {
        // SAFETY: CTL_* offsets are 64-aligned (the mapping is page aligned) and RingCtl (192
        // bytes) fits before the next one and before DATA. RingCtl is atomics only: every bit
        // pattern is valid and concurrent modification by the peer is allowed.
        unsafe { &*self.map.as_ptr().add(off).cast::<RingCtl>() }
    }

    /// Bumps this side's heartbeat word.
    pub fn beat(&self, side: Side) {
        let off = if side == Side::Server {
            HB_SERVER
        } else {
            HB_CLIENT
        };
        self.atomic_u64(off).fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a side's heartbeat word (a counter; only its change is meaningful).
    pub fn heartbeat(&self, side: Side) -> u64 {
        let off = if side == Side::Server {
            HB_SERVER
        } else {
            HB_CLIENT
        };
        self.atomic_u64(off).load(Ordering::Relaxed)
    }

    /// The ring this side writes.
    pub fn tx(self: &Arc<Self>, side: Side) -> ShmRing {
        let (ctl, data) = match side {
            Side::Server => (CTL_S2C, DATA),
            Side::Client => (CTL_C2S, DATA + self.cap),
        };
        ShmRing {
            region: self.clone(),
            ctl,
            data,
        }
    }

    /// The ring this side reads.
    pub fn rx(self: &Arc<Self>, side: Side) -> ShmRing {
        let other = if side == Side::Server {
            Side::Client
        } else {
            Side::Server
        };
        self.tx(other)
    }
}

fn memfd_err(e: memfd::Error) -> io::Error {
    match e {
        memfd::Error::Create(e) | memfd::Error::AddSeals(e) | memfd::Error::GetSeals(e) => e,
    }
}

/// One ring inside a [`Region`].
#[derive(Clone)]
pub struct ShmRing {
    region: Arc<Region>,
    ctl: usize,
    data: usize,
}

impl RingMem for ShmRing {
    fn ctl(&self) -> &RingCtl {
        self.region.ctl(self.ctl)
    }
    fn capacity(&self) -> usize {
        self.region.cap
    }
    fn write_at(&self, off: usize, src: &[u8]) {
        assert!(
            off + src.len() <= self.region.cap,
            "ring write out of bounds"
        );
        // SAFETY: bounds checked above; the destination lies in this ring's data area inside
        // the live mapping and cannot overlap `src` (a local buffer).
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.region.map.as_mut_ptr().add(self.data + off),
                src.len(),
            )
        }
    }
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        assert!(
            off + dst.len() <= self.region.cap,
            "ring read out of bounds"
        );
        // SAFETY: as in write_at. The peer may be writing these bytes: we copy them out as they
        // are and parse only the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.region.map.as_ptr().add(self.data + off),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}
