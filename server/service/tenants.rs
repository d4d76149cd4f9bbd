//! Tenants: create and disable (operators), show (operators and the tenant's own admins).

use diesel::{Connection, PgConnection};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::db::tenants::{self, NewTenant, TenantView};
use crate::db::{DbError, audit, plans};
use crate::domain::{Slug, TenantId, TimeZone, validate_tenant_name};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Display name.
    pub name: String,
    /// URL-safe handle; derived from the name when omitted.
    pub slug: Option<String>,
    /// IANA time zone for quota periods (default UTC).
    pub time_zone: Option<String>,
    /// Plan name (default "default").
    pub plan: Option<String>,
}

pub fn create(conn: &mut PgConnection, req: &CreateTenantRequest, actor: &Actor) -> Result<TenantView, ServiceError> {
    let name = validate_tenant_name(&req.name).map_err(|e| ServiceError::invalid("name", e.to_string()))?;
    let slug = match &req.slug {
        Some(s) => Slug::parse(s),
        None => Slug::from_name(name),
    }
    .map_err(|e| ServiceError::invalid("slug", e.to_string()))?;
    let tz = TimeZone::parse(req.time_zone.as_deref().unwrap_or("UTC")).map_err(|e| ServiceError::invalid("time_zone", e.to_string()))?;
    let plan_name = req.plan.as_deref().unwrap_or("default");
    let plan = plans::find_by_name(conn, plan_name).map_err(|e| match e {
        diesel::result::Error::NotFound => ServiceError::invalid("plan", format!("no plan named `{plan_name}`")),
        other => other.into(),
    })?;
    let id = TenantId::generate();
    let result = conn.transaction(|conn| {
        tenants::insert(conn, &NewTenant { id: id.as_str(), slug: slug.as_str(), name, time_zone: tz.name(), plan_id: &plan.id })?;
        audit::insert(
            conn,
            &actor
                .event("tenant.create")
                .tenant(&id)
                .target("tenant", id.as_str())
                .details(serde_json::json!({ "slug": slug.as_str(), "plan": plan.name })),
        )?;
        tenants::find_view(conn, &id)
    });
    result.map_err(|e| match DbError::from(e) {
        DbError::Conflict(_) => ServiceError::Conflict(format!("a tenant with slug `{slug}` already exists")),
        other => other.into(),
    })
}

/// Disables a tenant (its credentials stop working within the cache TTL). Idempotent.
pub fn disable(conn: &mut PgConnection, id: &TenantId, actor: &Actor) -> Result<TenantView, ServiceError> {
    conn.transaction(|conn| {
        if tenants::disable(conn, id)? {
            audit::insert(conn, &actor.event("tenant.disable").tenant(id).target("tenant", id.as_str()))?;
        }
        Ok(tenants::find_view(conn, id)?)
    })
}
