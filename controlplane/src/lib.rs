//! skywire-control: the controlplane of a Skywire router.
//!
//! - [`identity`]: the Ed25519 identity, its X25519 Noise key and overlay address.
//! - [`link`]: the Noise handshake that authenticates a neighbour and derives the data keys.

#![warn(missing_docs)]

pub mod identity;
pub mod link;
