//! Latency-weighted shortest paths over the LSDB.
//!
//! * Two-way check: the link u->v is used only if u's advert lists v AND
//!   v's advert lists u; the cost is the larger of the two claims (u's cost
//!   towards v, v's towards u), so one end cannot make a link look cheap
//!   (a cost-0 advert attracted routes before).
//! * Policy: a node whose advert has `no_transit` or `drain` is never
//!   expanded, i.e. it can be the source or destination but never an
//!   intermediate hop.
//! * Backup: node-disjoint from the primary (the primary's intermediate
//!   nodes are removed; for a direct one-hop primary, the direct link is).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::lsdb::Lsdb;
use super::types::NodeId;
use super::wire::MAX_PATH;

/// Restrictions on a path computation.
#[derive(Default)]
pub struct Constraints<'a> {
    /// Nodes that may not appear on the path.
    pub exclude_nodes: BTreeSet<NodeId>,
    /// A link (either direction) that may not be used.
    pub exclude_edge: Option<(NodeId, NodeId)>,
    /// If set, the first hop must satisfy it (e.g. "neighbour is locally up").
    pub first_hop_ok: Option<&'a dyn Fn(&NodeId) -> bool>,
}

/// Dijkstra from `src` to `dst`. Returns the node list (both ends
/// included) and its total cost. Ties are broken by node id, so results
/// are deterministic.
pub fn shortest_path(
    db: &Lsdb,
    src: &NodeId,
    dst: &NodeId,
    c: &Constraints<'_>,
) -> Option<(Vec<NodeId>, u64)> {
    if src == dst || c.exclude_nodes.contains(dst) {
        return None;
    }
    let mut dist: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut prev: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut heap = BinaryHeap::new();
    dist.insert(*src, 0);
    heap.push(Reverse((0u64, *src)));
    let mut found = false;
    while let Some(Reverse((d, u))) = heap.pop() {
        if dist.get(&u).is_some_and(|&best| d > best) {
            continue;
        }
        if u == *dst {
            found = true;
            break;
        }
        let Some(adv) = db.advert(&u) else { continue };
        if u != *src && !adv.flags.transit_ok() {
            continue;
        }
        for (v, cost) in &adv.links {
            if c.exclude_nodes.contains(v) || *v == *src {
                continue;
            }
            if let Some((a, b)) = c.exclude_edge
                && ((a == u && b == *v) || (a == *v && b == u))
            {
                continue;
            }
            if u == *src
                && let Some(f) = c.first_hop_ok
                && !f(v)
            {
                continue;
            }
            // Two-way check: v must list u too; both ends' claims count.
            let Some(back) = db.advert(v).and_then(|a| a.cost_to(&u)) else {
                continue;
            };
            let nd = d + u64::from((*cost).max(back));
            if dist.get(v).is_none_or(|&old| nd < old) {
                dist.insert(*v, nd);
                prev.insert(*v, u);
                heap.push(Reverse((nd, *v)));
            }
        }
    }
    if !found {
        return None;
    }
    let mut path = vec![*dst];
    let mut cur = *dst;
    while cur != *src {
        cur = *prev.get(&cur)?;
        path.push(cur);
        if path.len() > MAX_PATH {
            return None;
        }
    }
    path.reverse();
    Some((path, *dist.get(dst)?))
}

/// A node-disjoint alternative to `primary` (same ends), if one exists.
pub fn disjoint_backup(
    db: &Lsdb,
    primary: &[NodeId],
    first_hop_ok: Option<&dyn Fn(&NodeId) -> bool>,
) -> Option<(Vec<NodeId>, u64)> {
    let (src, dst) = (primary.first()?, primary.last()?);
    let mut c = Constraints {
        first_hop_ok,
        ..Default::default()
    };
    if primary.len() <= 2 {
        c.exclude_edge = Some((*src, *dst));
    } else {
        c.exclude_nodes = primary[1..primary.len() - 1].iter().copied().collect();
    }
    shortest_path(db, src, dst, &c)
}

