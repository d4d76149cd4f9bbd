//! Tenants. Listing every tenant is an operator capability and says so in its name (`list_all`);
//! everything else addresses one tenant by its `TenantId` or slug.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{plans, tenants};
use crate::domain::prompt_rules::PackChoice;
use crate::domain::{PlanId, Slug, TenantId, TenantStatus};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub time_zone: String,
    pub plan_id: String,
    pub prompt_deny_patterns: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// A JSON array of `PackChoice`s (see `domain::prompt_rules`).
    pub prompt_rule_packs: serde_json::Value,
    pub cors_origins: Vec<String>,
}

impl Tenant {
    pub fn id(&self) -> TenantId {
        TenantId::from_trusted(self.id.clone())
    }

    pub fn status(&self) -> TenantStatus {
        self.status
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = tenants)]
pub struct NewTenant<'a> {
    pub id: &'a str,
    pub slug: &'a str,
    pub name: &'a str,
    pub time_zone: &'a str,
    pub plan_id: &'a str,
}

/// A tenant with its plan's name, as shown by the CLI and the management API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub time_zone: String,
    pub plan: String,
    /// Regular expressions refused in prompts (case-insensitive).
    pub prompt_deny_patterns: Vec<String>,
    /// The prompt rule packs enabled, each with its action override if any.
    pub prompt_rule_packs: Vec<PackChoice>,
    /// Origins whose browser pages may call `/v1` and `/oauth2/token` with this tenant's
    /// credentials (CORS); empty: none.
    pub cors_origins: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl TenantView {
    fn from_parts((t, plan): (Tenant, String)) -> Self {
        TenantView {
            id: t.id,
            slug: t.slug,
            name: t.name,
            status: t.status,
            time_zone: t.time_zone,
            plan,
            prompt_deny_patterns: t.prompt_deny_patterns,
            // The column's check keeps it an array and only validated choices are written.
            prompt_rule_packs: PackChoice::list_from_json(&t.prompt_rule_packs).unwrap_or_default(),
            cors_origins: t.cors_origins,
            created_at: t.created_at,
            disabled_at: t.disabled_at,
        }
    }
}

pub fn insert(conn: &mut PgConnection, new: &NewTenant<'_>) -> QueryResult<Tenant> {
    diesel::insert_into(tenants::table).values(new).returning(Tenant::as_returning()).get_result(conn)
}

pub fn find(conn: &mut PgConnection, id: &TenantId) -> QueryResult<Tenant> {
    tenants::table.find(id.as_str()).select(Tenant::as_select()).first(conn)
}

pub fn find_by_slug(conn: &mut PgConnection, slug: &Slug) -> QueryResult<Tenant> {
    tenants::table.filter(tenants::slug.eq(slug.as_str())).select(Tenant::as_select()).first(conn)
}

pub fn find_view(conn: &mut PgConnection, id: &TenantId) -> QueryResult<TenantView> {
    tenants::table
        .inner_join(plans::table)
        .filter(tenants::id.eq(id.as_str()))
        .select((Tenant::as_select(), plans::name))
        .first(conn)
        .map(TenantView::from_parts)
}

/// Every tenant, oldest first. Operator capability.
pub fn list_all(conn: &mut PgConnection) -> QueryResult<Vec<TenantView>> {
    tenants::table
        .inner_join(plans::table)
        .order((tenants::created_at, tenants::id))
        .select((Tenant::as_select(), plans::name))
        .load(conn)
        .map(|rows| rows.into_iter().map(TenantView::from_parts).collect())
}

/// The CORS origins of every active tenant that has any, as (tenant id, origins). Read by the
/// edge each sync round.
pub fn cors_origins_of_all_tenants(conn: &mut PgConnection) -> QueryResult<Vec<(String, Vec<String>)>> {
    tenants::table
        .filter(tenants::status.eq(TenantStatus::Active))
        .filter(tenants::cors_origins.ne(Vec::<String>::new()))
        .select((tenants::id, tenants::cors_origins))
        .load(conn)
}

/// Disables a tenant; returns false when it was already disabled.
pub fn disable(conn: &mut PgConnection, id: &TenantId) -> QueryResult<bool> {
    let now = Utc::now();
    let changed = diesel::update(tenants::table.find(id.as_str()))
        .filter(tenants::status.eq(TenantStatus::Active))
        .set((tenants::status.eq(TenantStatus::Disabled), tenants::disabled_at.eq(Some(now)), tenants::updated_at.eq(now)))
        .execute(conn)?;
    Ok(changed == 1)
}

pub fn plan_id_of(tenant: &Tenant) -> PlanId {
    PlanId::from_trusted(tenant.plan_id.clone())
}
