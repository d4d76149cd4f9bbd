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
    pub occurred_at: DateTime<Utc>,
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
            occurred_at: Utc::now(),
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

    /// Where the request came from and its id, for events caused by an HTTP request.
    pub fn origin(mut self, source_ip: Option<std::net::IpAddr>, request_id: Option<String>) -> Self {
        self.source_ip = source_ip.map(|ip| ip.to_string());
        self.request_id = request_id;
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

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
struct NewAuditRow<'a> {
    occurred_at: DateTime<Utc>,
    id: uuid::Uuid,
    tenant_id: Option<&'a str>,
    actor_kind: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    target_kind: Option<&'a str>,
    target_id: Option<&'a str>,
    outcome: &'a str,
    source_ip: Option<&'a str>,
    request_id: Option<&'a str>,
    details: &'a serde_json::Value,
}

impl<'a> NewAuditRow<'a> {
    fn from_event(e: &'a AuditEvent) -> Self {
        NewAuditRow {
            occurred_at: e.occurred_at,
            id: uuid::Uuid::now_v7(),
            tenant_id: e.tenant_id.as_ref().map(TenantId::as_str),
            actor_kind: e.actor_kind.as_str(),
            actor_id: e.actor_id.as_deref(),
            action: e.action,
            target_kind: e.target_kind,
            target_id: e.target_id.as_deref(),
            outcome: e.outcome.as_str(),
            source_ip: e.source_ip.as_deref(),
            request_id: e.request_id.as_deref(),
            details: &e.details,
        }
    }
}

pub fn insert(conn: &mut PgConnection, event: &AuditEvent) -> QueryResult<()> {
    insert_many(conn, std::slice::from_ref(event))
}

/// One multi-row INSERT for a batch (the background writer's path).
pub fn insert_many(conn: &mut PgConnection, events: &[AuditEvent]) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewAuditRow<'_>> = events.iter().map(NewAuditRow::from_event).collect();
    diesel::insert_into(audit_events::table).values(&rows).execute(conn).map(drop)
}

/// A tenant's audit events, newest first.
pub fn list_for_tenant(conn: &mut PgConnection, tenant: &TenantId, limit: i64) -> QueryResult<Vec<AuditRow>> {
    audit_events::table
        .filter(audit_events::tenant_id.eq(tenant.as_str()))
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)
}

/// What the audit pages filter on; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An action or an action prefix (`api_key.` matches every API-key action).
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Audit events newest first, one page: a tenant's (`Some`) or everyone's (`None`, operators).
pub fn list_filtered(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_events::table.into_boxed();
    if let Some(t) = tenant {
        query = query.filter(audit_events::tenant_id.eq(t.as_str()));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor_id.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        let escaped = action.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        query = query.filter(audit_events::action.like(format!("{escaped}%")));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::occurred_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::occurred_at.lt(to));
    }
    query
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(AuditRow::as_select())
        .load(conn)
}