/// Health of an existing path against the current LSDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathStatus {
    Ok,
    /// Some link is no longer reported by both ends (or a node vanished).
    Broken,
    /// An intermediate hop is draining: move the route away.
    Drained,
}

pub fn path_status(db: &Lsdb, path: &[NodeId]) -> PathStatus {
    for w in path.windows(2) {
        if db.two_way_cost(&w[0], &w[1]).is_none() {
            return PathStatus::Broken;
        }
    }
    if path.len() > 2 {
        for n in &path[1..path.len() - 1] {
            if db.advert(n).is_some_and(|a| a.flags.drain) {
                return PathStatus::Drained;
            }
        }
    }
    PathStatus::Ok
}

/// Total cost of `path` under the current LSDB, if intact.
pub fn path_cost(db: &Lsdb, path: &[NodeId]) -> Option<u64> {
    path.windows(2).try_fold(0u64, |acc, w| {
        db.two_way_cost(&w[0], &w[1]).map(|c| acc + u64::from(c))
    })
}

#[cfg(test)]
mod tests {
    use super::super::advert::{Advert, AdvertFlags, keypair_from_seed};
    use super::super::wire::Msg;
    use super::*;

    /// Build an LSDB from an undirected edge list over nodes 0..n.
    fn db(n: u8, edges: &[(u8, u8, u32)], flags: &[(u8, AdvertFlags)]) -> (Lsdb, Vec<NodeId>) {
        let keys: Vec<_> = (0..n).map(|i| keypair_from_seed(&[i + 1; 32])).collect();
        let ids: Vec<NodeId> = keys.iter().map(|k| k.1).collect();
        let mut db = Lsdb::new(1000, 1_000_000);
        for i in 0..n {
            let links: Vec<(NodeId, u32)> = edges
                .iter()
                .filter_map(|&(a, b, c)| {
                    if a == i {
                        Some((ids[b as usize], c))
                    } else if b == i {
                        Some((ids[a as usize], c))
                    } else {
                        None
                    }
                })
                .collect();
            let f = flags
                .iter()
                .find(|(j, _)| *j == i)
                .map(|x| x.1)
                .unwrap_or_default();
            let k = &keys[i as usize];
            let a = Advert::new_signed(&k.0, k.1, 1, 1_000_000, links, f, &[]);
            let m = Msg::Advert(a.clone()).encode();
            db.offer(0, a, m).unwrap();
        }
        (db, ids)
    }

    fn idx(ids: &[NodeId], p: &[NodeId]) -> Vec<usize> {
        p.iter()
            .map(|n| ids.iter().position(|x| x == n).unwrap())
            .collect()
    }

    //   0 -1- 1 -1- 2
    //   |           |
    //   5 --- 3 --- 5(cost)   (0-3 cost 5, 3-2 cost 5)
    const SQUARE: &[(u8, u8, u32)] = &[(0, 1, 1), (1, 2, 1), (0, 3, 5), (3, 2, 5)];

    /// 0 -35- 1 -35- 2, and 0 -50- 3 -50- 2 as 0 and 2 measure it; 3 claims 0 both ways.
    #[test]
    fn a_node_claiming_cost_zero_does_not_attract_routes() {
        let (mut db, ids) = db(4, &[(0, 1, 35), (1, 2, 35), (0, 3, 50), (3, 2, 50)], &[]);
        let k = keypair_from_seed(&[4; 32]);
        let liar = Advert::new_signed(
            &k.0,
            k.1,
            2,
            1_000_000,
            vec![(ids[0], 0), (ids[2], 0)],
            AdvertFlags::default(),
            &[],
        );
        let m = Msg::Advert(liar.clone()).encode();
        db.offer(0, liar, m).unwrap();
        let (p, c) = shortest_path(&db, &ids[0], &ids[2], &Constraints::default()).unwrap();
        // Through 3 it would cost 50 + 0 by the liar's word; both ends' claims make it 100.
        assert_eq!(idx(&ids, &p), vec![0, 1, 2]);
        assert_eq!(c, 70);
        assert_eq!(db.two_way_cost(&ids[3], &ids[2]), Some(50));
    }

