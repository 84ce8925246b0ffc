//! A node's name on the mesh: its Ed25519 public key.

use std::fmt;
use std::net::Ipv6Addr;

/// The overlay prefix: fd73:6b79::/32 ("sky").
pub const OVERLAY_PREFIX: [u8; 4] = [0xfd, 0x73, 0x6b, 0x79];

/// A node's public key: its name on the mesh. Printed as lowercase hex (`Debug`: the first
/// 12 digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<NodeId, String> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(format!("a public key is 64 hex digits, got {:?}", s));
        }
        // `from_str_radix` takes a sign: "+f" would pass, making two spellings of one key.
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not hex"));
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{s:?} is not hex"))?;
        }
        Ok(NodeId(k))
    }

    /// The overlay address: the prefix, then the first 96 bits of SHA-256("skywire overlay" ++ pk).
    pub fn overlay_addr(&self) -> Ipv6Addr {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"skywire overlay");
        ctx.update(&self.0);
        let h = ctx.finish();
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&OVERLAY_PREFIX);
        a[4..].copy_from_slice(&h.as_ref()[..12]);
        Ipv6Addr::from(a)
    }

    /// The first 4 bytes in hex (8 digits), for logs and tables.
    pub fn short(&self) -> String {
        self.hex()[..8].to_string()
    }
}

impl From<[u8; 32]> for NodeId {
    fn from(b: [u8; 32]) -> Self {
        NodeId(b)
    }
}

impl AsRef<[u8]> for NodeId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.hex()[..12])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_input_says_why() {
        let id = NodeId([0xab; 32]);
        assert_eq!(NodeId::from_hex(&id.hex()), Ok(id));
        assert_eq!(id.short(), "abababab");
        assert!(
            NodeId::from_hex("ab")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(
            NodeId::from_hex(&"zz".repeat(32))
                .unwrap_err()
                .contains("not hex")
        );
        assert!(NodeId::from_hex(&"é".repeat(32)).is_err());
        assert!(
            NodeId::from_hex(&"+f".repeat(32))
                .unwrap_err()
                .contains("not hex")
        );
    }

    #[test]
    fn overlay_address_is_under_the_prefix_and_differs_per_key() {
        let a = NodeId([1; 32]).overlay_addr();
        assert_eq!(&a.octets()[..4], &OVERLAY_PREFIX);
        assert_ne!(a, NodeId([2; 32]).overlay_addr());
    }
}
