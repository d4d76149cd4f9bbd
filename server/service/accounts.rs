//! Management-API identities: operator tokens and tenant admins with their tokens.

use diesel::{Connection, PgConnection};
use serde::Serialize;

use super::{Actor, ServiceError};
use crate::auth::secrets::{self, Pepper};
use crate::db::admins::{self, TokenOwner};
use crate::db::{DbError, audit, operators};
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

/// A tenant admin account (no password until they set one) and a management token for it.
pub fn create_admin(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    email: &str,
    actor: &Actor,
) -> Result<IssuedToken, ServiceError> {
    crate::db::tenants::find(conn, tenant).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::NotFound(format!("no tenant `{tenant}`")),
        other => other.into(),
    })?;
    let admin = AdminId::generate();
    conn.transaction(|conn| {
        admins::insert_admin(conn, &admin, tenant, email, None).map_err(|e| match DbError::from(e) {
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
