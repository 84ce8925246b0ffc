//! A node's identity: an Ed25519 key pair kept in a key file (the 32-byte seed, hex, mode 0600),
//! the X25519 key for Noise derived from it, and the overlay IPv6 address derived from the
//! public key.
//!
//! The X25519 derivation is the standard one (as libsodium's `crypto_sign_ed25519_*_to_curve25519`):
//! private = clamp(SHA-512(seed)[..32]), public = the Montgomery form of the Ed25519 public key.
//! So anyone who knows a node's Ed25519 key knows the Noise static key it must present.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub use netbase::{NodeId, OVERLAY_PREFIX};

/// What a node's public key proves: Ed25519 signatures, and the X25519 key its Noise handshakes
/// must show.
pub trait PublicKey {
    /// The X25519 public key this node's Noise handshakes must show. `None` for bytes that are
    /// not a valid Ed25519 point.
    fn x25519_public(&self) -> Option<[u8; 32]>;
    /// Verifies an Ed25519 signature by this node.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

impl PublicKey for NodeId {
    fn x25519_public(&self) -> Option<[u8; 32]> {
        Some(
            CompressedEdwardsY(self.0)
                .decompress()?
                .to_montgomery()
                .to_bytes(),
        )
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }
}

/// The key pair.
pub struct Identity {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("pk", &self.id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Identity, String> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| format!("bad seed: {e}"))?;
        Ok(Identity { seed, pair })
    }

    /// A fresh random identity.
    pub fn generate() -> Result<Identity, String> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| "no randomness available".to_string())?;
        Identity::from_seed(seed)
    }

    /// Reads the key file at `path`. Refused when group or others may read it (a key they
    /// could copy is not this node's alone).
    pub fn load(path: &Path) -> io::Result<Identity> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let meta = std::fs::metadata(path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: key file is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ),
            ));
        }
        let id = NodeId::from_hex(text.lines().next().unwrap_or("")).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Identity::from_seed(id.0).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads the key file at `path` ([`Identity::load`]), creating it (mode 0600) with a new
    /// identity when absent. Returns the identity and whether it was created.
    pub fn load_or_create(path: &Path) -> io::Result<(Identity, bool)> {
        match Identity::load(path) {
            Ok(ident) => Ok((ident, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let ident = Identity::generate().map_err(io::Error::other)?;
                // create_new: never overwrite a key another process just wrote.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                writeln!(f, "{}", NodeId(ident.seed).hex())?;
                f.sync_all()?;
                Ok((ident, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The public key.
    pub fn id(&self) -> NodeId {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        NodeId(pk)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(msg).as_ref());
        s
    }

    /// The seed (for components that need their own key pair object, e.g. the node manager).
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// The X25519 private key for Noise: clamp(SHA-512(seed)[..32]).
    pub fn x25519_private(&self) -> [u8; 32] {
        let h = ring::digest::digest(&ring::digest::SHA512, &self.seed);
        let mut k = [0u8; 32];
        k.copy_from_slice(&h.as_ref()[..32]);
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        k
    }

    /// The X25519 public key, computed from the private one.
    pub fn x25519_public(&self) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(self.x25519_private()).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_from_both_ends_agrees() {
        for n in 0..20u8 {
            let id = Identity::from_seed([n; 32]).unwrap();
            assert_eq!(id.id().x25519_public(), Some(id.x25519_public()));
        }
    }

    #[test]
    fn key_file_created_once_with_0600_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("skyid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys").join("node.key");
        let (a, created) = Identity::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = Identity::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            Identity::load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
        std::fs::write(&path, "nonsense").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Identity::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn overlay_address_is_stable_and_in_the_prefix() {
        let id = Identity::from_seed([7; 32]).unwrap().id();
        let a = id.overlay_addr();
        assert_eq!(&a.octets()[..4], &OVERLAY_PREFIX);
        assert_eq!(a, id.overlay_addr());
        assert_ne!(a, Identity::from_seed([8; 32]).unwrap().id().overlay_addr());
        assert_eq!(NodeId::from_hex(&id.hex()).unwrap(), id);
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let a = Identity::from_seed([1; 32]).unwrap();
        let b = Identity::from_seed([2; 32]).unwrap();
        let s = a.sign(b"hello");
        assert!(a.id().verify(b"hello", &s));
        assert!(!a.id().verify(b"hellp", &s));
        assert!(!b.id().verify(b"hello", &s));
    }
}
