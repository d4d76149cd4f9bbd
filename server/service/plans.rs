//! Plans (operators): rate limits, quotas, scheduling weight and request policy shared by the
//! tenants on them. A change reaches every instance within 5 s (policy caches live ≤ 5 s).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Schema};

use super::{Actor, ServiceError};
use crate::db::schema::plans;
use crate::db::{DbError, audit};
use crate::domain::{PlanId, Scopes};

/// Every setting of a plan. On create and on replace (`PUT`), an omitted limit or quota means
/// unlimited and an omitted setting takes its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, AsChangeset, Insertable)]
#[serde(deny_unknown_fields)]
#[diesel(table_name = plans, treat_none_as_null = true)]
pub struct PlanSpec {
    pub name: String,
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub audio_seconds_per_minute: Option<i32>,
    pub concurrent_requests: Option<i32>,
    pub daily_token_quota: Option<i64>,
    pub monthly_token_quota: Option<i64>,
    /// Crossing 80% and 100% of it writes alerts; requests are not refused.
    pub monthly_token_soft_quota: Option<i64>,
    pub daily_request_quota: Option<i64>,
    pub monthly_request_quota: Option<i64>,
    pub daily_audio_seconds_quota: Option<i64>,
    pub monthly_audio_seconds_quota: Option<i64>,
    /// Weighted fair queuing weight, 1 to 1000 (default 1).
    #[serde(default = "default_weight")]
    pub queue_weight: i32,
    pub max_tokens_cap: Option<i32>,
    pub default_max_tokens: Option<i32>,
    pub max_prompt_chars: Option<i32>,
    /// Largest audio upload in bytes (default 25 MiB).
    #[serde(default = "default_audio_bytes")]
    pub max_audio_bytes: i64,
    /// Model names the plan may call; `*` = all (default).
    #[serde(default = "all_models")]
    pub allowed_models: Vec<String>,
    /// Scopes tenant credentials may be granted (default: models:read, chat:completions, audio:align).
    #[serde(default = "default_entitlements")]
    pub entitlements: Vec<String>,
}

fn default_weight() -> i32 {
    1
}
fn default_audio_bytes() -> i64 {
    25 * 1024 * 1024
}
fn all_models() -> Vec<String> {
    vec!["*".into()]
}
fn default_entitlements() -> Vec<String> {
    vec!["models:read".into(), "chat:completions".into(), "audio:align".into()]
}

/// A plan as shown: its id and timestamps beside every setting.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub id: String,
    #[serde(flatten)]
    pub spec: PlanSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `PlanSpec`'s properties and `PlanView`'s own in one object. The derived schema would be an
