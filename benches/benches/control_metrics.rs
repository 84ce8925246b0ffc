//! Rendering skywire-control's `/metrics` body from a snapshot of a busy router: 1000 routes
//! (of which `MAX_ROUTE_SERIES` get series, the rest summed), 32 links, the router's full
//! report and the dataplane's counters. What a scrape costs the metrics thread (the router's
//! loop only publishes the snapshot). Target: at most 2 ms.

#![forbid(unsafe_code)]

use controlplane::config::Config;
use controlplane::identity::Identity;
use controlplane::metrics::{LinkSample, Snapshot, render};
use controlplane::nm::{NodeManager, RouteRole, RouteState};
use controlplane::router::Router;
use criterion::{Criterion, criterion_group, criterion_main};
use dataplane::fibproto::Traffic;
use netbase::Prefix;
use netbase::metrics_http::Stats;
use std::hint::black_box;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

const ROUTES: u32 = 1000;
const LINKS: u8 = 32;

fn snapshot() -> Snapshot {
    let seed = [3; 32];
    let id = Identity::from_seed(seed).unwrap().id();
    let cfg = Config::parse(
        "key: k\nlisten: 127.0.0.1:7100\ndata_port: 7000\n",
        std::path::Path::new("/tmp/control.yaml"),
    )
    .unwrap();
    let nm = NodeManager::new(seed, controlplane::nm::Config::default(), 0);
    let router = Router::new(cfg, id, nm, Instant::now(), false);
    let traffic = |n: u64| Traffic {
        rx_pkts: n,
        rx_bytes: n * 1400,
        tx_pkts: n * 2,
        tx_bytes: n * 2800,
    };
    Snapshot {
        uptime: Duration::from_secs(86_400),
        dataplane_up: true,
        report: router.report(),
        links: (0..LINKS)
            .map(|i| LinkSample {
                peer: Identity::from_seed([i; 32]).unwrap().id(),
                rtt_us: Some(500 + u32::from(i)),
                traffic: traffic(u64::from(i) * 1_000_000),
            })
            .collect(),
        neighbours_down: vec![Identity::from_seed([200; 32]).unwrap().id()],
        routes: vec![
            (RouteRole::Primary, RouteState::Up, u64::from(ROUTES)),
            (RouteRole::Backup, RouteState::Up, 400),
            (RouteRole::Backup, RouteState::Pending, 7),
        ],
        route_traffic: (0..ROUTES)
            .map(|i| {
                let a =
                    Ipv6Addr::from(0xfd73_6b79_782d_0000_0000_0000_0000_0000u128 | u128::from(i));
                // Scattered volumes, so that choosing the busiest is real work.
                let n = u64::from(i.wrapping_mul(2_654_435_761) % 100_000);
                (Prefix::host(IpAddr::V6(a)), traffic(n))
            })
            .collect(),
        dataplane: dataplane::stats::NodeStats::new(4).report(),
        ..Snapshot::default()
    }
}

fn render_1000_routes(c: &mut Criterion) {
    let s = snapshot();
    let stats = Stats::default();
    let body = render(&s, &stats);
    assert_eq!(
        body.matches("skywire_control_route_bytes_total{").count(),
        controlplane::metrics::MAX_ROUTE_SERIES
    );
    assert!(body.contains("skywire_control_routes_omitted 900\n"));
    c.bench_function("control_metrics/render_1000_routes", |b| {
        b.iter(|| render(black_box(&s), &stats))
    });
}

criterion_group!(benches, render_1000_routes);
criterion_main!(benches);
