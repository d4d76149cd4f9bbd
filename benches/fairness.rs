//! Fairness of the `InferenceQueue` under saturation: a heavy tenant with 10× the clients of a
//! light one (closed loop, every client sends its next request as soon as one finishes), one
//! worker with 4 slots, 10 ms of simulated service per request. Reported beside FIFO (both
//! tenants sharing one queue key, which makes the same machinery first-come-first-served) and
//! beside the light tenant alone.
//!
//! Then adaptive admission under 3× overload, open loop (requests arrive at a fixed rate whatever
//! happens to earlier ones): the heavy tenant sends 2.85× the pool's capacity (as measured by the
//! saturated closed-loop run) and the light one 0.15×, with adaptive admission off and on (target 500 ms). Reported: queue-wait p99 against the
//! target, completed throughput against capacity, what the light tenant got, and how long after
//! the load stops the limits are lifted. Run with `cargo bench --bench fairness` (or
//! ops/bench/fairness.sh).

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark harness: fail loudly

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::actors::inference_queue::{InferenceQueueHandle, Outcome, QueueError, QueueSettings, WorkerSpec};
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
    let queue = pool(Duration::from_secs(60), None);
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

/// One worker with `SLOTS` slots.
fn pool(deadline: Duration, wait_target: Option<Duration>) -> InferenceQueueHandle {
    InferenceQueueHandle::start(
        &actix_rt::Arbiter::current(),
        vec![WorkerSpec { id: "w".into(), base_url: "http://sim".into(), api_key: None, slots: SLOTS, draining: false }],
        QueueSettings {
            limits: QueueLimits { max_per_tenant: 10_000, max_total: 20_000 },
            deadline,
            eject_for: Duration::from_secs(10),
            eject_after: 3,
            stats_window: Duration::from_secs(120),
            wait_target,
            batch: None,
        },
    )
}

const OVERLOAD_RUN: Duration = Duration::from_secs(5);
const TARGET: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Overload {
    sent: [u64; 2],
    /// Granted and served within the load window.
    completed_in_run: [u64; 2],
    granted: [u64; 2],
    refused: [u64; 2],
    expired: [u64; 2],
    waits: Vec<f64>,
    /// Seconds from the end of the load until no tenant is held back (adaptive only).
    recovery: Option<f64>,
}

/// Open loop: each tenant's requests arrive at a fixed rate for `OVERLOAD_RUN`.
async fn overload(rates: [f64; 2], wait_target: Option<Duration>) -> Overload {
    let queue = pool(Duration::from_secs(30), wait_target);
    let tenants = [TenantId::generate(), TenantId::generate()];
    let out = Arc::new(Mutex::new(Overload::default()));
    let start = Instant::now();
    let end = start + OVERLOAD_RUN;
    let mut senders = Vec::new();
    for (index, rate) in rates.iter().enumerate() {
        let (queue, out, tenant, rate) = (queue.clone(), out.clone(), tenants[index].clone(), *rate);
        senders.push(actix_rt::spawn(async move {
            let mut requests = Vec::new();
            let mut sent = 0u64;
            while Instant::now() < end {
                // Catch up to the schedule (timers are coarser than the arrival interval).
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                while sent < due {
                    sent += 1;
                    let (queue, out, tenant) = (queue.clone(), out.clone(), tenant.clone());
                    requests.push(actix_rt::spawn(async move {
                        match queue.acquire(tenant, 1, Priority::Normal, 1.0).await {
                            Ok(grant) => {
                                let waited = grant.waited.as_secs_f64() * 1000.0;
                                tokio::time::sleep(SERVICE).await;
                                let done = Instant::now();
                                grant.finish(Outcome::Success);
                                let mut o = out.lock().unwrap();
                                o.granted[index] += 1;
                                o.waits.push(waited);
                                if done <= end {
                                    o.completed_in_run[index] += 1;
                                }
                            }
                            Err(QueueError::Throttled | QueueError::TenantQueueFull | QueueError::QueueFull) => {
                                out.lock().unwrap().refused[index] += 1
                            }
                            Err(_) => out.lock().unwrap().expired[index] += 1,
                        }
                    }));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            out.lock().unwrap().sent[index] = sent;
            requests
        }));
    }
    let mut requests = Vec::new();
    for s in senders {
        requests.extend(s.await.unwrap());
    }
    if wait_target.is_some() {
        let stopped = Instant::now();
        while !queue.status().await.adaptive.limits.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.lock().unwrap().recovery = Some(stopped.elapsed().as_secs_f64());
    }
    for r in requests {
        r.await.unwrap();
    }
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
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

        // The pool's real capacity: what the saturated closed-loop run completed per second
        // (a little under slots / service time, since timers overshoot).
        let capacity = (fair.dispatched[0] + fair.dispatched[1]) as f64 / RUN.as_secs_f64();
        let rates = [capacity * 0.15, capacity * 2.85];
        println!(
            "\nadaptive admission, 3x overload (open loop {:.0} + {:.0} requests/s against a capacity of {capacity:.0}/s; \
             target {} ms; {} s of load; queue deadline 30 s)\n",
            rates[0],
            rates[1],
            TARGET.as_millis(),
            OVERLOAD_RUN.as_secs()
        );
        println!(
            "| adaptive admission | queue-wait p50 / p99 ms (target {}) | completed in the load window vs capacity | \
             light tenant: served / sent, share of completions | heavy tenant: served / refused at once / expired | limits lifted after the load |",
            TARGET.as_millis()
        );
        println!("|---|---|---|---|---|---|");
        for (name, target) in [("off", None), ("on", Some(TARGET))] {
            let mut o = overload(rates, target).await;
            let (p50, p99) = (pct(&mut o.waits, 0.5), pct(&mut o.waits, 0.99));
            let completed: u64 = o.completed_in_run.iter().sum();
            let of_capacity = completed as f64 / (capacity * OVERLOAD_RUN.as_secs_f64());
            let light_share = o.completed_in_run[0] as f64 / completed.max(1) as f64;
            let recovery = o.recovery.map_or("-".to_owned(), |s| format!("{:.0} ms", s * 1000.0));
            println!(
                "| {name} | {p50:.0} / {p99:.0} | {:.1}% | {} / {} ({:.1}% of completions) | {} / {} / {} | {recovery} |",
                of_capacity * 100.0,
                o.granted[0],
                o.sent[0],
                light_share * 100.0,
                o.granted[1],
                o.refused[1],
                o.expired[1],
            );
        }
    });
}
