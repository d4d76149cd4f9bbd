//! The `InferenceQueue` actor driven directly (deterministic: no HTTP, no timing races on the
//! order of grants): fairness, bounds, deadlines, adaptive admission, the circuit breaker and
//! drain.

use std::time::Duration;

use gatehouse::actors::inference_queue::{InferenceQueueHandle, Outcome, QueueError, QueueSettings, WorkerSpec, WorkerStatus};
use gatehouse::domain::TenantId;
use gatehouse::scheduler::{Priority, QueueLimits};

use crate::helpers::eventually;

fn worker(id: &str, slots: u32) -> WorkerSpec {
    WorkerSpec { id: id.into(), base_url: format!("http://{id}"), api_key: None, slots, draining: false }
}

fn settings(max_per_tenant: usize, deadline_ms: u64) -> QueueSettings {
    QueueSettings {
        limits: QueueLimits { max_per_tenant, max_total: 10_000 },
        deadline: Duration::from_millis(deadline_ms),
        eject_for: Duration::from_millis(300),
        eject_after: 3,
        stats_window: Duration::from_secs(120),
        wait_target: None,
        batch: None,
    }
}

#[actix_web::test]
async fn a_light_tenant_gets_half_the_dispatches_against_a_tenant_sending_ten_times_more() {
    let q = InferenceQueueHandle::start(&actix_rt::Arbiter::current(), vec![worker("w1", 1)], settings(1000, 60_000));
    let (heavy, light) = (TenantId::generate(), TenantId::generate());
    // Occupy the only slot, then queue 50 heavy and 5 light requests.
    let first = q.acquire(heavy.clone(), 1, Priority::Normal, 1.0).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for i in 0..55 {
        let (tenant, name) = if i % 11 == 10 { (light.clone(), "light") } else { (heavy.clone(), "heavy") };
        let (q, tx) = (q.clone(), tx.clone());
        waiters.push(actix_rt::spawn(async move {
            let grant = q.acquire(tenant, 1, Priority::Normal, 1.0).await.unwrap();
            tx.send((name, grant)).unwrap();
        }));
        tokio::task::yield_now().await;
    }
    assert!(eventually(Duration::from_secs(10), || async { q.status().await.waiting == 55 }).await, "all 55 are queued");
    first.finish(Outcome::Success);
    let mut order = Vec::new();
    for _ in 0..10 {
        let (name, grant) = rx.recv().await.unwrap();
        order.push(name);
        grant.finish(Outcome::Success);
    }
    let light_share = order.iter().filter(|n| **n == "light").count();
    assert_eq!(light_share, 5, "while it has work waiting the light tenant gets half: {order:?}");
    for _ in 10..55 {
        rx.recv().await.unwrap().1.finish(Outcome::Success);
    }
}

#[actix_web::test]
async fn a_full_queue_refuses_at_once_and_a_deadline_expires_waiters() {
    let q = InferenceQueueHandle::start(&actix_rt::Arbiter::current(), vec![worker("w1", 1)], settings(1, 200));
    let t = TenantId::generate();
    let held = q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap();
    let waiting = actix_rt::spawn({
        let (q, t) = (q.clone(), t.clone());
        async move { q.acquire(t, 1, Priority::Normal, 1.0).await }
    });
    assert!(eventually(Duration::from_secs(1), || async { q.status().await.waiting == 1 }).await, "the second request waits");
    assert_eq!(q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap_err(), QueueError::TenantQueueFull);
    assert_eq!(waiting.await.unwrap().unwrap_err(), QueueError::DeadlineExceeded);
    drop(held);
    assert!(q.acquire(t, 1, Priority::Normal, 1.0).await.is_ok(), "the dropped grant returned its slot");
}

