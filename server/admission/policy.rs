//! What a tenant's plan and settings allow, and what a credential's overrides change: the request
//! policy every `/v1` handler applies before queueing (models, `max_tokens` caps, prompt size,
//! deny patterns and prompt rule packs), the rate limits and the quotas. `PolicyStore` caches both for
//! `gateway.policy_cache_ttl_ms` (5 s by default), so a plan or limit change takes effect within
//! that time without a restart; changes made on this instance invalidate at once.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::service::{BearerError, CredentialKind, Principal};
use crate::db::{Db, DbError, api_keys, clients, plans, tenants};
use crate::domain::prompt_rules::{Catalogue, Hit, PackChoice, Selection};
use crate::domain::{ClientId, TenantId};
use crate::error::{ApiError, Realm};
use crate::limits::{Limits, Subject};
use crate::metering::{Caps, Quotas};

#[derive(Debug, Clone)]
pub struct TenantPolicy {
    pub allowed_models: Vec<String>,
    pub weight: u32,
    pub max_tokens_cap: Option<u32>,
    pub default_max_tokens: u32,
    pub max_prompt_chars: Option<usize>,
    /// The tenant's prompt deny patterns, compiled (case-insensitive).
    pub deny_patterns: Vec<regex::Regex>,
    /// The prompt rule packs the tenant enabled (none: the prompt is not scanned). The rules
    /// are compiled once per process; this only says which matches count and what they do.
    pub prompt_rules: Option<Selection>,
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

    /// The enabled prompt rules the text matches, with what each does for this tenant.
    pub fn prompt_rule_hits(&self, text: &str) -> Vec<Hit<'_>> {
        self.prompt_rules.as_ref().map(|s| s.judge(text)).unwrap_or_default()
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

/// The cached policies of tenants and the limit overrides of credentials.
#[derive(Clone)]
pub struct PolicyStore {
    db: Db,
    rules: Arc<Catalogue>,
    policies: moka::future::Cache<TenantId, Arc<TenantPolicy>>,
    credential_limits: moka::future::Cache<String, Limits>,
}

/// A policy that could not be read. A credential or tenant that no longer exists (removed within
/// the credential cache's lifetime) is refused like any invalid credential; anything else means
/// the database is away or behind: 503. The cause is logged here, never shown.
fn unavailable(what: &'static str) -> impl Fn(Arc<DbError>) -> ApiError {
    move |e| match &*e {
        DbError::NotFound => ApiError::bearer(Realm::Api, BearerError::InvalidToken("the credential is no longer valid")),
        _ => {
            tracing::warn!(error = %e, what, "request policy not loaded");
            ApiError::Unavailable {
                message: format!("the {what} cannot be read right now; retry shortly"),
                retry_after: Duration::from_secs(2),
            }
        }
    }
}

impl PolicyStore {
    pub fn new(db: Db, ttl: Duration, rules: Arc<Catalogue>) -> PolicyStore {
        PolicyStore {
            db,
            rules,
            policies: moka::future::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            credential_limits: moka::future::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
        }
    }

    /// The tenant's policy (from its plan and settings).
    pub async fn tenant_policy(&self, tenant: &TenantId) -> Result<Arc<TenantPolicy>, ApiError> {
        // The warm path: a lookup without building the loader.
        if let Some(policy) = self.policies.get(tenant).await {
            return Ok(policy);
        }
        let db = self.db.clone();
        let id = tenant.clone();
        let rules = self.rules.clone();
        self.policies
            .try_get_with(tenant.clone(), async move { db.run(move |conn| Ok(Arc::new(load_policy(conn, &id, &rules)?))).await })
            .await
            .map_err(unavailable("tenant's plan"))
    }

    /// The credential's own limit overrides (none = only the tenant's limits apply).
    pub async fn credential_limits(&self, principal: &Principal) -> Result<Limits, ApiError> {
        if let Some(limits) = self.credential_limits.get(principal.credential_id.as_str()).await {
            return Ok(limits);
        }
        let db = self.db.clone();
        let tenant = principal.tenant_id.clone();
        let id = principal.credential_id.clone();
        let kind = principal.kind;
        self.credential_limits
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
            .map_err(unavailable("credential's limits"))
    }

    /// Who is asking and every limit that applies to them.
    pub async fn subject(&self, principal: &Principal, policy: &TenantPolicy) -> Result<Subject, ApiError> {
        Ok(Subject {
            tenant_id: principal.tenant_id.clone(),
            credential_id: principal.credential_id.clone(),
            tenant: policy.limits,
            credential: self.credential_limits(principal).await?,
        })
    }

    /// Forgets a tenant's policy (its plan or settings changed on this instance).
    pub async fn forget_tenant(&self, tenant: &TenantId) {
        self.policies.invalidate(tenant).await;
    }

    /// Forgets every tenant's policy (a plan changed).
    pub fn forget_all_tenants(&self) {
        self.policies.invalidate_all();
    }

    /// Forgets a credential's limit overrides (they changed on this instance).
    pub async fn forget_credential(&self, credential_id: &str) {
        self.credential_limits.invalidate(credential_id).await;
    }
}

/// The tenant's rule-pack selection. A stored pack this build no longer ships is left out with a
/// warning rather than refusing the tenant's requests.
fn prompt_rules(rules: &Arc<Catalogue>, tenant: &TenantId, stored: &serde_json::Value) -> Option<Selection> {
    let choices = PackChoice::list_from_json(stored)
        .inspect_err(|e| tracing::warn!(tenant.id = %tenant, error = %e, "stored prompt rule packs do not parse; none applied"))
        .unwrap_or_default();
    let (selection, unknown) = rules.select(&choices);
    if !unknown.is_empty() {
        tracing::warn!(tenant.id = %tenant, packs = ?unknown, "prompt rule packs no longer exist; left out");
    }
    selection
}

fn load_policy(conn: &mut diesel::PgConnection, id: &TenantId, rules: &Arc<Catalogue>) -> Result<TenantPolicy, DbError> {
    let t = tenants::find(conn, id)?;
    let plan = plans::find(conn, &tenants::plan_id_of(&t))?;
    let time_zone = t.time_zone.parse().unwrap_or(chrono_tz::UTC);
    Ok(TenantPolicy {
        allowed_models: plan.allowed_models,
        weight: plan.queue_weight.max(1) as u32,
        max_tokens_cap: plan.max_tokens_cap.map(|v| v.max(1) as u32),
        default_max_tokens: plan.default_max_tokens.unwrap_or(256).max(1) as u32,
        max_prompt_chars: plan.max_prompt_chars.map(|v| v.max(1) as usize),
        deny_patterns: compile_deny_patterns(&t.prompt_deny_patterns),
        prompt_rules: prompt_rules(rules, id, &t.prompt_rule_packs),
        max_audio_bytes: plan.max_audio_bytes.max(1) as u64,
        limits: limits_from(plan.requests_per_minute, plan.tokens_per_minute, plan.audio_seconds_per_minute, plan.concurrent_requests),
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
    })
}
