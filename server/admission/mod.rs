//! Admission to `/v1`: the one step every `/v1` route takes before it queues work, in this order:
//! the tenant's policy (`policy`), the model's route (with one not-found answer for "no such
//! model" and "not on your plan", so a plan's models cannot be probed), the rate limits, then
//! the quotas. A route opens a `Gate` for its request, takes these steps through it, and answers
//! through it: `Gate::respond` puts the rate-limit headers on every answer from a rate-limited
//! credential, a validation error included.

pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;

use crate::actors::inference_queue::{AlignFailure, QueueError};
use crate::actors::quota_accountant::{QuotaAccountantHandle, QuotaHold};
use crate::auth::service::Principal;
use crate::domain::PoolKind;
use crate::error::ApiError;
use crate::limits::{Admission, CounterState, Demand, MAX_RETRY_AFTER, RateLimiter};
use crate::metering::{Amounts, QuotaError};
use crate::workers::gateway::{Gateway, PoolRoute};
pub use policy::{PolicyStore, TenantPolicy};

/// What admission needs, shared by every request.
#[derive(Clone)]
pub struct Admitter {
    pub policies: PolicyStore,
    limiter: RateLimiter,
    quotas: QuotaAccountantHandle,
    gateway: Arc<Gateway>,
}

impl Admitter {
    pub fn new(policies: PolicyStore, limiter: RateLimiter, quotas: QuotaAccountantHandle, gateway: Arc<Gateway>) -> Admitter {
        Admitter { policies, limiter, quotas, gateway }
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Opens the admission of one request by `principal`.
    pub fn gate<'a>(&'a self, principal: &'a Principal) -> Gate<'a> {
        Gate { admitter: self, principal, policy: None, states: Vec::new(), decided: false, unreadable: false }
    }
}

/// An admitted request's holds: its rate-limit admission (reconcile it to what was used; it
/// releases the concurrency slot when dropped) and its quota reservation (released when dropped,
/// after the usage is recorded).
pub struct Admitted {
    pub limits: Admission,
    pub quota: Option<QuotaHold>,
}

/// The admission of one `/v1` request.
pub struct Gate<'a> {
    admitter: &'a Admitter,
    principal: &'a Principal,
    policy: Option<Arc<TenantPolicy>>,
    /// The rate-limit counters as the limiter last reported them.
    states: Vec<CounterState>,
    /// The limiter has answered this request (admitted or refused): `states` are its answer.
    decided: bool,
    /// The policy or the credential's limits could not be read: the answer is not delayed by
    /// trying again for its headers.
    unreadable: bool,
}

impl Gate<'_> {
    pub fn principal(&self) -> &Principal {
        self.principal
    }

    /// The tenant's policy (loaded once per request, from the store's cache).
    pub async fn policy(&mut self) -> Result<Arc<TenantPolicy>, ApiError> {
        if let Some(p) = &self.policy {
            return Ok(p.clone());
        }
        let policy = self.admitter.policies.tenant_policy(&self.principal.tenant_id).await.inspect_err(|_| self.unreadable = true)?;
        self.policy = Some(policy.clone());
        Ok(policy)
    }

    /// The route of `model` in a pool of `kind`, if the plan allows the model. Unknown, other-kind
    /// and disallowed models get the same answer.
    pub async fn route(&mut self, model: &str, kind: PoolKind) -> Result<Arc<PoolRoute>, ApiError> {
        let policy = self.policy().await?;
        self.admitter
            .gateway
            .route(model)
            .filter(|r| r.kind == kind && policy.allows(model))
            .ok_or_else(|| ApiError::NotFound(format!("The model `{model}` does not exist or you do not have access to it.")))
    }

    /// The first model of `kind` the plan allows (a request that names none).
    pub async fn default_model(&mut self, kind: PoolKind) -> Result<String, ApiError> {
        let policy = self.policy().await?;
        self.admitter.gateway.models(kind).into_iter().find(|m| policy.allows(m)).ok_or_else(|| {
            ApiError::NotFound(format!(
                "no {} model is available to this credential",
                if kind == PoolKind::Aligner { "alignment" } else { "language" }
            ))
        })
    }

    /// Rate limits, then quotas: `demand` against the per-minute limits (plus one request and
    /// one concurrency slot), `quota` against the tenant's daily and monthly quotas.
    pub async fn admit(&mut self, demand: Demand, quota: Amounts) -> Result<Admitted, ApiError> {
        let policy = self.policy().await?;
        let subject = self.admitter.policies.subject(self.principal, &policy).await.inspect_err(|_| self.unreadable = true)?;
        self.decided = true;
        let limits = match self.admitter.limiter.admit(&subject, demand).await {
            Ok(admission) => {
                self.states = admission.states().to_vec();
                admission
            }
            Err(refusal) => {
                self.states = refusal.states;
                return Err(refusal.error);
            }
        };
        let quota = self.admitter.quotas.reserve(&self.principal.tenant_id, &policy.quotas, quota).await.map_err(quota_error)?;
        Ok(Admitted { limits, quota })
    }

    /// The answer, success or error, with the rate-limit headers of this credential: the
    /// limiter's answer when the request reached it, else the counters as they stand.
    pub async fn respond(mut self, result: Result<HttpResponse, ApiError>) -> HttpResponse {
        let mut response = result.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
        if !self.decided && !self.unreadable {
            self.states = self.current_states().await;
        }
        crate::limits::apply_headers(&mut response, &self.states);
        response
    }

    /// The counters without taking from them; nothing when the policy cannot be read.
    async fn current_states(&mut self) -> Vec<CounterState> {
        let Ok(policy) = self.policy().await else { return Vec::new() };
        match self.admitter.policies.subject(self.principal, &policy).await {
            Ok(subject) => self.admitter.limiter.peek(&subject).await,
            Err(_) => Vec::new(),
        }
    }
}

/// A refused quota reservation, in the caller's protocol.
pub fn quota_error(e: QuotaError) -> ApiError {
    match e {
        QuotaError::Exceeded(message) => ApiError::RateLimited { message, retry_after: MAX_RETRY_AFTER, code: "quota_exceeded" },
        QuotaError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "quota state unavailable");
            ApiError::Unavailable {
                message: "usage quotas cannot be checked right now; retry shortly".into(),
                retry_after: Duration::from_secs(2),
            }
        }
    }
}

/// A request the pool's queue did not take, in the caller's protocol.
pub fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::TenantQueueFull | QueueError::QueueFull => ApiError::RateLimited {
            message: "the queue for this model is full; retry shortly".into(),
            retry_after: Duration::from_secs(1),
            code: "queue_full",
        },
        QueueError::Throttled => ApiError::RateLimited {
            message: "this model's workers are saturated and this tenant already has its fair share of requests waiting; \
                      retry shortly"
                .into(),
            retry_after: Duration::from_secs(1),
            code: "pool_saturated",
        },
        QueueError::DeadlineExceeded | QueueError::Closed => ApiError::Unavailable {
            message: "no model worker became available in time; retry shortly".into(),
            retry_after: Duration::from_secs(2),
        },
    }
}

/// An alignment that got no answer from a worker, in the caller's protocol.
pub fn align_failure(e: AlignFailure) -> ApiError {
    match e {
        AlignFailure::Queue(q) => queue_error(q),
        AlignFailure::Timeout => ApiError::UpstreamTimeout,
        AlignFailure::Worker(_) => ApiError::Upstream("the aligner worker failed".into()),
    }
}
