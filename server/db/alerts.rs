//! Alert recipients (on-call addresses, and each tenant's own), alert states (the conditions
//! firing now, shared by every instance) and the alert outbox the `AlertMailer` drains. Tenant
//! recipients and tenant alerts are always read with their `TenantId`; the functions that read
//! every tenant's say so in their names and serve operators.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::schema::{alert_outbox, alert_recipients, alert_silences, alert_states};
use crate::domain::{Severity, TenantId};

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alert_recipients, check_for_backend(diesel::pg::Pg))]
pub struct Recipient {
    pub id: String,
    pub email: String,
    /// None: an on-call address for the platform.
    pub tenant_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Adds a recipient; the same address twice for one scope is a `UniqueViolation`.
pub fn insert_recipient(conn: &mut PgConnection, id: &str, email: &str, tenant: Option<&TenantId>) -> QueryResult<Recipient> {
    diesel::insert_into(alert_recipients::table)
        .values((
            alert_recipients::id.eq(id),
            alert_recipients::email.eq(email),
            alert_recipients::tenant_id.eq(tenant.map(TenantId::as_str)),
        ))
        .returning(Recipient::as_returning())
        .get_result(conn)
}

pub fn list_tenant_recipients(conn: &mut PgConnection, tenant: &TenantId) -> QueryResult<Vec<Recipient>> {
    alert_recipients::table
        .filter(alert_recipients::tenant_id.eq(tenant.as_str()))
        .order(alert_recipients::created_at)
        .select(Recipient::as_select())
        .load(conn)
}

/// Operators only: the on-call addresses and every tenant's recipients.
pub fn list_all_recipients(conn: &mut PgConnection) -> QueryResult<Vec<Recipient>> {
    alert_recipients::table.order(alert_recipients::created_at).select(Recipient::as_select()).load(conn)
}

pub fn list_oncall_recipients(conn: &mut PgConnection) -> QueryResult<Vec<Recipient>> {
    alert_recipients::table
        .filter(alert_recipients::tenant_id.is_null())
        .order(alert_recipients::created_at)
        .select(Recipient::as_select())
        .load(conn)
}

/// Removes one of the tenant's recipients; 0 when the tenant has no such recipient.
pub fn delete_tenant_recipient(conn: &mut PgConnection, tenant: &TenantId, id: &str) -> QueryResult<usize> {
    diesel::delete(alert_recipients::table.filter(alert_recipients::id.eq(id)).filter(alert_recipients::tenant_id.eq(tenant.as_str())))
        .execute(conn)
}

/// Operators only: removes any recipient, on-call or a tenant's.
pub fn delete_any_recipient(conn: &mut PgConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(alert_recipients::table.find(id)).execute(conn)
}

/// An alert to send.
pub struct NewAlert<'a> {
    /// None: a platform alert (on-call recipients only).
    pub tenant: Option<&'a TenantId>,
    pub kind: &'a str,
    /// The same key twice is the same alert: the second insert does nothing.
    pub dedup_key: &'a str,
    pub severity: Severity,
    pub payload: &'a serde_json::Value,
}

/// Queues an alert; false when one with the same dedup key exists.
pub fn enqueue(conn: &mut PgConnection, alert: &NewAlert<'_>) -> QueryResult<bool> {
    let n = diesel::insert_into(alert_outbox::table)
        .values((
            alert_outbox::tenant_id.eq(alert.tenant.map(TenantId::as_str)),
            alert_outbox::kind.eq(alert.kind),
            alert_outbox::dedup_key.eq(alert.dedup_key),
            alert_outbox::severity.eq(alert.severity.as_str()),
            alert_outbox::payload.eq(alert.payload),
        ))
        .on_conflict(alert_outbox::dedup_key)
        .do_nothing()
        .execute(conn)?;
    Ok(n == 1)
}

/// An alert claimed for sending.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub tenant_id: Option<String>,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub dedup_key: String,
    #[diesel(sql_type = Text)]
    pub severity: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Claims up to `limit` due alerts: each gets one more attempt and is hidden from other
