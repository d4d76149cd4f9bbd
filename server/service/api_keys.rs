//! API keys: create (key shown once), list (masked), get, roll (new key, old one expires after a
//! grace period), revoke.

use chrono::{DateTime, Duration, Utc};
use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceError, parse_scopes, validate_name};
use crate::auth::secrets::{self, KeyEnvironment, Pepper};
use crate::db::api_keys::{self, ApiKey, NewApiKey};
use crate::db::audit;
use crate::domain::{TenantId, normalise_allowlist};

pub const MAX_EXPIRY_DAYS: i64 = 365;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: String,
    /// chat:completions, audio:align, models:read.
    pub scopes: Vec<String>,
    /// `live` (default) or `test`.
    pub environment: Option<String>,
    /// Days until the key expires (max 365); omitted = no expiry.
    pub expires_in_days: Option<i64>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollApiKeyRequest {
    /// Seconds the old key keeps working (0 = stops now; max 604800).
    #[serde(default = "default_grace")]
    pub grace_period_s: u64,
}

fn default_grace() -> u64 {
    86_400
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub environment: String,
    /// `gth_live_{id}_…{last4}`: enough to recognise the key, never enough to use it.
    pub masked_key: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rolled_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyWithSecret {
    #[serde(flatten)]
    pub api_key: ApiKeyResponse,
    /// The full key. Shown only in this response.
    pub key: String,
}

impl From<ApiKey> for ApiKeyResponse {
    fn from(k: ApiKey) -> Self {
        let now = Utc::now();
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        ApiKeyResponse {
            masked_key: secrets::masked_api_key(&k.environment, &k.id, &k.last4),
            status: status.into(),
            id: k.id,
            tenant_id: k.tenant_id,
            name: k.name,
            environment: k.environment,
            scopes: k.scopes,
            ip_allowlist: k.ip_allowlist,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            rolled_from: k.rolled_from,
        }
    }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("API key not found".into())
}

fn map_nf(e: diesel::result::Error) -> ServiceError {
    match e {
        diesel::result::Error::NotFound => not_found(),
        other => other.into(),
    }
}

fn valid_key_id(raw: &str) -> Result<&str, ServiceError> {
    if raw.len() == secrets::KEY_ID_LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric()) { Ok(raw) } else { Err(not_found()) }
}

pub fn create(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    req: &CreateApiKeyRequest,
    actor: &Actor,
) -> Result<ApiKeyWithSecret, ServiceError> {
    let name = validate_name("name", &req.name)?;
    let scopes = parse_scopes("scopes", &req.scopes, false)?;
    if scopes.is_empty() {
        return Err(ServiceError::invalid("scopes", "give at least one scope"));
    }
    let env = match req.environment.as_deref() {
        None => KeyEnvironment::Live,
        Some(e) => KeyEnvironment::parse(e).ok_or_else(|| ServiceError::invalid("environment", "must be `live` or `test`"))?,
    };
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => Some(Utc::now() + Duration::days(d)),
        Some(_) => return Err(ServiceError::invalid("expires_in_days", format!("must be between 1 and {MAX_EXPIRY_DAYS}"))),
    };
    let allowlist = normalise_allowlist(&req.ip_allowlist).map_err(|m| ServiceError::invalid("ip_allowlist", m))?;
    insert_new(conn, pepper, tenant, &name, env, &scopes.to_vec(), &allowlist, expires_at, None, actor, "api_key.create")
}

#[allow(clippy::too_many_arguments)]
fn insert_new(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    name: &str,
    env: KeyEnvironment,
    scopes: &[String],
    allowlist: &[String],
    expires_at: Option<DateTime<Utc>>,
    rolled_from: Option<&str>,
    actor: &Actor,
    action: &'static str,
) -> Result<ApiKeyWithSecret, ServiceError> {
    let new = secrets::generate_api_key(env);
    let hash = pepper.hash(&new.full);
    let key = conn.transaction(|conn| {
        crate::db::tenants::find(conn, tenant)?;
        let key = api_keys::insert(
            conn,
            &NewApiKey {
                id: &new.id,
                tenant_id: tenant.as_str(),
                name,
                environment: env.as_str(),
                secret_hash: &hash,
                last4: &new.last4,
                scopes,
                ip_allowlist: allowlist,
                created_by: Some(&actor.id),
                expires_at,
                rolled_from,
            },
        )?;
        audit::insert(
            conn,
            &actor
                .event(action)
                .tenant(tenant)
                .target("api_key", new.id.as_str())
                .details(serde_json::json!({ "scopes": scopes, "rolled_from": rolled_from })),
        )?;
        diesel::QueryResult::Ok(key)
    })?;
    Ok(ApiKeyWithSecret { api_key: key.into(), key: new.full })
}

pub fn list(conn: &mut PgConnection, tenant: &TenantId) -> Result<Vec<ApiKeyResponse>, ServiceError> {
    Ok(api_keys::list(conn, tenant)?.into_iter().map(Into::into).collect())
}

pub fn get(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str) -> Result<ApiKeyResponse, ServiceError> {
    api_keys::find(conn, tenant, valid_key_id(raw_id)?).map(Into::into).map_err(map_nf)
}

pub fn revoke(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str, actor: &Actor) -> Result<ApiKeyResponse, ServiceError> {
    let id = valid_key_id(raw_id)?;
    conn.transaction(|conn| {
        let key = api_keys::revoke(conn, tenant, id)?;
        audit::insert(conn, &actor.event("api_key.revoke").tenant(tenant).target("api_key", id))?;
        diesel::QueryResult::Ok(key)
    })
    .map(Into::into)
    .map_err(map_nf)
}

/// Stripe-style roll: a new key with the same name, scopes and allowlist; the old key expires
/// after the grace period.
pub fn roll(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    raw_id: &str,
    req: &RollApiKeyRequest,
    actor: &Actor,
) -> Result<ApiKeyWithSecret, ServiceError> {
    if req.grace_period_s > super::clients::MAX_GRACE_S {
        return Err(ServiceError::invalid("grace_period_s", format!("must be at most {}", super::clients::MAX_GRACE_S)));
    }
    let id = valid_key_id(raw_id)?;
    let old = api_keys::find(conn, tenant, id).map_err(map_nf)?;
    if old.revoked_at.is_some() {
        return Err(ServiceError::Conflict("a revoked key cannot be rolled".into()));
    }
    let env = KeyEnvironment::parse(&old.environment).unwrap_or(KeyEnvironment::Live);
    conn.transaction(|conn| {
        api_keys::expire(conn, tenant, id, Utc::now() + Duration::seconds(req.grace_period_s as i64))?;
        insert_new(conn, pepper, tenant, &old.name, env, &old.scopes, &old.ip_allowlist, old.expires_at, Some(id), actor, "api_key.roll")
    })
}
