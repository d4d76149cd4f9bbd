//! The edge's work on every request, in memory (target: the ban check ≤ 1 µs): the ban lookup
//! with 10,000 addresses banned, the platform deny list with 100 networks, and counting the
//! answer with 100,000 addresses tracked. Run with `cargo bench --bench edge`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark set-up: a failure should stop the run loudly

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::db::ip_rules::IpRule;
use gatehouse::domain::RuleAction;
use gatehouse::edge::detector::{Detector, now_ms};
use gatehouse::edge::lists::Lists;

fn addr(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000u32 + i).to_be_bytes())
}

fn setup() -> (Detector, Lists) {
    let detector = Detector::new(Duration::from_secs(60), [u64::MAX / 2; 3], 200_000);
    let now = now_ms();
    detector.replace_bans((0..10_000).map(|i| (addr(1_000_000 + i), now + 3_600_000)).collect::<HashMap<_, _>>());
    for i in 0..100_000 {
        detector.observe(addr(i), 200, now);
    }
    let rules: Vec<IpRule> = (0..100)
        .map(|i| IpRule {
            id: format!("ipr_{i}"),
            tenant_id: None,
            cidr: format!("198.{}.0.0/16", i),
            action: RuleAction::Deny,
            note: String::new(),
            created_by: "bench".into(),
            created_at: chrono::Utc::now(),
        })
        .collect();
    (detector, Lists::build(&rules, &[]))
}

fn edge(c: &mut Criterion) {
    let (detector, lists) = setup();
    let mut i = 0u32;
    c.bench_function("edge/ban check (10k banned) + platform deny list (100 networks)", |b| {
        b.iter(|| {
            i = (i + 1) % 100_000;
            let ip = addr(i);
            black_box(detector.banned(black_box(ip), now_ms()).is_some() || lists.platform_denies(ip))
        })
    });
    c.bench_function("edge/ban check alone (10k banned)", |b| {
        b.iter(|| {
            i = (i + 1) % 100_000;
            black_box(detector.banned(black_box(addr(i)), now_ms()))
        })
    });
    c.bench_function("edge/count an answer (100k addresses tracked)", |b| {
        b.iter(|| {
            i = (i + 1) % 100_000;
            black_box(detector.observe(black_box(addr(i)), 200, now_ms()))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = edge
}
criterion_main!(benches);