/// instances for `lease_s` (if this instance dies mid-send, another takes it over then).
/// `SKIP LOCKED`: instances claiming at once take different rows.
pub fn claim_due(conn: &mut PgConnection, limit: i64, lease_s: i64) -> QueryResult<Vec<Claimed>> {
    diesel::sql_query(
        "UPDATE alert_outbox SET attempts = attempts + 1, available_at = now() + make_interval(secs => $2)
         WHERE id IN (SELECT id FROM alert_outbox WHERE sent_at IS NULL AND failed_at IS NULL AND available_at <= now()
                      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant_id, kind, dedup_key, severity, payload, created_at, attempts",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(lease_s)
    .load(conn)
}

pub fn mark_sent(conn: &mut PgConnection, ids: &[i64], note: Option<&str>) -> QueryResult<usize> {
    diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
        .set((alert_outbox::sent_at.eq(Utc::now()), alert_outbox::last_error.eq(note)))
        .execute(conn)
}

/// Puts alerts back for another attempt at `at`.
pub fn reschedule(conn: &mut PgConnection, ids: &[i64], at: DateTime<Utc>, error: &str) -> QueryResult<usize> {
    diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
        .set((alert_outbox::available_at.eq(at), alert_outbox::last_error.eq(error)))
        .execute(conn)
}

pub fn mark_failed(conn: &mut PgConnection, ids: &[i64], error: &str) -> QueryResult<usize> {
    diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
        .set((alert_outbox::failed_at.eq(Utc::now()), alert_outbox::last_error.eq(error)))
        .execute(conn)
}

/// Alerts waiting to be sent.
pub fn pending_count(conn: &mut PgConnection) -> QueryResult<i64> {
    alert_outbox::table.filter(alert_outbox::sent_at.is_null()).filter(alert_outbox::failed_at.is_null()).count().get_result(conn)
}

/// An alert as the API and CLI show it.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alert_outbox, check_for_backend(diesel::pg::Pg))]
pub struct AlertRow {
    pub id: i64,
    pub tenant_id: Option<String>,
    pub kind: String,
    pub severity: String,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The tenant's most recent alerts, newest first.
pub fn list_tenant_alerts(conn: &mut PgConnection, tenant: &TenantId, limit: i64) -> QueryResult<Vec<AlertRow>> {
    alert_outbox::table
        .filter(alert_outbox::tenant_id.eq(tenant.as_str()))
        .order(alert_outbox::id.desc())
        .limit(limit)
        .select(AlertRow::as_select())
        .load(conn)
}

/// Operators only: every alert, platform and tenants', newest first.
pub fn list_all_alerts(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<AlertRow>> {
    alert_outbox::table.order(alert_outbox::id.desc()).limit(limit).select(AlertRow::as_select()).load(conn)
}

/// A condition that fired (open while `resolved_at` is None).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = alert_states, primary_key(key), treat_none_as_null = true, check_for_backend(diesel::pg::Pg))]
pub struct AlertState {
    pub key: String,
    pub rule: String,
    pub tenant_id: Option<String>,
    pub severity: String,
    pub started_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    pub notifications: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    pub payload: serde_json::Value,
}

/// The state of `key`, locked until the transaction ends.
pub fn lock_state(conn: &mut PgConnection, key: &str) -> QueryResult<Option<AlertState>> {
    alert_states::table.find(key).for_update().select(AlertState::as_select()).first(conn).optional()
}

/// The open conditions of `rules`, locked until the transaction ends.
pub fn lock_open_states(conn: &mut PgConnection, rules: &[&str]) -> QueryResult<Vec<AlertState>> {
    alert_states::table
        .filter(alert_states::rule.eq_any(rules))
        .filter(alert_states::resolved_at.is_null())
        .for_update()
        .select(AlertState::as_select())
        .load(conn)
}

/// Starts (or starts again) a condition.
pub fn open_state(conn: &mut PgConnection, state: &AlertState) -> QueryResult<()> {
    diesel::insert_into(alert_states::table).values(state).on_conflict(alert_states::key).do_update().set(state).execute(conn).map(drop)
}

/// A lasting condition was mailed again.
pub fn renotified(conn: &mut PgConnection, key: &str, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(alert_states::table.find(key))
        .set((alert_states::last_notified_at.eq(at), alert_states::notifications.eq(alert_states::notifications + 1)))
        .execute(conn)
        .map(drop)
}

pub fn resolve_state(conn: &mut PgConnection, key: &str, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(alert_states::table.find(key)).set(alert_states::resolved_at.eq(Some(at))).execute(conn).map(drop)
}

/// An operator's silence of a rule, an object, or both, until a time.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alert_silences, check_for_backend(diesel::pg::Pg))]
pub struct Silence {
    pub id: String,
    /// None: every rule.
    pub rule: Option<String>,
    /// None: every object; else alerts whose key contains it (a worker, pool or tenant id, an IP).
    pub object: Option<String>,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Silence {
    /// Whether this silence covers an alert of `rule` with `key`.
    pub fn covers(&self, rule: &str, key: &str) -> bool {
        self.rule.as_deref().is_none_or(|r| r == rule) && self.object.as_deref().is_none_or(|o| key.contains(o))
    }
}

pub fn insert_silence(conn: &mut PgConnection, silence: &Silence) -> QueryResult<Silence> {
    diesel::insert_into(alert_silences::table)
        .values((
            alert_silences::id.eq(&silence.id),
            alert_silences::rule.eq(&silence.rule),
            alert_silences::object.eq(&silence.object),
            alert_silences::until.eq(silence.until),
            alert_silences::reason.eq(&silence.reason),
            alert_silences::created_by.eq(&silence.created_by),
        ))
        .returning(Silence::as_returning())
        .get_result(conn)
}

/// Silences still in force (operators' and the mailer's view; silences are platform-wide).
pub fn active_silences(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<Vec<Silence>> {
    alert_silences::table.filter(alert_silences::until.gt(now)).order(alert_silences::until).select(Silence::as_select()).load(conn)
}

pub fn delete_silence(conn: &mut PgConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(alert_silences::table.find(id)).execute(conn)
}
