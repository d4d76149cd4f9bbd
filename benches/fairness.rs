//! Fairness of the `InferenceQueue` under saturation: a heavy tenant with 10× the clients of a
//! light one (closed loop, every client sends its next request as soon as one finishes), one
//! worker with 4 slots, 10 ms of simulated service per request. Reported beside FIFO (both
//! tenants sharing one queue key, which makes the same machinery first-come-first-served) and
//! beside the light tenant alone. Run with `cargo bench --bench fairness` (or ops/bench/fairness.sh).

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark harness: fail loudly

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::actors::inference_queue::{InferenceQueueHandle, Outcome, QueueSettings, WorkerSpec};
use gatehouse::domain::TenantId;
use gatehouse::scheduler::{Priority, QueueLimits};

const SLOTS: u32 = 4;
const SERVICE: Duration = Duration::from_millis(10);
const RUN: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Samples {
    dispatched: [u64; 2],
    waits: [Vec<f64>; 2],
}

/// Runs `clients` closed-loop clients per tenant (index 0 light, 1 heavy); `fifo` puts both
/// tenants under one queue key.
async fn scenario(clients: [usize; 2], fifo: bool) -> Samples {
    let queue = InferenceQueueHandle::start(
        &actix_rt::Arbiter::current(),
        vec![WorkerSpec { id: "w".into(), base_url: "http://sim".into(), api_key: None, slots: SLOTS, draining: false }],
        QueueSettings {
            limits: QueueLimits { max_per_tenant: 10_000, max_total: 10_000 },
            deadline: Duration::from_secs(60),
            eject_for: Duration::from_secs(10),
            eject_after: 3,
            stats_window: Duration::from_secs(120),
            batch: None,
        },
    );
    let tenants = [TenantId::generate(), TenantId::generate()];
    let shared = TenantId::generate();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let end = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for (index, count) in clients.iter().enumerate() {
        for _ in 0..*count {
            let (queue, samples) = (queue.clone(), samples.clone());
            let key = if fifo { shared.clone() } else { tenants[index].clone() };
            tasks.push(actix_rt::spawn(async move {
                while Instant::now() < end {
                    let grant = queue.acquire(key.clone(), 1, Priority::Normal, 1.0).await.unwrap();
                    {
                        let mut s = samples.lock().unwrap();
                        s.dispatched[index] += 1;
                        s.waits[index].push(grant.waited.as_secs_f64() * 1000.0);
                    }
                    tokio::time::sleep(SERVICE).await;
                    grant.finish(Outcome::Success);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(samples).ok().unwrap().into_inner().unwrap()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    actix_rt::System::new().block_on(async {
        let mut alone = scenario([4, 0], false).await;
        let mut fair = scenario([4, 40], false).await;
        let mut fifo = scenario([4, 40], true).await;
        println!(
            "light tenant: 4 clients; heavy tenant: 40 clients; 1 worker x {SLOTS} slots; {} ms service; {} s each\n",
            SERVICE.as_millis(),
            RUN.as_secs()
        );
        println!("| scheduler | light share of dispatches | light wait p50 / p99 ms | heavy wait p50 / p99 ms |");
        println!("|---|---|---|---|");
        for (name, s) in [("weighted fair (Gatehouse)", &mut fair), ("FIFO", &mut fifo)] {
            let share = s.dispatched[0] as f64 / (s.dispatched[0] + s.dispatched[1]).max(1) as f64;
            let (l50, l99) = (pct(&mut s.waits[0], 0.5), pct(&mut s.waits[0], 0.99));
            let (h50, h99) = (pct(&mut s.waits[1], 0.5), pct(&mut s.waits[1], 0.99));
            println!("| {name} | {:.1}% | {l50:.2} / {l99:.2} | {h50:.2} / {h99:.2} |", share * 100.0);
        }
        println!("| light tenant alone | 100% | {:.2} / {:.2} | - |", pct(&mut alone.waits[0], 0.5), pct(&mut alone.waits[0], 0.99));
    });
}
