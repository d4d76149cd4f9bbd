//! API keys. Management queries take the owning `TenantId`; `find_for_authentication` looks a key
//! up by the id embedded in the presented key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{api_keys, plans, tenants};
use crate::domain::{Scopes, TenantId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub environment: String,
    pub secret_hash: Vec<u8>,
    pub last4: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub audio_seconds_per_minute: Option<i32>,
    pub concurrent_requests: Option<i32>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rolled_from: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub environment: &'a str,
    pub secret_hash: &'a [u8],
    pub last4: &'a str,
    pub scopes: &'a [String],
    pub ip_allowlist: &'a [String],
    pub created_by: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rolled_from: Option<&'a str>,
}

/// What authenticating a key needs of it, and no more: cached per key id, so with 100,000 keys
/// in use the rest of the row (name, limits, timestamps, the plan's entitlements) is not kept.
#[derive(Debug, Clone)]
pub struct ApiKeyAuthRecord {
    pub id: String,
    pub tenant_id: String,
    pub environment: String,
    pub secret_hash: Vec<u8>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub tenant_active: bool,
    /// What the key may do now: its token scopes within the plan's entitlements (worked out
    /// once per cached record, not per request).
    pub scopes: Scopes,
}

pub fn insert(conn: &mut PgConnection, new: &NewApiKey<'_>) -> QueryResult<ApiKey> {
    diesel::insert_into(api_keys::table).values(new).returning(ApiKey::as_returning()).get_result(conn)
}

pub fn list(conn: &mut PgConnection, tenant: &TenantId) -> QueryResult<Vec<ApiKey>> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant.as_str()))
        .order((api_keys::created_at, api_keys::id))
        .select(ApiKey::as_select())
        .load(conn)
}

pub fn find(conn: &mut PgConnection, tenant: &TenantId, id: &str) -> QueryResult<ApiKey> {
    api_keys::table.filter(api_keys::tenant_id.eq(tenant.as_str())).filter(api_keys::id.eq(id)).select(ApiKey::as_select()).first(conn)
}

pub fn find_for_authentication(conn: &mut PgConnection, id: &str) -> QueryResult<Option<ApiKeyAuthRecord>> {
    type Row = (String, String, String, Vec<u8>, Vec<String>, Vec<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    api_keys::table
        .inner_join(tenants::table.inner_join(plans::table))
        .filter(api_keys::id.eq(id))
        .select((
            (
                api_keys::id,
                api_keys::tenant_id,
                api_keys::environment,
                api_keys::secret_hash,
                api_keys::scopes,
                api_keys::ip_allowlist,
                api_keys::expires_at,
                api_keys::revoked_at,
            ),
            tenants::status,
            plans::entitlements,
        ))
        .first::<(Row, crate::domain::TenantStatus, Vec<String>)>(conn)
        .optional()
        .map(|row| {
            row.map(|((id, tenant_id, environment, secret_hash, scopes, ip_allowlist, expires_at, revoked_at), status, entitlements)| {
                ApiKeyAuthRecord {
                    scopes: Scopes::from_stored(&scopes).token_scopes().intersect(&Scopes::from_stored(&entitlements)),
                    id,
                    tenant_id,
                    environment,
                    secret_hash,
                    ip_allowlist,
                    expires_at,
                    revoked_at,
                    tenant_active: status == crate::domain::TenantStatus::Active,
                }
            })
        })
}

pub fn revoke(conn: &mut PgConnection, tenant: &TenantId, id: &str) -> QueryResult<ApiKey> {
    diesel::update(api_keys::table.filter(api_keys::tenant_id.eq(tenant.as_str())).filter(api_keys::id.eq(id)))
        .set(api_keys::revoked_at.eq(Some(Utc::now())))
        .returning(ApiKey::as_returning())
        .get_result(conn)
}

/// The old key expires at `until` (the roll's grace period) unless it already expires sooner.
pub fn expire(conn: &mut PgConnection, tenant: &TenantId, id: &str, until: DateTime<Utc>) -> QueryResult<ApiKey> {
    let current = find(conn, tenant, id)?;
    let until = current.expires_at.map_or(until, |e| e.min(until));
    diesel::update(api_keys::table.filter(api_keys::tenant_id.eq(tenant.as_str())).filter(api_keys::id.eq(id)))
        .set(api_keys::expires_at.eq(Some(until)))
        .returning(ApiKey::as_returning())
        .get_result(conn)
}

/// Records use at most once a minute per key (the caller throttles; this is one UPDATE).
pub fn touch_last_used(conn: &mut PgConnection, id: &str) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id)).set(api_keys::last_used_at.eq(Some(Utc::now()))).execute(conn).map(drop)
}