    #[test]
    fn shortest_and_backup() {
        let (db, ids) = db(4, SQUARE, &[]);
        let (p, c) = shortest_path(&db, &ids[0], &ids[2], &Constraints::default()).unwrap();
        assert_eq!(idx(&ids, &p), vec![0, 1, 2]);
        assert_eq!(c, 2);
        let (b, bc) = disjoint_backup(&db, &p, None).unwrap();
        assert_eq!(idx(&ids, &b), vec![0, 3, 2]);
        assert_eq!(bc, 10);
        // direct link primary: backup avoids the link
        let (p1, _) = shortest_path(&db, &ids[0], &ids[1], &Constraints::default()).unwrap();
        assert_eq!(idx(&ids, &p1), vec![0, 1]);
        let (b1, _) = disjoint_backup(&db, &p1, None).unwrap();
        assert_eq!(idx(&ids, &b1), vec![0, 3, 2, 1]);
    }

    #[test]
    fn policy_no_transit_and_drain() {
        for f in [
            AdvertFlags {
                no_transit: true,
                drain: false,
            },
            AdvertFlags {
                no_transit: false,
                drain: true,
            },
        ] {
            let (db, ids) = db(4, SQUARE, &[(1, f)]);
            let (p, _) = shortest_path(&db, &ids[0], &ids[2], &Constraints::default()).unwrap();
            assert_eq!(idx(&ids, &p), vec![0, 3, 2], "{f:?}");
            // still reachable as a destination
            let (p, _) = shortest_path(&db, &ids[0], &ids[1], &Constraints::default()).unwrap();
            assert_eq!(idx(&ids, &p), vec![0, 1]);
            if f.drain {
                let old = vec![ids[0], ids[1], ids[2]];
                assert_eq!(path_status(&db, &old), PathStatus::Drained);
            }
        }
    }

    #[test]
    fn two_way_required() {
        // 1 lists 2 but 2 does not list 1 (half link): 0->2 must go via 3.
        let (mut d, ids) = db(4, SQUARE, &[]);
        let k = keypair_from_seed(&[3; 32]); // node 2
        let a = Advert::new_signed(
            &k.0,
            k.1,
            2,
            1_000_000,
            vec![(ids[3], 5)],
            AdvertFlags::default(),
            &[],
        );
        let m = Msg::Advert(a.clone()).encode();
        d.offer(1, a, m).unwrap();
        let (p, _) = shortest_path(&d, &ids[0], &ids[2], &Constraints::default()).unwrap();
        assert_eq!(idx(&ids, &p), vec![0, 3, 2]);
        assert_eq!(
            path_status(&d, &[ids[0], ids[1], ids[2]]),
            PathStatus::Broken
        );
    }

    #[test]
    fn no_disjoint_backup_on_a_line() {
        let (db, ids) = db(3, &[(0, 1, 1), (1, 2, 1)], &[]);
        let (p, _) = shortest_path(&db, &ids[0], &ids[2], &Constraints::default()).unwrap();
        assert!(disjoint_backup(&db, &p, None).is_none());
    }

    #[test]
    fn first_hop_filter() {
        let (db, ids) = db(4, SQUARE, &[]);
        let one = ids[1];
        let f = move |n: &NodeId| *n != one;
        let c = Constraints {
            first_hop_ok: Some(&f),
            ..Default::default()
        };
        let (p, _) = shortest_path(&db, &ids[0], &ids[2], &c).unwrap();
        assert_eq!(idx(&ids, &p), vec![0, 3, 2]);
    }
}
