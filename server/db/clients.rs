//! OAuth2 clients. Management queries take the owning `TenantId`; the one lookup by client id
//! alone is `find_for_authentication`, because there the client id *is* the presented credential.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{oauth_clients, plans, tenants};
use crate::domain::{ClientId, TenantId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_clients, check_for_backend(diesel::pg::Pg))]
pub struct Client {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub rotated_secret_hash: Option<Vec<u8>>,
    pub rotated_expires_at: Option<DateTime<Utc>>,
    pub allowed_scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub token_ttl_seconds: i32,
    pub tokens_valid_after: DateTime<Utc>,
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub audio_seconds_per_minute: Option<i32>,
    pub concurrent_requests: Option<i32>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = oauth_clients)]
pub struct NewClient<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub secret_hash: &'a [u8],
    pub secret_expires_at: Option<DateTime<Utc>>,
    pub allowed_scopes: &'a [String],
    pub ip_allowlist: &'a [String],
    pub token_ttl_seconds: i32,
    pub created_by: Option<&'a str>,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = oauth_clients)]
pub struct ClientChanges {
    pub name: Option<String>,
    pub allowed_scopes: Option<Vec<String>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub token_ttl_seconds: Option<i32>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A client with what authentication needs from its tenant and plan.
#[derive(Debug, Clone)]
pub struct ClientAuthRecord {
    pub client: Client,
    pub tenant_active: bool,
    pub entitlements: Vec<String>,
}

pub fn insert(conn: &mut PgConnection, new: &NewClient<'_>) -> QueryResult<Client> {
    diesel::insert_into(oauth_clients::table).values(new).returning(Client::as_returning()).get_result(conn)
}

pub fn list(conn: &mut PgConnection, tenant: &TenantId) -> QueryResult<Vec<Client>> {
    oauth_clients::table
        .filter(oauth_clients::tenant_id.eq(tenant.as_str()))
        .order((oauth_clients::created_at, oauth_clients::id))
        .select(Client::as_select())
        .load(conn)
}

pub fn find(conn: &mut PgConnection, tenant: &TenantId, id: &ClientId) -> QueryResult<Client> {
    oauth_clients::table
        .filter(oauth_clients::tenant_id.eq(tenant.as_str()))
        .filter(oauth_clients::id.eq(id.as_str()))
        .select(Client::as_select())
        .first(conn)
}

pub fn find_for_authentication(conn: &mut PgConnection, id: &str) -> QueryResult<Option<ClientAuthRecord>> {
    oauth_clients::table
        .inner_join(tenants::table.inner_join(plans::table))
        .filter(oauth_clients::id.eq(id))
        .select((Client::as_select(), tenants::status, plans::entitlements))
        .first::<(Client, crate::domain::TenantStatus, Vec<String>)>(conn)
        .optional()
        .map(|row| {
            row.map(|(client, status, entitlements)| ClientAuthRecord {
                client,
                tenant_active: status == crate::domain::TenantStatus::Active,
                entitlements,
            })
        })
}

pub fn update(conn: &mut PgConnection, tenant: &TenantId, id: &ClientId, mut changes: ClientChanges) -> QueryResult<Client> {
    changes.updated_at = Some(Utc::now());
    diesel::update(oauth_clients::table.filter(oauth_clients::tenant_id.eq(tenant.as_str())).filter(oauth_clients::id.eq(id.as_str())))
        .set(&changes)
        .returning(Client::as_returning())
        .get_result(conn)
}

pub fn disable(conn: &mut PgConnection, tenant: &TenantId, id: &ClientId) -> QueryResult<Client> {
    let now = Utc::now();
    diesel::update(oauth_clients::table.filter(oauth_clients::tenant_id.eq(tenant.as_str())).filter(oauth_clients::id.eq(id.as_str())))
        .set((oauth_clients::disabled_at.eq(Some(now)), oauth_clients::updated_at.eq(now)))
        .returning(Client::as_returning())
        .get_result(conn)
}

/// New secret now; the previous one stays valid until `old_valid_until` (None = immediately invalid).
pub fn rotate_secret(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &ClientId,
    new_hash: &[u8],
    old_valid_until: Option<DateTime<Utc>>,
) -> QueryResult<Client> {
    conn.transaction(|conn| {
        let current = find(conn, tenant, id)?;
        let (rotated_hash, rotated_until) = match old_valid_until {
            Some(until) => (Some(current.secret_hash), Some(until)),
            None => (None, None),
        };
        diesel::update(oauth_clients::table.find(id.as_str()))
            .set((
                oauth_clients::secret_hash.eq(new_hash),
                oauth_clients::rotated_secret_hash.eq(rotated_hash),
                oauth_clients::rotated_expires_at.eq(rotated_until),
                oauth_clients::updated_at.eq(Utc::now()),
            ))
            .returning(Client::as_returning())
            .get_result(conn)
    })
}

/// Every token issued to the client before now stops working.
pub fn revoke_all_tokens(conn: &mut PgConnection, tenant: &TenantId, id: &ClientId) -> QueryResult<Client> {
    let now = Utc::now();
    diesel::update(oauth_clients::table.filter(oauth_clients::tenant_id.eq(tenant.as_str())).filter(oauth_clients::id.eq(id.as_str())))
        .set((oauth_clients::tokens_valid_after.eq(now), oauth_clients::updated_at.eq(now)))
        .returning(Client::as_returning())
        .get_result(conn)
}
