//! Tenant admin accounts and management-API tokens (operators' and tenant admins').

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{management_tokens, operators, tenant_admins, tenants};
use crate::domain::{AdminId, OperatorId, TenantId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tenant_admins, check_for_backend(diesel::pg::Pg))]
pub struct TenantAdmin {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

pub fn insert_admin(
    conn: &mut PgConnection,
    id: &AdminId,
    tenant: &TenantId,
    email: &str,
    password_hash: Option<&str>,
) -> QueryResult<TenantAdmin> {
    diesel::insert_into(tenant_admins::table)
        .values((
            tenant_admins::id.eq(id.as_str()),
            tenant_admins::tenant_id.eq(tenant.as_str()),
            tenant_admins::email.eq(email),
            tenant_admins::password_hash.eq(password_hash),
        ))
        .returning(TenantAdmin::as_returning())
        .get_result(conn)
}

/// Who a management token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    Operator(OperatorId),
    TenantAdmin { admin: AdminId, tenant: TenantId },
}

#[derive(Debug, Clone)]
pub struct ManagementTokenRecord {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub owner: TokenOwner,
    pub usable: bool,
    /// False when the token acts for a tenant admin whose tenant is disabled: such a caller may
    /// still read, never change.
    pub tenant_active: bool,
}

pub fn insert_token(conn: &mut PgConnection, id: &str, owner: &TokenOwner, name: &str, secret_hash: &[u8]) -> QueryResult<()> {
    let (operator_id, admin_id) = match owner {
        TokenOwner::Operator(op) => (Some(op.as_str()), None),
        TokenOwner::TenantAdmin { admin, .. } => (None, Some(admin.as_str())),
    };
    diesel::insert_into(management_tokens::table)
        .values((
            management_tokens::id.eq(id),
            management_tokens::operator_id.eq(operator_id),
            management_tokens::admin_id.eq(admin_id),
            management_tokens::name.eq(name),
            management_tokens::secret_hash.eq(secret_hash),
        ))
        .execute(conn)
        .map(drop)
}

/// The token with its owner; `usable` is false when revoked, expired or its owner is disabled.
pub fn find_token_for_authentication(conn: &mut PgConnection, id: &str) -> QueryResult<Option<ManagementTokenRecord>> {
    type Row = (String, Vec<u8>, Option<String>, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let Some((id, hash, operator_id, admin_id, expires_at, revoked_at)) = management_tokens::table
        .filter(management_tokens::id.eq(id))
        .select((
            management_tokens::id,
            management_tokens::secret_hash,
            management_tokens::operator_id,
            management_tokens::admin_id,
            management_tokens::expires_at,
            management_tokens::revoked_at,
        ))
        .first::<Row>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    let mut usable = revoked_at.is_none() && expires_at.is_none_or(|e| e > now);
    let mut tenant_active = true;
    let owner = match (operator_id, admin_id) {
        (Some(op), _) => {
            let disabled: Option<DateTime<Utc>> = operators::table.find(&op).select(operators::disabled_at).first(conn)?;
            usable &= disabled.is_none();
            TokenOwner::Operator(OperatorId::from_trusted(op))
        }
        (None, Some(admin)) => {
            let (tenant, disabled, status): (String, Option<DateTime<Utc>>, crate::domain::TenantStatus) = tenant_admins::table
                .inner_join(tenants::table)
                .filter(tenant_admins::id.eq(&admin))
                .select((tenant_admins::tenant_id, tenant_admins::disabled_at, tenants::status))
                .first(conn)?;
            usable &= disabled.is_none();
            tenant_active = status == crate::domain::TenantStatus::Active;
            TokenOwner::TenantAdmin { admin: AdminId::from_trusted(admin), tenant: TenantId::from_trusted(tenant) }
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(ManagementTokenRecord { id, secret_hash: hash, owner, usable, tenant_active }))
}
