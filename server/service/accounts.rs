//! Management-API identities: operator tokens and tenant admins with their tokens.

use diesel::prelude::*;
use diesel::{Connection, PgConnection};
use serde::Serialize;

use super::{Actor, ServiceError};
use crate::auth::password;
use crate::auth::secrets::{self, Pepper};
use crate::db::admins::{self, TokenOwner};
use crate::db::{DbError, audit, operators, sessions};
use crate::domain::{AdminId, TenantId};

#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token_id: String,
    /// The management token, shown once. Send it as `Authorization: Bearer …` to /api/v1.
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

fn issue(
    conn: &mut PgConnection,
    pepper: &Pepper,
    owner: &TokenOwner,
    name: &str,
    actor: &Actor,
) -> Result<(String, String), ServiceError> {
    let new = secrets::generate_management_token();
    let hash = pepper.hash(&new.full);
    admins::insert_token(conn, &new.id, owner, name, &hash)?;
    let mut event = actor.event("management_token.create").target("management_token", new.id.as_str());
    if let TokenOwner::TenantAdmin { tenant, .. } = owner {
        event = event.tenant(tenant);
    }
    audit::insert(conn, &event)?;
    Ok((new.id, new.full))
}

/// A management token for an existing operator (by email).
pub fn create_operator_token(
    conn: &mut PgConnection,
    pepper: &Pepper,
    email: &str,
    name: &str,
    actor: &Actor,
) -> Result<IssuedToken, ServiceError> {
    let op = operators::find_by_email(conn, email).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::NotFound(format!("no operator with email `{email}`")),
        other => other.into(),
    })?;
    conn.transaction(|conn| {
        let (token_id, token) = issue(conn, pepper, &TokenOwner::Operator(op.id()), name, actor)?;
        Ok(IssuedToken {
            token_id,
            token,
            operator_id: Some(op.id.clone()),
            admin_id: None,
            tenant_id: None,
            email: Some(op.email.clone()),
        })
    })
}

/// A tenant admin account and a management token for it. `password_hash` (argon2id, from
/// `auth::password::hash`) lets the admin sign in to the dashboard; without one they cannot
/// until a password is set.
pub fn create_admin(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    email: &str,
    password_hash: Option<&str>,
    actor: &Actor,
) -> Result<IssuedToken, ServiceError> {
    crate::db::tenants::find(conn, tenant).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::NotFound(format!("no tenant `{tenant}`")),
        other => other.into(),
    })?;
    let admin = AdminId::generate();
    conn.transaction(|conn| {
        admins::insert_admin(conn, &admin, tenant, email, password_hash).map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => ServiceError::Conflict(format!("an admin with email `{email}` already exists")),
            other => other.into(),
        })?;
        audit::insert(conn, &actor.event("tenant_admin.create").tenant(tenant).target("tenant_admin", admin.as_str()))?;
        let owner = TokenOwner::TenantAdmin { admin: admin.clone(), tenant: tenant.clone() };
        let (token_id, token) = issue(conn, pepper, &owner, "cli", actor)?;
        Ok(IssuedToken {
            token_id,
            token,
            operator_id: None,
            admin_id: Some(admin.to_string()),
            tenant_id: Some(tenant.to_string()),
            email: Some(email.to_owned()),
        })
    })
}

/// Changes the password of a dashboard user after checking the current one, and ends every
/// session they have (the caller signs them in again). The new password must pass the policy.
pub fn change_password(
    conn: &mut PgConnection,
    owner: &TokenOwner,
    current: &str,
    new: &str,
    actor: &Actor,
) -> Result<usize, ServiceError> {
    let stored = match owner {
        TokenOwner::Operator(id) => crate::db::schema::operators::table
            .find(id.as_str())
            .select(crate::db::schema::operators::password_hash)
            .first::<String>(conn)
            .map(Some)?,
        TokenOwner::TenantAdmin { admin, .. } => crate::db::schema::tenant_admins::table
            .find(admin.as_str())
            .select(crate::db::schema::tenant_admins::password_hash)
            .first::<Option<String>>(conn)?,
    };
    if !stored.as_deref().is_some_and(|h| password::verify(current, h)) {
        return Err(ServiceError::invalid("current_password", "is not your current password"));
    }
    if new == current {
        return Err(ServiceError::invalid("new_password", "must differ from the current password"));
    }
    let hash = password::hash(new).map_err(|e| match e {
        password::PasswordError::Hash(m) => ServiceError::Db(DbError::Other(anyhow::anyhow!(m))),
        other => ServiceError::invalid("new_password", other.to_string()),
    })?;
    conn.transaction(|conn| {
        let mut event = actor.event("password.change");
        match owner {
            TokenOwner::Operator(id) => {
                operators::update_password(conn, id, &hash)?;
                event = event.target("operator", id.as_str());
            }
            TokenOwner::TenantAdmin { admin, tenant } => {
                sessions::set_admin_password(conn, admin, &hash)?;
                event = event.tenant(tenant).target("tenant_admin", admin.as_str());
            }
        }
        let ended = sessions::delete_for_owner(conn, owner)?;
        audit::insert(conn, &event.details(serde_json::json!({ "sessions_ended": ended })))?;
        Ok(ended)
    })
}

/// Disables a tenant admin of `tenant` and ends every dashboard session they have.
pub fn disable_admin(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str, actor: &Actor) -> Result<usize, ServiceError> {
    let not_found = || ServiceError::NotFound("tenant admin not found".into());
    let admin = AdminId::parse(raw_id).map_err(|_| not_found())?;
    conn.transaction(|conn| {
        if !sessions::disable_admin(conn, tenant, &admin)? {
            return Err(not_found());
        }
        let owner = TokenOwner::TenantAdmin { admin: admin.clone(), tenant: tenant.clone() };
        let ended = sessions::delete_for_owner(conn, &owner)?;
        audit::insert(
            conn,
            &actor
                .event("tenant_admin.disable")
                .tenant(tenant)
                .target("tenant_admin", admin.as_str())
                .details(serde_json::json!({ "sessions_ended": ended })),
        )?;
        Ok(ended)
    })
}
