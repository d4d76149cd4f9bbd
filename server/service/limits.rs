//! Per-credential rate-limit overrides on API keys and OAuth2 clients (tenant-scoped). A
//! credential's limits apply on top of its tenant's plan: both must admit a request.

use diesel::prelude::*;

use super::plans::CredentialLimits;
use super::{Actor, ServiceError};
use crate::db::audit;
use crate::db::schema::{api_keys, oauth_clients};
use crate::domain::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Client,
}

/// Sets (replaces) the credential's limits; `None` fields fall back to the plan.
pub fn set(
    conn: &mut PgConnection,
    tenant: &TenantId,
    kind: Credential,
    id: &str,
    limits: &CredentialLimits,
    actor: &Actor,
) -> Result<CredentialLimits, ServiceError> {
    limits.validate()?;
    conn.transaction(|conn| {
        let n = match kind {
            Credential::ApiKey => {
                diesel::update(api_keys::table.filter(api_keys::tenant_id.eq(tenant.as_str())).filter(api_keys::id.eq(id)))
                    .set((
                        api_keys::requests_per_minute.eq(limits.requests_per_minute),
                        api_keys::tokens_per_minute.eq(limits.tokens_per_minute),
                        api_keys::audio_seconds_per_minute.eq(limits.audio_seconds_per_minute),
                        api_keys::concurrent_requests.eq(limits.concurrent_requests),
                    ))
                    .execute(conn)?
            }
            Credential::Client => {
                diesel::update(oauth_clients::table.filter(oauth_clients::tenant_id.eq(tenant.as_str())).filter(oauth_clients::id.eq(id)))
                    .set((
                        oauth_clients::requests_per_minute.eq(limits.requests_per_minute),
                        oauth_clients::tokens_per_minute.eq(limits.tokens_per_minute),
                        oauth_clients::audio_seconds_per_minute.eq(limits.audio_seconds_per_minute),
                        oauth_clients::concurrent_requests.eq(limits.concurrent_requests),
                        oauth_clients::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)?
            }
        };
        if n == 0 {
            return Err(ServiceError::NotFound("credential not found".into()));
        }
        let (action, target) = match kind {
            Credential::ApiKey => ("api_key.limits", "api_key"),
            Credential::Client => ("client.limits", "client"),
        };
        audit::insert(
            conn,
            &actor.event(action).tenant(tenant).target(target, id).details(serde_json::to_value(limits).unwrap_or_default()),
        )?;
        Ok(*limits)
    })
}
