//! Small builders shared by tests and benchmarks: shards from inline tables, keys, packets.

use crate::config::Static;
use crate::fib::FibCell;
use crate::shard::{HEADROOM, Shard};
use crate::stats::NodeStats;
use std::path::Path;
use std::sync::Arc;

/// A deterministic 32-byte key as hex, distinct per `n`.
pub fn key_hex(n: u8) -> String {
    (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(7).wrapping_add(n)))
        .collect()
}

/// A one-shard node from YAML `rules` and `routes` lines, sessions given as (id, peer_id,
/// tx key n, rx key n) and route keys as (id, key n). Panics on a bad table (fixtures only).
pub fn shard_with_keys(
    rules: &str,
    sessions: &[(u32, u32, u8, u8)],
    route_keys: &[(u64, u8)],
    routes: &str,
) -> Shard {
    let mut y = "node:\n  listen: 127.0.0.1:7000\nsessions:\n".to_string();
    for (id, peer_id, tx, rx) in sessions {
        y.push_str(&format!(
            "  - {{id: {id}, peer_id: {peer_id}, peer: \"127.0.0.1:7100\", tx_key: {}, rx_key: {}}}\n",
            key_hex(*tx),
            key_hex(*rx)
        ));
    }
    y.push_str("route_keys:\n");
    for (id, n) in route_keys {
        y.push_str(&format!("  - {{id: {id}, key: {}}}\n", key_hex(*n)));
    }
    y.push_str(&format!("rules:\n{rules}routes:\n{routes}"));
    match Static::parse(&y, Path::new("fixture.yaml"), 1) {
        Ok(st) => Shard::new(
            0,
            Arc::new(FibCell::new(st.fib)),
            Arc::new(NodeStats::new(1)),
        ),
        Err(e) => panic!("fixture table: {e}"),
    }
}

/// [`shard_with_keys`] with route keys 1 (key 101) and 2 (key 102): in the fixtures a route
/// from fd00::1 seals with 1 and one from fd00::2 or fd00::3 with 2, so each end's rules name
/// the other's.
pub fn shard(rules: &str, sessions: &[(u32, u32, u8, u8)], routes: &str) -> Shard {
    shard_with_keys(rules, sessions, &[(1, 101), (2, 102)], routes)
}

/// Writes an IPv6/UDP packet fd00::`src` -> fd00::`dst` with `payload` bytes at
/// `buf[HEADROOM..]`; returns its length.
pub fn v6_packet(buf: &mut [u8], src: u8, dst: u8, payload: usize) -> usize {
    let p = &mut buf[HEADROOM..HEADROOM + 40 + payload];
    p.fill(0);
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    p[6] = 17;
    p[8] = 0xfd;
    p[23] = src;
    p[24] = 0xfd;
    p[39] = dst;
    40 + payload
}

/// a (fd00::1) - r - b (fd00::3): a's route to fd00::3 enters label 200, r relays it to b
/// as label 201, b delivers.
pub fn three_hops() -> (Shard, Shard, Shard) {
    let a = shard(
        "",
        &[(1, 1, 1, 2)],
        "  - {prefix: fd00::3/128, session: 1, label: 200, key: 1}\n",
    );
    // The relay holds no route key.
    let r = shard_with_keys(
        "  - {session: 1, label: 200, forward: {session: 2, label: 201}}\n",
        &[(1, 1, 2, 1), (2, 1, 3, 4)],
        &[],
        "",
    );
    let b = shard(
        "  - {session: 1, label: 201, deliver: [fd00::1/128], key: 1}\n",
        &[(1, 2, 4, 3)],
        "",
    );
    (a, r, b)
}
