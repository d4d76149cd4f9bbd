//! What a tenant's plan and settings allow, and what a credential's overrides change: the request
//! policy every `/v1` handler applies before queueing (models, `max_tokens` caps, prompt size and
//! deny patterns), the rate limits and the quotas. Cached ≤ 5 s, so a plan or limit change takes
//! effect within 5 s without a restart.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::service::CredentialKind;
use crate::db::{api_keys, clients, plans, tenants};
use crate::domain::{ClientId, TenantId};
use crate::error::ApiError;
use crate::extract::Principal;
use crate::limits::{Limits, Subject};
use crate::state::AppState;
use crate::usage::{Caps, Quotas};

#[derive(Debug, Clone)]
pub struct TenantPolicy {
    pub allowed_models: Vec<String>,
    pub weight: u32,
    pub max_tokens_cap: Option<u32>,
    pub default_max_tokens: u32,
    pub max_prompt_chars: Option<usize>,
    /// The tenant's prompt deny patterns, compiled (case-insensitive).
    pub deny_patterns: Vec<regex::Regex>,
    pub max_audio_bytes: u64,
    pub limits: Limits,
    pub quotas: Quotas,
}

impl TenantPolicy {
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|m| m == "*" || m == model)
    }

    /// The first deny pattern the text matches, if any.
    pub fn denied(&self, text: &str) -> Option<&regex::Regex> {
        self.deny_patterns.iter().find(|p| p.is_match(text))
    }
}

fn positive<T: TryInto<u64>>(v: Option<T>) -> Option<u64> {
    v.and_then(|v| v.try_into().ok()).filter(|v| *v > 0)
}

/// Limits from the nullable limit columns of a plan or a credential.
pub fn limits_from(rpm: Option<i32>, tpm: Option<i64>, aspm: Option<i32>, concurrent: Option<i32>) -> Limits {
    Limits {
        requests_per_minute: positive(rpm),
        tokens_per_minute: positive(tpm),
        audio_seconds_per_minute: positive(aspm),
        concurrent_requests: positive(concurrent),
    }
}

/// Compiles deny patterns; a pattern that does not compile (only possible if written around the
/// API's validation) is skipped with a warning rather than disabling the tenant.
pub fn compile_deny_patterns(patterns: &[String]) -> Vec<regex::Regex> {
    patterns
        .iter()
        .filter_map(|p| match regex::RegexBuilder::new(p).case_insensitive(true).size_limit(1 << 20).build() {
            Ok(re) => Some(re),
            Err(e) => {
                tracing::warn!(pattern = %p, error = %e, "prompt deny pattern does not compile; skipped");
                None
            }
        })
        .collect()
}

pub async fn tenant_policy(state: &AppState, tenant: &TenantId) -> Result<Arc<TenantPolicy>, ApiError> {
    let db = state.db.clone();
    let id = tenant.clone();
    state
        .policies
        .try_get_with(tenant.to_string(), async move {
            db.run(move |conn| {
                let t = tenants::find(conn, &id)?;
                let plan = plans::find(conn, &tenants::plan_id_of(&t))?;
                let time_zone = t.time_zone.parse().unwrap_or(chrono_tz::UTC);
                Ok(Arc::new(TenantPolicy {
                    allowed_models: plan.allowed_models,
                    weight: plan.queue_weight.max(1) as u32,
                    max_tokens_cap: plan.max_tokens_cap.map(|v| v.max(1) as u32),
                    default_max_tokens: plan.default_max_tokens.unwrap_or(256).max(1) as u32,
                    max_prompt_chars: plan.max_prompt_chars.map(|v| v.max(1) as usize),
                    deny_patterns: compile_deny_patterns(&t.prompt_deny_patterns),
                    max_audio_bytes: plan.max_audio_bytes.max(1) as u64,
                    limits: limits_from(
                        plan.requests_per_minute,
                        plan.tokens_per_minute,
                        plan.audio_seconds_per_minute,
                        plan.concurrent_requests,
                    ),
                    quotas: Quotas {
                        time_zone,
                        daily: Caps {
                            requests: plan.daily_request_quota,
                            tokens: plan.daily_token_quota,
                            audio_seconds: plan.daily_audio_seconds_quota,
                        },
                        monthly: Caps {
                            requests: plan.monthly_request_quota,
                            tokens: plan.monthly_token_quota,
                            audio_seconds: plan.monthly_audio_seconds_quota,
                        },
                        monthly_token_soft: plan.monthly_token_soft_quota,
                    },
                }))
            })
            .await
        })
        .await
        .map_err(|e: Arc<crate::db::DbError>| ApiError::Unavailable {
            message: format!("policy unavailable: {e}"),
            retry_after: Duration::from_secs(2),
        })
}

/// The credential's own limit overrides (none = only the tenant's limits apply).
pub async fn credential_limits(state: &AppState, principal: &Principal) -> Result<Limits, ApiError> {
    let db = state.db.clone();
    let tenant = principal.tenant_id.clone();
    let id = principal.credential_id.clone();
    let kind = principal.kind;
    state
        .credential_limits
        .try_get_with(principal.credential_id.clone(), async move {
            db.run(move |conn| {
                Ok(match kind {
                    CredentialKind::ApiKey => {
                        let k = api_keys::find(conn, &tenant, &id)?;
                        limits_from(k.requests_per_minute, k.tokens_per_minute, k.audio_seconds_per_minute, k.concurrent_requests)
                    }
                    CredentialKind::Jwt => {
                        let c = clients::find(conn, &tenant, &ClientId::from_trusted(id))?;
                        limits_from(c.requests_per_minute, c.tokens_per_minute, c.audio_seconds_per_minute, c.concurrent_requests)
                    }
                })
            })
            .await
        })
        .await
        .map_err(|e: Arc<crate::db::DbError>| ApiError::Unavailable {
            message: format!("credential limits unavailable: {e}"),
            retry_after: Duration::from_secs(2),
        })
}

/// Who is asking and every limit that applies to them.
pub async fn subject(state: &AppState, principal: &Principal, policy: &TenantPolicy) -> Result<Subject, ApiError> {
    Ok(Subject {
        tenant_id: principal.tenant_id.to_string(),
        credential_id: principal.credential_id.clone(),
        tenant: policy.limits,
        credential: credential_limits(state, principal).await?,
    })
}
