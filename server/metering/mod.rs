//! Metering: what one finished request used (`UsageEvent`), what counts against a quota and how
//! quota periods fall in a tenant's time zone (`quota`), and usage reports and billing exports
//! (`report`). The `QuotaAccountant` actor that folds events into rollups and keeps the quota
//! book lives in `actors::quota_accountant`; the SQL lives in `db::usage`.

pub mod quota;
pub mod report;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::TenantId;
pub use quota::{Amounts, Caps, Period, QuotaError, Quotas, local_midnight};

/// One finished request.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub tenant_id: TenantId,
    pub credential_id: String,
    pub model: String,
    pub at: DateTime<Utc>,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub audio_ms: u64,
    pub queue_wait_ms: u64,
    pub latency_ms: u64,
}

impl UsageEvent {
    /// One alignment's usage (`audio_ms` is what is billed: 0 unless aligned).
    pub fn alignment(
        tenant: &TenantId,
        credential: &str,
        model: &str,
        status: u16,
        audio_ms: u64,
        waited: Duration,
        started: Instant,
    ) -> UsageEvent {
        UsageEvent {
            tenant_id: tenant.clone(),
            credential_id: credential.to_owned(),
            model: model.to_owned(),
            at: Utc::now(),
            status,
            prompt_tokens: 0,
            completion_tokens: 0,
            audio_ms,
            queue_wait_ms: waited.as_millis() as u64,
            latency_ms: started.elapsed().as_millis() as u64,
        }
    }

    pub fn amounts(&self) -> Amounts {
        Amounts { requests: 1, tokens: (self.prompt_tokens + self.completion_tokens) as i64, audio_ms: self.audio_ms as i64 }
    }
}
