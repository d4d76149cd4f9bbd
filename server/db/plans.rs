//! Plans: limits, quotas, scheduling weight and allowed models. Installation-wide (not tenant
//! data): tenants reference one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::plans;
use crate::domain::PlanId;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub audio_seconds_per_minute: Option<i32>,
    pub concurrent_requests: Option<i32>,
    pub daily_token_quota: Option<i64>,
    pub monthly_token_quota: Option<i64>,
    pub monthly_token_soft_quota: Option<i64>,
    pub daily_request_quota: Option<i64>,
    pub monthly_request_quota: Option<i64>,
    pub daily_audio_seconds_quota: Option<i64>,
    pub monthly_audio_seconds_quota: Option<i64>,
    pub queue_weight: i32,
    pub max_tokens_cap: Option<i32>,
    pub default_max_tokens: Option<i32>,
    pub max_prompt_chars: Option<i32>,
    pub max_audio_bytes: i64,
    pub allowed_models: Vec<String>,
    pub entitlements: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Plan {
    pub fn id(&self) -> PlanId {
        PlanId::from_trusted(self.id.clone())
    }
}

pub fn find_by_name(conn: &mut PgConnection, name: &str) -> QueryResult<Plan> {
    plans::table.filter(plans::name.eq(name)).select(Plan::as_select()).first(conn)
}

pub fn find(conn: &mut PgConnection, id: &PlanId) -> QueryResult<Plan> {
    plans::table.find(id.as_str()).select(Plan::as_select()).first(conn)
}

pub fn list_all(conn: &mut PgConnection) -> QueryResult<Vec<Plan>> {
    plans::table.order(plans::name).select(Plan::as_select()).load(conn)
}
