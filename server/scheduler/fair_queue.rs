//! Start-time fair queuing across tenants (Goyal et al., SFQ), at tenant granularity:
//!
//! - every tenant with waiting work has a virtual start tag `S = max(V, F_last)`;
//! - dispatch takes the tenant with the smallest `S` (ties: the earlier arrival), serves its
//!   highest-priority oldest job, then sets `F_last = S + cost / weight` and `V = S`;
//! - so over any busy period each backlogged tenant receives service in proportion to its
//!   weight, whatever the others offer, and a tenant that was idle re-enters at `V` (no banked
//!   credit, no starvation of others).
//!
//! Cost is the job's estimated size (tokens for LLM jobs, audio seconds for aligner jobs).
//! Priority classes order jobs *within* a tenant only, so a tenant cannot buy a larger share by
//! marking everything urgent. Bounds per tenant and in total make a full queue refuse at once
//! (the caller answers 429); deadlines expire jobs that waited too long (the caller answers 503).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Within-tenant priority: `High` jobs of a tenant go before its `Normal` ones, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    High = 0,
    Normal = 1,
    Low = 2,
}

const CLASSES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_per_tenant: usize,
    pub max_total: usize,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Queued,
    TenantFull,
    GlobalFull,
}

/// A job taken out of the queue: by dispatch, or because its deadline passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued<K, T> {
    pub tenant: K,
    pub item: T,
    pub cost: f64,
    pub priority: Priority,
    pub enqueued_at: Instant,
    pub deadline: Instant,
    /// Arrival order, for deterministic tie-breaking.
    seq: u64,
}

impl<K, T> Queued<K, T> {
    pub fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.enqueued_at)
    }
}

struct TenantQueue<K, T> {
    weight: f64,
    last_finish: f64,
    classes: [VecDeque<Queued<K, T>>; CLASSES],
    len: usize,
}

impl<K, T> TenantQueue<K, T> {
    fn head_seq(&self) -> Option<u64> {
        self.classes.iter().filter_map(|c| c.front()).map(|q| q.seq).min()
    }
}

pub struct FairQueue<K, T> {
    limits: QueueLimits,
    virtual_time: f64,
    tenants: HashMap<K, TenantQueue<K, T>>,
    total: usize,
    next_seq: u64,
}

