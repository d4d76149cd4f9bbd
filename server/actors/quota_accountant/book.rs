//! The quota book: per tenant and period, what the database held at the last reload, what this
//! instance recorded since and has not written, and what requests in flight have reserved.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::shared::SharedQuotas;
use crate::domain::TenantId;
use crate::metering::{Amounts, Period, Quotas};

#[derive(Debug, Default)]
pub(super) struct PeriodBook {
    pub(super) start: Option<DateTime<Utc>>,
    /// Usage in the database at the last reload, plus what this instance flushed since.
    pub(super) committed: Amounts,
}

#[derive(Debug, Default)]
pub(super) struct TenantBook {
    pub(super) loaded: bool,
    pub(super) day: PeriodBook,
    pub(super) month: PeriodBook,
    /// Recorded here, not yet written.
    pub(super) unflushed: Amounts,
    /// Reserved by requests in flight.
    pub(super) inflight: Amounts,
    pub(super) quotas: Option<Quotas>,
    /// (period, start, threshold) alerts already written.
    pub(super) alerted: HashSet<(String, DateTime<Utc>)>,
}

impl TenantBook {
    pub(super) fn used(&self, period: Period) -> Amounts {
        let p = match period {
            Period::Day => &self.day,
            Period::Month => &self.month,
        };
        p.committed + self.unflushed + self.inflight
    }
}

pub(super) type Book = Arc<Mutex<HashMap<TenantId, TenantBook>>>;

pub(super) fn lock(book: &Book) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantBook>> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request's quota reservation; released on drop.
pub struct QuotaHold {
    pub(super) book: Book,
    pub(super) tenant: TenantId,
    pub(super) demand: Amounts,
    /// The hold in the shared counters (with Redis) and its id.
    pub(super) shared: Option<(Arc<SharedQuotas>, String)>,
}

impl std::fmt::Debug for QuotaHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaHold").field("tenant", &self.tenant).field("demand", &self.demand).finish()
    }
}

impl Drop for QuotaHold {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.book).get_mut(&self.tenant) {
            t.inflight -= self.demand;
        }
        if let Some((shared, id)) = self.shared.take() {
            shared.release(self.tenant.clone(), id);
        }
    }
}
