//! 100-node simulation: convergence, routes walked hop by hop in both
//! directions, link failures and re-convergence.

#![forbid(unsafe_code)]

#[path = "nmsim/mod.rs"]
mod common;

#[test]
fn sim_100_nodes() {
    let f = common::scenario(100, 150, 1, true);
    println!("{f:#?}");
    assert!(
        f.lsdb_converge_ms < 2_000,
        "LSDB convergence {} ms",
        f.lsdb_converge_ms
    );
    assert!(f.routes_up_ms < 1_000);
    for r in &f.fail_rounds {
        assert!(
            r.reconverge_ms < 2_000,
            "re-convergence {} ms",
            r.reconverge_ms
        );
    }
    assert_eq!(f.rule_conflicts, 0, "label collision");
    assert!(f.backups_ready > 0);
}

#[test]
fn sim_60_nodes_other_seed() {
    let f = common::scenario(60, 80, 99, false);
    assert_eq!(f.rule_conflicts, 0);
    for r in &f.fail_rounds {
        assert!(
            r.reconverge_ms < 2_000,
            "re-convergence {} ms",
            r.reconverge_ms
        );
    }
}
