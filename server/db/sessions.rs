//! Dashboard sign-ins: who may log in (operators and tenant admins by email) and the server-side
//! sessions. A session row is keyed by the SHA-256 of the cookie's token, so a database leak
//! gives no usable cookie; ending sessions is deleting rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::admins::TokenOwner;
use super::schema::{admin_sessions, operators, tenant_admins, tenants};
use crate::domain::{AdminId, OperatorId, TenantId, TenantStatus};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// An account the login form may sign in.
#[derive(Debug, Clone)]
pub struct LoginAccount {
    pub owner: TokenOwner,
    pub email: String,
    /// None for a tenant admin who has no password yet.
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// The operator or tenant admin with this email (case-insensitive); operators first.
pub fn find_login(conn: &mut PgConnection, email: &str) -> QueryResult<Option<LoginAccount>> {
    let email = email.trim().to_lowercase();
    type OpRow = (String, String, String, Option<DateTime<Utc>>);
    let op: Option<OpRow> = operators::table
        .filter(lower(operators::email).eq(&email))
        .select((operators::id, operators::email, operators::password_hash, operators::disabled_at))
        .first(conn)
        .optional()?;
    if let Some((id, email, hash, disabled)) = op {
        return Ok(Some(LoginAccount {
            owner: TokenOwner::Operator(OperatorId::from_trusted(id)),
            email,
            password_hash: Some(hash),
            disabled: disabled.is_some(),
        }));
    }
    type AdminRow = (String, String, String, Option<String>, Option<DateTime<Utc>>);
    let admin: Option<AdminRow> = tenant_admins::table
        .filter(lower(tenant_admins::email).eq(&email))
        .select((
            tenant_admins::id,
            tenant_admins::tenant_id,
            tenant_admins::email,
            tenant_admins::password_hash,
            tenant_admins::disabled_at,
        ))
        .first(conn)
        .optional()?;
    Ok(admin.map(|(id, tenant, email, hash, disabled)| LoginAccount {
        owner: TokenOwner::TenantAdmin { admin: AdminId::from_trusted(id), tenant: TenantId::from_trusted(tenant) },
        email,
        password_hash: hash,
        disabled: disabled.is_some(),
    }))
}

pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub owner: &'a TokenOwner,
    pub csrf_secret: &'a [u8],
    pub expires_at: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Stores a new session and stamps the account's last login.
pub fn insert(conn: &mut PgConnection, new: &NewSession<'_>) -> QueryResult<()> {
    let (operator_id, admin_id) = owner_columns(new.owner);
    diesel::insert_into(admin_sessions::table)
        .values((
            admin_sessions::token_hash.eq(new.token_hash),
            admin_sessions::operator_id.eq(operator_id),
            admin_sessions::admin_id.eq(admin_id),
            admin_sessions::csrf_secret.eq(new.csrf_secret),
            admin_sessions::expires_at.eq(new.expires_at),
            admin_sessions::source_ip.eq(new.source_ip.as_deref()),
            admin_sessions::user_agent.eq(new.user_agent.as_deref()),
        ))
        .execute(conn)?;
    let now = Utc::now();
    match new.owner {
        TokenOwner::Operator(id) => {
            diesel::update(operators::table.find(id.as_str())).set(operators::last_login_at.eq(now)).execute(conn)?;
        }
        TokenOwner::TenantAdmin { admin, .. } => {
            diesel::update(tenant_admins::table.find(admin.as_str())).set(tenant_admins::last_login_at.eq(now)).execute(conn)?;
        }
    }
    Ok(())
}

fn owner_columns(owner: &TokenOwner) -> (Option<&str>, Option<&str>) {
    match owner {
        TokenOwner::Operator(op) => (Some(op.as_str()), None),
        TokenOwner::TenantAdmin { admin, .. } => (None, Some(admin.as_str())),
    }
}

/// A stored session with its owner's current state.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub owner: TokenOwner,
    pub email: String,
    pub csrf_secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// False when the owner is disabled: the session must not be honoured.
    pub owner_active: bool,
    /// False for a tenant admin whose tenant is disabled (reads only).
    pub tenant_active: bool,
}

