//! Planner benchmarks: one plan, and a season of patients over three months against the shipped
//! 6 escorts and 4 chairs, at several sizes to show how cost grows with patients.
//! Run: `cargo bench -p itinerary-core --bench planner`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itinerary_core::{Ledger, PlanRequest, plan};

fn one_plan(c: &mut Criterion) {
    let setup = support::setup();
    let req = PlanRequest::parse(&support::red_eye("2026-12-01"), &setup).unwrap();
    let ledger = Ledger::new(setup.rules.slot_minutes);
    assert!(plan(&setup, &req, support::now(), &ledger).is_ok());
    c.bench_function("plan/one single-infusion, MH71 red-eye", |b| b.iter(|| plan(&setup, black_box(&req), support::now(), &ledger)));
    let set = PlanRequest::parse(
        &{
            let mut r = support::red_eye("2027-01-05");
            r.protocol = "set-of-3".into();
            r.trip_mode = Some("trip-per-infusion".into());
            let d = support::date("2027-01-05");
            r.trips = (0..3)
                .map(|k| {
                    support::trip(
                        support::OUTBOUND[0],
                        d + chrono::Duration::days(14 * k),
                        support::RETURN[0],
                        d + chrono::Duration::days(14 * k + 3),
                    )
                })
                .collect();
            r
        },
        &setup,
    )
    .unwrap();
    assert!(plan(&setup, &set, support::now(), &ledger).is_ok());
    c.bench_function("plan/one set-of-3, three trips", |b| b.iter(|| plan(&setup, black_box(&set), support::now(), &ledger)));
}

fn season(c: &mut Criterion) {
    let setup = support::setup();
    let mut group = c.benchmark_group("season over three months, 6 escorts, 4 chairs");
    group.sample_size(10);
    for n in [125usize, 250, 500, 1000] {
        let reqs: Vec<PlanRequest> =
            support::season(n, support::date("2027-01-04"), 91, 7).iter().map(|r| PlanRequest::parse(r, &setup).unwrap()).collect();
        let run = || {
            let mut ledger = Ledger::new(setup.rules.slot_minutes);
            let mut planned = 0;
            for r in &reqs {
                if let Ok(p) = plan(&setup, r, support::now(), &ledger) {
                    ledger.book_plan(&p);
                    planned += 1;
                }
            }
            planned
        };
        eprintln!("season of {n}: {} planned, {} infeasible", run(), n - run());
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(run));
    }
    group.finish();
}

criterion_group!(benches, one_plan, season);
criterion_main!(benches);