/// `allOf` with `PlanSpec`, which refuses unknown fields (`additionalProperties: false`, for
/// requests), and so would refuse `id` and the timestamps of every plan shown.
impl utoipa::PartialSchema for PlanView {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let spec = <PlanSpec as utoipa::PartialSchema>::schema();
        let RefOr::T(Schema::Object(mut object)) = spec else { return spec };
        object.additional_properties = None;
        object.description = Some("A plan: its id and timestamps, and every setting of `PlanSpec`.".into());
        let time = || ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
        object.properties.insert("id".into(), ObjectBuilder::new().schema_type(Type::String).into());
        object.properties.insert("created_at".into(), time().into());
        object.properties.insert("updated_at".into(), time().into());
        object.required.extend(["id", "created_at", "updated_at"].map(String::from));
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for PlanView {}

impl From<crate::db::plans::Plan> for PlanView {
    fn from(p: crate::db::plans::Plan) -> Self {
        PlanView {
            id: p.id,
            spec: PlanSpec {
                name: p.name,
                requests_per_minute: p.requests_per_minute,
                tokens_per_minute: p.tokens_per_minute,
                audio_seconds_per_minute: p.audio_seconds_per_minute,
                concurrent_requests: p.concurrent_requests,
                daily_token_quota: p.daily_token_quota,
                monthly_token_quota: p.monthly_token_quota,
                monthly_token_soft_quota: p.monthly_token_soft_quota,
                daily_request_quota: p.daily_request_quota,
                monthly_request_quota: p.monthly_request_quota,
                daily_audio_seconds_quota: p.daily_audio_seconds_quota,
                monthly_audio_seconds_quota: p.monthly_audio_seconds_quota,
                queue_weight: p.queue_weight,
                max_tokens_cap: p.max_tokens_cap,
                default_max_tokens: p.default_max_tokens,
                max_prompt_chars: p.max_prompt_chars,
                max_audio_bytes: p.max_audio_bytes,
                allowed_models: p.allowed_models,
                entitlements: p.entitlements,
            },
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl PlanSpec {
    /// Refuses negative, zero and contradictory values, naming the field.
    pub fn validate(&self) -> Result<(), ServiceError> {
        super::validate_name("name", &self.name)?;
        fn positive<T: Into<i64> + Copy>(field: &'static str, v: Option<T>) -> Result<(), ServiceError> {
            match v.map(Into::into) {
                Some(n) if n <= 0 => Err(ServiceError::invalid(field, format!("must be positive (got {n}); omit it for unlimited"))),
                _ => Ok(()),
            }
        }
        positive("requests_per_minute", self.requests_per_minute)?;
        positive("tokens_per_minute", self.tokens_per_minute)?;
        positive("audio_seconds_per_minute", self.audio_seconds_per_minute)?;
        positive("concurrent_requests", self.concurrent_requests)?;
        positive("daily_token_quota", self.daily_token_quota)?;
        positive("monthly_token_quota", self.monthly_token_quota)?;
        positive("monthly_token_soft_quota", self.monthly_token_soft_quota)?;
        positive("daily_request_quota", self.daily_request_quota)?;
        positive("monthly_request_quota", self.monthly_request_quota)?;
        positive("daily_audio_seconds_quota", self.daily_audio_seconds_quota)?;
        positive("monthly_audio_seconds_quota", self.monthly_audio_seconds_quota)?;
        positive("max_tokens_cap", self.max_tokens_cap)?;
        positive("default_max_tokens", self.default_max_tokens)?;
        positive("max_prompt_chars", self.max_prompt_chars)?;
        positive("max_audio_bytes", Some(self.max_audio_bytes))?;
        if !(1..=1000).contains(&self.queue_weight) {
            return Err(ServiceError::invalid("queue_weight", "must be between 1 and 1000"));
        }
        let above = |a: Option<i64>, b: Option<i64>| matches!((a, b), (Some(a), Some(b)) if a > b);
        if above(self.default_max_tokens.map(i64::from), self.max_tokens_cap.map(i64::from)) {
            return Err(ServiceError::invalid("default_max_tokens", "must not exceed max_tokens_cap"));
        }
        if above(self.monthly_token_soft_quota, self.monthly_token_quota) {
            return Err(ServiceError::invalid("monthly_token_soft_quota", "must not exceed monthly_token_quota"));
        }
        for (field, day, month) in [
            ("daily_token_quota", self.daily_token_quota, self.monthly_token_quota),
            ("daily_request_quota", self.daily_request_quota, self.monthly_request_quota),
            ("daily_audio_seconds_quota", self.daily_audio_seconds_quota, self.monthly_audio_seconds_quota),
        ] {
            if above(day, month) {
                return Err(ServiceError::invalid(field, "must not exceed the monthly quota"));
            }
        }
        if let (Some(tpm), Some(cap)) = (self.tokens_per_minute, self.max_tokens_cap) {
            if i64::from(cap) > tpm {
                return Err(ServiceError::invalid("max_tokens_cap", "must not exceed tokens_per_minute (no request could be admitted)"));
            }
        }
        if self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m.trim().is_empty() || m.len() > 200) {
            return Err(ServiceError::invalid("allowed_models", "must list model names (or `*`), each 1 to 200 characters"));
        }
        Scopes::parse(&self.entitlements.join(" ")).map_err(|e| ServiceError::invalid("entitlements", e.to_string()))?;
        Ok(())
    }
}

pub fn list(conn: &mut PgConnection) -> Result<Vec<PlanView>, ServiceError> {
    Ok(crate::db::plans::list_all(conn)?.into_iter().map(PlanView::from).collect())
}

pub fn create(conn: &mut PgConnection, spec: &PlanSpec, actor: &Actor) -> Result<PlanView, ServiceError> {
    spec.validate()?;
    let id = PlanId::generate();
    let result = conn.transaction(|conn| {
        diesel::insert_into(plans::table).values((plans::id.eq(id.as_str()), spec)).execute(conn)?;
        audit::insert(
            conn,
            &actor.event("plan.create").target("plan", id.as_str()).details(serde_json::to_value(spec).unwrap_or_default()),
        )?;
        crate::db::plans::find(conn, &id)
    });
    result.map(PlanView::from).map_err(|e| match DbError::from(e) {
        DbError::Conflict(_) => ServiceError::Conflict(format!("a plan named `{}` already exists", spec.name)),
        other => other.into(),
    })
}

/// Replaces every setting of the plan named or identified by `plan`.
pub fn replace(conn: &mut PgConnection, plan: &str, spec: &PlanSpec, actor: &Actor) -> Result<PlanView, ServiceError> {
    spec.validate()?;
    let result = conn.transaction(|conn| {
        let id: String = plans::table.filter(plans::id.eq(plan).or(plans::name.eq(plan))).select(plans::id).first(conn)?;
        diesel::update(plans::table.find(&id)).set((spec, plans::updated_at.eq(diesel::dsl::now))).execute(conn)?;
        audit::insert(conn, &actor.event("plan.update").target("plan", &id).details(serde_json::to_value(spec).unwrap_or_default()))?;
        crate::db::plans::find(conn, &PlanId::from_trusted(id))
    });
    result.map(PlanView::from).map_err(|e| match DbError::from(e) {
        DbError::NotFound => ServiceError::NotFound(format!("no plan `{plan}`")),
        DbError::Conflict(_) => ServiceError::Conflict(format!("a plan named `{}` already exists", spec.name)),
        other => other.into(),
    })
}

/// A credential's own limits; `None` = only the tenant's plan applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialLimits {
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub audio_seconds_per_minute: Option<i32>,
    pub concurrent_requests: Option<i32>,
}

impl CredentialLimits {
    pub fn validate(&self) -> Result<(), ServiceError> {
        for (field, v) in [
            ("requests_per_minute", self.requests_per_minute.map(i64::from)),
            ("tokens_per_minute", self.tokens_per_minute),
            ("audio_seconds_per_minute", self.audio_seconds_per_minute.map(i64::from)),
            ("concurrent_requests", self.concurrent_requests.map(i64::from)),
        ] {
            if let Some(n) = v.filter(|n| *n <= 0) {
                return Err(ServiceError::invalid(field, format!("must be positive (got {n}); null for the plan's limit")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PlanSpec {
        PlanSpec {
            name: "pro".into(),
            queue_weight: 1,
            max_audio_bytes: default_audio_bytes(),
            allowed_models: all_models(),
            entitlements: default_entitlements(),
            ..PlanSpec::default()
        }
    }

    fn field_of(spec: PlanSpec) -> &'static str {
        match spec.validate() {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn negative_and_contradictory_limits_name_the_field() {
        assert!(spec().validate().is_ok());
        assert_eq!(field_of(PlanSpec { requests_per_minute: Some(-5), ..spec() }), "requests_per_minute");
        assert_eq!(field_of(PlanSpec { tokens_per_minute: Some(0), ..spec() }), "tokens_per_minute");
        assert_eq!(
            field_of(PlanSpec { monthly_token_quota: Some(100), monthly_token_soft_quota: Some(200), ..spec() }),
            "monthly_token_soft_quota"
        );
        assert_eq!(field_of(PlanSpec { daily_request_quota: Some(50), monthly_request_quota: Some(10), ..spec() }), "daily_request_quota");
        assert_eq!(field_of(PlanSpec { max_tokens_cap: Some(100), default_max_tokens: Some(500), ..spec() }), "default_max_tokens");
        assert_eq!(field_of(PlanSpec { tokens_per_minute: Some(100), max_tokens_cap: Some(500), ..spec() }), "max_tokens_cap");
        assert_eq!(field_of(PlanSpec { queue_weight: 0, ..spec() }), "queue_weight");
        assert_eq!(field_of(PlanSpec { entitlements: vec!["root".into()], ..spec() }), "entitlements");
    }
}