#[actix_web::test]
async fn the_circuit_breaker_ejects_a_failing_worker_and_recovers_it() {
    let q = InferenceQueueHandle::start(&actix_rt::Arbiter::current(), vec![worker("bad", 4), worker("good", 4)], settings(100, 2_000));
    let t = TenantId::generate();
    for _ in 0..3 {
        // Least outstanding work: with both idle, grants alternate; keep failing the bad one.
        let g = q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap();
        let outcome = if &*g.worker_id == "bad" { Outcome::WorkerFailure } else { Outcome::Success };
        g.finish(outcome);
        let g = q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap();
        let outcome = if &*g.worker_id == "bad" { Outcome::WorkerFailure } else { Outcome::Success };
        g.finish(outcome);
    }
    // The actor's mailbox is in order: the status is asked after the releases were sent.
    let status = q.status().await;
    assert!(status.workers.contains(&("bad".into(), WorkerStatus::Ejected, 0)), "{status:?}");
    for _ in 0..5 {
        let g = q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap();
        assert_eq!(&*g.worker_id, "good", "an ejected worker gets no traffic");
        g.finish(Outcome::Success);
    }
    // The rest period (300 ms) ends: half-open, one trial request may go. A health check that
    // finds the worker well restores it fully.
    let half_open = || async { q.status().await.workers.contains(&("bad".into(), WorkerStatus::HalfOpen, 0)) };
    assert!(eventually(Duration::from_secs(5), half_open).await, "the rest period ends");
    q.report_health("bad".into(), true);
    assert!(q.status().await.workers.contains(&("bad".into(), WorkerStatus::Healthy, 0)));
}

#[actix_web::test]
async fn a_draining_worker_finishes_in_flight_work_and_takes_no_more() {
    let q = InferenceQueueHandle::start(&actix_rt::Arbiter::current(), vec![worker("w1", 2)], settings(100, 150));
    let t = TenantId::generate();
    let in_flight = q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap();
    q.set_workers(vec![WorkerSpec { draining: true, ..worker("w1", 2) }]);
    assert_eq!(q.acquire(t.clone(), 1, Priority::Normal, 1.0).await.unwrap_err(), QueueError::DeadlineExceeded);
    assert_eq!(&*in_flight.worker_id, "w1");
    in_flight.finish(Outcome::Success);
    q.set_workers(vec![]);
    assert!(q.status().await.workers.is_empty(), "removed once idle");
}

#[actix_web::test]
async fn a_saturated_pool_holds_a_flooding_tenant_to_its_share_and_lifts_the_limit_when_it_drains() {
    let mut s = settings(1000, 60_000);
    s.wait_target = Some(Duration::from_millis(50));
    let q = InferenceQueueHandle::start(&actix_rt::Arbiter::current(), vec![worker("w1", 1)], s);
    let (heavy, light) = (TenantId::generate(), TenantId::generate());
    // The only slot is busy; 40 heavy requests and one light one wait.
    let busy = q.acquire(heavy.clone(), 1, Priority::Normal, 1.0).await.unwrap();
    let mut waiting = Vec::new();
    for i in 0..41 {
        let (q, tenant) = (q.clone(), if i == 20 { light.clone() } else { heavy.clone() });
        waiting.push(actix_rt::spawn(async move { q.acquire(tenant, 1, Priority::Normal, 1.0).await.map(|g| g.finish(Outcome::Success)) }));
    }
    assert!(eventually(Duration::from_secs(10), || async { q.status().await.waiting == 41 }).await);
    // Their wait passes the 50 ms target: the heavy tenant's limit falls by halves to its share.
    let held = eventually(Duration::from_secs(10), || async {
        let a = q.status().await.adaptive;
        a.saturated && a.limits == vec![(heavy.to_string(), 1.0)]
    })
    .await;
    assert!(held, "the heavy tenant is held to one waiting request: {:?}", q.status().await.adaptive);
    assert_eq!(q.acquire(heavy.clone(), 1, Priority::Normal, 1.0).await.unwrap_err(), QueueError::Throttled, "refused at once");
    let light_again = {
        let (q, light) = (q.clone(), light.clone());
        actix_rt::spawn(async move { q.acquire(light, 1, Priority::Normal, 1.0).await.map(|g| g.finish(Outcome::Success)) })
    };
    assert!(eventually(Duration::from_secs(10), || async { q.status().await.waiting == 42 }).await, "the light tenant still queues");
    // The slot frees: everything queued is served, and the limits go with the queue.
    busy.finish(Outcome::Success);
    for w in waiting.into_iter().chain([light_again]) {
        w.await.unwrap().unwrap();
    }
    let lifted = eventually(Duration::from_secs(10), || async { q.status().await.adaptive.limits.is_empty() }).await;
    assert!(lifted, "limits lifted: {:?}", q.status().await.adaptive);
    q.acquire(heavy, 1, Priority::Normal, 1.0).await.unwrap().finish(Outcome::Success);
}
