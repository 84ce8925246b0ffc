//! Helpers for the crate's unit tests.

pub use netbase::netns::in_netns;