pub fn find(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<Option<SessionRecord>> {
    type Row = (Option<String>, Option<String>, Vec<u8>, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);
    let Some((operator_id, admin_id, csrf_secret, created_at, last_seen_at, expires_at)) = admin_sessions::table
        .find(token_hash)
        .select((
            admin_sessions::operator_id,
            admin_sessions::admin_id,
            admin_sessions::csrf_secret,
            admin_sessions::created_at,
            admin_sessions::last_seen_at,
            admin_sessions::expires_at,
        ))
        .first::<Row>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let record = |owner, email, owner_active, tenant_active| SessionRecord {
        owner,
        email,
        csrf_secret: csrf_secret.clone(),
        created_at,
        last_seen_at,
        expires_at,
        owner_active,
        tenant_active,
    };
    Ok(match (operator_id, admin_id) {
        (Some(op), _) => {
            let (email, disabled): (String, Option<DateTime<Utc>>) =
                operators::table.find(&op).select((operators::email, operators::disabled_at)).first(conn)?;
            Some(record(TokenOwner::Operator(OperatorId::from_trusted(op)), email, disabled.is_none(), true))
        }
        (None, Some(admin)) => {
            let (tenant, email, disabled, status): (String, String, Option<DateTime<Utc>>, TenantStatus) = tenant_admins::table
                .inner_join(tenants::table)
                .filter(tenant_admins::id.eq(&admin))
                .select((tenant_admins::tenant_id, tenant_admins::email, tenant_admins::disabled_at, tenants::status))
                .first(conn)?;
            let owner = TokenOwner::TenantAdmin { admin: AdminId::from_trusted(admin), tenant: TenantId::from_trusted(tenant) };
            Some(record(owner, email, disabled.is_none(), status == TenantStatus::Active))
        }
        (None, None) => None,
    })
}

/// Marks the session used now (the idle timeout counts from here).
pub fn touch(conn: &mut PgConnection, token_hash: &[u8], now: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(admin_sessions::table.find(token_hash)).set(admin_sessions::last_seen_at.eq(now)).execute(conn).map(drop)
}

pub fn delete(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<usize> {
    diesel::delete(admin_sessions::table.find(token_hash)).execute(conn)
}

/// Ends every session of one operator or admin; returns how many there were.
pub fn delete_for_owner(conn: &mut PgConnection, owner: &TokenOwner) -> QueryResult<usize> {
    match owner {
        TokenOwner::Operator(op) => diesel::delete(admin_sessions::table.filter(admin_sessions::operator_id.eq(op.as_str()))).execute(conn),
        TokenOwner::TenantAdmin { admin, .. } => {
            diesel::delete(admin_sessions::table.filter(admin_sessions::admin_id.eq(admin.as_str()))).execute(conn)
        }
    }
}

/// Drops sessions past their absolute lifetime or idle since before `idle_before`.
pub fn purge_expired(conn: &mut PgConnection, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(admin_sessions::table.filter(admin_sessions::expires_at.le(now).or(admin_sessions::last_seen_at.lt(idle_before))))
        .execute(conn)
}

/// Sets a tenant admin's password hash.
pub fn set_admin_password(conn: &mut PgConnection, admin: &AdminId, password_hash: &str) -> QueryResult<()> {
    let n = diesel::update(tenant_admins::table.find(admin.as_str())).set(tenant_admins::password_hash.eq(password_hash)).execute(conn)?;
    if n == 0 { Err(diesel::result::Error::NotFound) } else { Ok(()) }
}

/// Disables a tenant admin of `tenant`; false when there is no such admin there.
pub fn disable_admin(conn: &mut PgConnection, tenant: &TenantId, admin: &AdminId) -> QueryResult<bool> {
    diesel::update(
        tenant_admins::table
            .filter(tenant_admins::id.eq(admin.as_str()))
            .filter(tenant_admins::tenant_id.eq(tenant.as_str()))
            .filter(tenant_admins::disabled_at.is_null()),
    )
    .set(tenant_admins::disabled_at.eq(Utc::now()))
    .execute(conn)
    .map(|n| n > 0)
}
