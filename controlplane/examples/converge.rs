//! Convergence figures: `cargo run --release --example converge -- 100 [pairs] [seed]`

#![forbid(unsafe_code)]
#[path = "../tests/nmsim/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let pairs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let seed: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    let f = common::scenario(n, pairs, seed, true);
    let c = &f.conv_msgs;
    println!("== {} nodes, {} links (seed {seed})", f.nodes, f.links);
    println!(
        "LSDB convergence: {} ms simulated; adverts sent {} ({:.1}/node), acks {} ({:.1}/node)",
        f.lsdb_converge_ms,
        c.adverts,
        c.adverts as f64 / n as f64,
        c.acks,
        c.acks as f64 / n as f64
    );
    let r = &f.route_msgs;
    println!(
        "Routes: {} pairs up (walked both ways) in {} ms; {} backups ready; setups {} setup_acks {} keepalives {} teardowns {}",
        f.pairs, f.routes_up_ms, f.backups_ready, r.setups, r.setup_acks, r.keepalives, r.teardowns
    );
    for (i, x) in f.fail_rounds.iter().enumerate() {
        println!(
            "Failure round {}: {} link(s) down, {} pairs affected, all working again in {} ms (failovers {}, rebuilds {})",
            i + 1,
            x.links_failed,
            x.affected_pairs,
            x.reconverge_ms,
            x.failovers,
            x.rebuilds
        );
    }
    println!(
        "label collisions {}, timers at/before now {}, wall {} ms",
        f.rule_conflicts, f.busy_timers, f.wall_ms
    );
}