impl<K: Clone + Eq + Hash, T> FairQueue<K, T> {
    pub fn new(limits: QueueLimits) -> Self {
        FairQueue { limits, virtual_time: 0.0, tenants: HashMap::new(), total: 0, next_seq: 0 }
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Jobs a tenant has waiting.
    pub fn tenant_len(&self, tenant: &K) -> usize {
        self.tenants.get(tenant).map_or(0, |t| t.len)
    }

    /// Waiting jobs per tenant (for queue-depth metrics).
    pub fn depths(&self) -> impl Iterator<Item = (&K, usize)> {
        self.tenants.iter().map(|(k, t)| (k, t.len))
    }

    /// Queues a job. `weight` (≥ 1) comes from the tenant's plan and is refreshed on every call,
    /// so a plan change applies to the tenant's next job.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        tenant: K,
        weight: u32,
        priority: Priority,
        cost: f64,
        item: T,
        now: Instant,
        deadline: Instant,
    ) -> Result<(), (Admission, T)> {
        if self.total >= self.limits.max_total {
            return Err((Admission::GlobalFull, item));
        }
        if self.tenant_len(&tenant) >= self.limits.max_per_tenant {
            return Err((Admission::TenantFull, item));
        }
        let v = self.virtual_time;
        let queue = self.tenants.entry(tenant.clone()).or_insert_with(|| TenantQueue {
            weight: 1.0,
            last_finish: v,
            classes: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            len: 0,
        });
        queue.weight = f64::from(weight.max(1));
        queue.classes[priority as usize].push_back(Queued {
            tenant,
            item,
            cost: cost.max(f64::MIN_POSITIVE),
            priority,
            enqueued_at: now,
            deadline,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        queue.len += 1;
        self.total += 1;
        Ok(())
    }

    /// The next job by fair share, or None when empty. Expired jobs are not returned here;
    /// take them with `expire` first.
    pub fn pop(&mut self) -> Option<Queued<K, T>> {
        let v = self.virtual_time;
        let tenant = self
            .tenants
            .iter()
            .filter(|(_, q)| q.len > 0)
            .map(|(k, q)| (k, v.max(q.last_finish), q.head_seq()))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)))
            .map(|(k, start, _)| (k.clone(), start))?;
        let (key, start) = tenant;
        let class = self.tenants.get(&key)?.classes.iter().position(|c| !c.is_empty())?;
        self.take(&key, start, class, 0)
    }

    /// Removes job `index` of `class` from `key`'s queue and charges the tenant for it.
    fn take(&mut self, key: &K, start: f64, class: usize, index: usize) -> Option<Queued<K, T>> {
        let queue = self.tenants.get_mut(key)?;
        let job = queue.classes[class].remove(index)?;
        queue.len -= 1;
        queue.last_finish = start + job.cost / queue.weight;
        self.virtual_time = start;
        self.total -= 1;
        // Forget idle tenants once their share is spent: they re-enter at the virtual time.
        let v = self.virtual_time;
        self.tenants.retain(|_, q| q.len > 0 || q.last_finish > v);
        Some(job)
    }

    /// The next job by fair share among the jobs `accept` takes: the tenant with the smallest
    /// start tag that has an acceptable job gives its first acceptable job (in priority order).
    /// Used to fill a batch with jobs that fit it; the accounting is the same as `pop`'s.
    pub fn pop_where(&mut self, accept: impl Fn(&T) -> bool) -> Option<Queued<K, T>> {
        let v = self.virtual_time;
        let (key, start, class, index) = self
            .tenants
            .iter()
            .filter(|(_, q)| q.len > 0)
            .filter_map(|(k, q)| {
                let (class, index, seq) = q
                    .classes
                    .iter()
                    .enumerate()
                    .find_map(|(c, jobs)| jobs.iter().position(|j| accept(&j.item)).map(|i| (c, i, jobs[i].seq)))?;
                Some((k, v.max(q.last_finish), class, index, seq))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.4.cmp(&b.4)))
            .map(|(k, start, class, index, _)| (k.clone(), start, class, index))?;
        self.take(&key, start, class, index)
    }

    /// When the longest-waiting job was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.tenants.values().flat_map(|q| q.classes.iter()).filter_map(|c| c.front()).map(|q| q.enqueued_at).min()
    }

    /// Iterates over every waiting job (any order).
    pub fn iter(&self) -> impl Iterator<Item = &Queued<K, T>> {
        self.tenants.values().flat_map(|q| q.classes.iter()).flat_map(|c| c.iter())
    }

    /// Removes and returns every job whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Queued<K, T>> {
        let mut expired = Vec::new();
        for queue in self.tenants.values_mut() {
            for class in queue.classes.iter_mut() {
                let mut kept = VecDeque::with_capacity(class.len());
                for job in class.drain(..) {
                    if job.deadline <= now { expired.push(job) } else { kept.push_back(job) }
                }
                *class = kept;
            }
            queue.len = queue.classes.iter().map(VecDeque::len).sum();
        }
        self.total -= expired.len();
        expired
    }

    /// Removes a job that is no longer wanted (the client went away). Returns it if found.
    pub fn remove(&mut self, tenant: &K, matches: impl Fn(&T) -> bool) -> Option<Queued<K, T>> {
        let queue = self.tenants.get_mut(tenant)?;
        for class in queue.classes.iter_mut() {
            if let Some(i) = class.iter().position(|q| matches(&q.item)) {
                let job = class.remove(i)?;
                queue.len -= 1;
                self.total -= 1;
                return Some(job);
            }
        }
        None
    }

    /// The earliest deadline among waiting jobs (to arm a timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tenants.values().flat_map(|q| q.classes.iter()).flat_map(|c| c.iter()).map(|q| q.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits { max_per_tenant: 10_000, max_total: 100_000 };

    fn far(now: Instant) -> Instant {
        now + Duration::from_secs(3600)
    }

    /// Serves `n` jobs from a queue kept saturated by both tenants and counts dispatches.
    fn share(weights: (u32, u32), offered: (usize, usize), costs: (f64, f64), n: usize) -> (usize, usize) {
        let now = Instant::now();
        let mut q = FairQueue::new(LIMITS);
        let (mut a, mut b) = (0, 0);
        for i in 0..offered.0 {
            q.push("a", weights.0, Priority::Normal, costs.0, i, now, far(now)).unwrap();
        }
        for i in 0..offered.1 {
            q.push("b", weights.1, Priority::Normal, costs.1, i, now, far(now)).unwrap();
        }
        for _ in 0..n {
            match q.pop().unwrap().tenant {
                "a" => a += 1,
                _ => b += 1,
            }
        }
        (a, b)
    }

    #[test]
    fn equal_weights_share_equally_even_when_one_tenant_offers_ten_times_more() {
        let (heavy, light) = share((1, 1), (1000, 100), (1.0, 1.0), 200);
        assert_eq!((heavy, light), (100, 100), "the light tenant gets half while it has work waiting");
    }

    #[test]
    fn weights_divide_the_service() {
        let (a, b) = share((3, 1), (1000, 1000), (1.0, 1.0), 400);
        assert_eq!((a, b), (300, 100));
    }

    #[test]
    fn cost_counts_not_job_count() {
        // Tenant a sends jobs 4x as large: it gets a quarter as many dispatches.
        let (a, b) = share((1, 1), (1000, 1000), (400.0, 100.0), 500);
        assert_eq!((a, b), (100, 400));
    }

    #[test]
    fn an_idle_tenant_banks_no_credit() {
        let now = Instant::now();
        let mut q = FairQueue::new(LIMITS);
        for i in 0..100 {
            q.push("a", 1, Priority::Normal, 1.0, i, now, far(now)).unwrap();
        }
        for _ in 0..50 {
            q.pop();
        }
        // b arrives late: it shares from now on, it does not get 50 jobs in a row.
        for i in 0..100 {
            q.push("b", 1, Priority::Normal, 1.0, i, now, far(now)).unwrap();
        }
        let next: Vec<&str> = (0..10).map(|_| q.pop().unwrap().tenant).collect();
        assert_eq!(next.iter().filter(|t| **t == "b").count(), 5, "{next:?}");
    }

    #[test]
    fn priorities_order_jobs_within_a_tenant_only() {
        let now = Instant::now();
        let mut q = FairQueue::new(LIMITS);
        q.push("a", 1, Priority::Low, 1.0, "a-low", now, far(now)).unwrap();
        q.push("a", 1, Priority::High, 1.0, "a-high", now, far(now)).unwrap();
        for i in 0..4 {
            q.push("b", 1, Priority::Normal, 1.0, ["b0", "b1", "b2", "b3"][i], now, far(now)).unwrap();
        }
        let order: Vec<&str> = (0..6).map(|_| q.pop().unwrap().item).collect();
        assert_eq!(order[0], "a-high", "{order:?}");
        assert_eq!(order.iter().position(|x| *x == "a-low"), Some(2), "a still gets only its fair turn: {order:?}");
    }

    #[test]
    fn bounds_refuse_at_once() {
        let now = Instant::now();
        let mut q = FairQueue::new(QueueLimits { max_per_tenant: 2, max_total: 3 });
        q.push("a", 1, Priority::Normal, 1.0, 1, now, far(now)).unwrap();
        q.push("a", 1, Priority::Normal, 1.0, 2, now, far(now)).unwrap();
        assert_eq!(q.push("a", 1, Priority::Normal, 1.0, 3, now, far(now)).unwrap_err(), (Admission::TenantFull, 3));
        q.push("b", 1, Priority::Normal, 1.0, 4, now, far(now)).unwrap();
        assert_eq!(q.push("c", 1, Priority::Normal, 1.0, 5, now, far(now)).unwrap_err(), (Admission::GlobalFull, 5));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn pop_where_keeps_fair_order_among_acceptable_jobs() {
        let now = Instant::now();
        let mut q: FairQueue<&str, u32> = FairQueue::new(LIMITS);
        // a: sizes 10, 1, 1; b: sizes 1, 1. Only size-1 jobs are acceptable.
        for (tenant, size) in [("a", 10), ("a", 1), ("a", 1), ("b", 1), ("b", 1)] {
            q.push(tenant, 1, Priority::Normal, 1.0, size, now, far(now)).unwrap();
        }
        let mut order = Vec::new();
        while let Some(job) = q.pop_where(|size| *size == 1) {
            order.push(job.tenant);
        }
        assert_eq!(order, ["a", "b", "a", "b"], "tenants alternate among acceptable jobs");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().map(|j| j.item), Some(10));
        assert!(q.pop_where(|_| true).is_none());
    }

    #[test]
    fn deadlines_expire_jobs_and_removal_cancels_them() {
        let now = Instant::now();
        let mut q = FairQueue::new(LIMITS);
        q.push("a", 1, Priority::Normal, 1.0, 1, now, now + Duration::from_millis(10)).unwrap();
        q.push("a", 1, Priority::Normal, 1.0, 2, now, now + Duration::from_secs(10)).unwrap();
        q.push("b", 1, Priority::Normal, 1.0, 3, now, now + Duration::from_millis(5)).unwrap();
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(5)));
        let expired = q.expire(now + Duration::from_millis(20));
        assert_eq!(expired.iter().map(|j| j.item).collect::<Vec<_>>().len(), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.remove(&"a", |item| *item == 2).map(|j| j.item), Some(2));
        assert!(q.is_empty() && q.pop().is_none());
    }
}
