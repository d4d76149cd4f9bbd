//! Audit events: who did what to which target, from where, with what outcome. Rows are lean and
//! never hold a secret, token, key or prompt. Stored in monthly partitions (see `partitions`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_events;
use crate::domain::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Operator,
    TenantAdmin,
    Client,
    ApiKey,
    System,
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Operator => "operator",
            ActorKind::TenantAdmin => "tenant_admin",
            ActorKind::Client => "client",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An audit event to record. Build with `AuditEvent::new` and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub tenant_id: Option<TenantId>,
    pub actor_kind: ActorKind,
    pub actor_id: Option<String>,
    pub action: &'static str,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(actor_kind: ActorKind, action: &'static str, outcome: Outcome) -> Self {
        AuditEvent {
            tenant_id: None,
            actor_kind,
            actor_id: None,
            action,
            target_kind: None,
            target_id: None,
            outcome,
            source_ip: None,
            request_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn tenant(mut self, tenant: &TenantId) -> Self {
        self.tenant_id = Some(tenant.clone());
        self
    }

    pub fn actor(mut self, id: impl Into<String>) -> Self {
        self.actor_id = Some(id.into());
        self
    }

    pub fn target(mut self, kind: &'static str, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub occurred_at: DateTime<Utc>,
    pub id: uuid::Uuid,
    pub tenant_id: Option<String>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

pub fn insert(conn: &mut PgConnection, event: &AuditEvent) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::occurred_at.eq(Utc::now()),
            audit_events::id.eq(uuid::Uuid::now_v7()),
            audit_events::tenant_id.eq(event.tenant_id.as_ref().map(TenantId::as_str)),
            audit_events::actor_kind.eq(event.actor_kind.as_str()),
            audit_events::actor_id.eq(event.actor_id.as_deref()),
            audit_events::action.eq(event.action),
            audit_events::target_kind.eq(event.target_kind),
            audit_events::target_id.eq(event.target_id.as_deref()),
            audit_events::outcome.eq(event.outcome.as_str()),
            audit_events::source_ip.eq(event.source_ip.as_deref()),
            audit_events::request_id.eq(event.request_id.as_deref()),
            audit_events::details.eq(&event.details),
        ))
        .execute(conn)
        .map(drop)
}

/// A tenant's audit events, newest first.
pub fn list_for_tenant(
    conn: &mut PgConnection,
    tenant: &TenantId,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    audit_events::table
        .filter(audit_events::tenant_id.eq(tenant.as_str()))
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)
}
