//! IP rules (the platform's, and each tenant's own) and source-address bans. A tenant's rules are
//! always read and changed with its `TenantId`; a `None` scope is the platform's list, which only
//! operators reach.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{ip_bans, ip_rules};
use crate::domain::{RuleAction, TenantId};

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = ip_rules, check_for_backend(diesel::pg::Pg))]
pub struct IpRule {
    pub id: String,
    /// None: a platform rule.
    pub tenant_id: Option<String>,
    pub cidr: String,
    #[schema(value_type = String)]
    pub action: RuleAction,
    pub note: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

pub struct NewIpRule<'a> {
    pub id: &'a str,
    pub tenant: Option<&'a TenantId>,
    pub cidr: &'a str,
    pub action: RuleAction,
    pub note: &'a str,
    pub created_by: &'a str,
}

/// Adds a rule; the same network and action twice in one list is a `UniqueViolation`.
pub fn insert_rule(conn: &mut PgConnection, rule: &NewIpRule<'_>) -> QueryResult<IpRule> {
    diesel::insert_into(ip_rules::table)
        .values((
            ip_rules::id.eq(rule.id),
            ip_rules::tenant_id.eq(rule.tenant.map(TenantId::as_str)),
            ip_rules::cidr.eq(rule.cidr),
            ip_rules::action.eq(rule.action),
            ip_rules::note.eq(rule.note),
            ip_rules::created_by.eq(rule.created_by),
        ))
        .returning(IpRule::as_returning())
        .get_result(conn)
}

/// One list: the platform's (`None`) or a tenant's.
pub fn list_rules(conn: &mut PgConnection, scope: Option<&TenantId>) -> QueryResult<Vec<IpRule>> {
    let query = ip_rules::table.select(IpRule::as_select()).order((ip_rules::created_at, ip_rules::id)).into_boxed();
    match scope {
        Some(tenant) => query.filter(ip_rules::tenant_id.eq(tenant.as_str())),
        None => query.filter(ip_rules::tenant_id.is_null()),
    }
    .load(conn)
}

/// Every rule of every list: what each instance keeps in memory.
pub fn all_rules_of_all_tenants(conn: &mut PgConnection) -> QueryResult<Vec<IpRule>> {
    ip_rules::table.select(IpRule::as_select()).load(conn)
}

/// Removes a rule from one list; None when it is not in that list.
pub fn delete_rule(conn: &mut PgConnection, scope: Option<&TenantId>, id: &str) -> QueryResult<Option<IpRule>> {
    let target = ip_rules::table.filter(ip_rules::id.eq(id)).into_boxed();
    let target = match scope {
        Some(tenant) => target.filter(ip_rules::tenant_id.eq(tenant.as_str())),
        None => target.filter(ip_rules::tenant_id.is_null()),
    };
    let Some(rule) = target.select(IpRule::as_select()).first(conn).optional()? else { return Ok(None) };
    diesel::delete(ip_rules::table.filter(ip_rules::id.eq(&rule.id))).execute(conn)?;
    Ok(Some(rule))
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = ip_bans, check_for_backend(diesel::pg::Pg))]
pub struct IpBan {
    pub id: i64,
    pub ip: String,
    /// `request_rate`, `auth_failures` or `client_errors`.
    pub reason: String,
    /// 0 for an address's first ban within the forgiveness period, 1 for its second, …
    pub level: i32,
    /// What the address reached in the window when it was banned.
    pub observed: i64,
    pub started_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
}

/// Bans `ip`, or returns the ban in force when it is banned already (`false`: not a new one).
/// The ban's length is `durations[n]`, n the number of
/// its bans that started within `forgive_after` (the last duration repeats). The advisory lock
/// makes two instances that see the same attack at once agree on one ban.
pub fn ban(
    conn: &mut PgConnection,
    ip: &str,
    reason: &str,
    observed: i64,
    durations: &[std::time::Duration],
    forgive_after: chrono::Duration,
) -> QueryResult<(IpBan, bool)> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('gatehouse.ip_ban:' || $1))")
            .bind::<diesel::sql_types::Text, _>(ip)
            .execute(conn)?;
        let now = Utc::now();
        let active = ip_bans::table
            .filter(ip_bans::ip.eq(ip).and(ip_bans::lifted_at.is_null()).and(ip_bans::until.gt(now)))
            .order(ip_bans::until.desc())
            .select(IpBan::as_select())
            .first(conn)
            .optional()?;
        if let Some(active) = active {
            return Ok((active, false));
        }
        let earlier: i64 =
            ip_bans::table.filter(ip_bans::ip.eq(ip).and(ip_bans::started_at.gt(now - forgive_after))).count().get_result(conn)?;
        let level = (earlier as usize).min(durations.len().saturating_sub(1));
        let length = durations.get(level).copied().unwrap_or(std::time::Duration::from_secs(60));
        let until = now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::seconds(60));
        diesel::insert_into(ip_bans::table)
            .values((
                ip_bans::ip.eq(ip),
                ip_bans::reason.eq(reason),
                ip_bans::level.eq(earlier as i32),
                ip_bans::observed.eq(observed),
                ip_bans::started_at.eq(now),
                ip_bans::until.eq(until),
            ))
            .returning(IpBan::as_returning())
            .get_result(conn)
            .map(|ban| (ban, true))
    })
}

/// The bans in force now, soonest to end first.
pub fn active_bans(conn: &mut PgConnection) -> QueryResult<Vec<IpBan>> {
    ip_bans::table
        .filter(ip_bans::lifted_at.is_null().and(ip_bans::until.gt(Utc::now())))
        .order(ip_bans::until)
        .select(IpBan::as_select())
        .load(conn)
}

/// Ends every ban of `ip` in force now; returns how many.
pub fn lift(conn: &mut PgConnection, ip: &str, by: &str) -> QueryResult<usize> {
    diesel::update(ip_bans::table.filter(ip_bans::ip.eq(ip).and(ip_bans::lifted_at.is_null()).and(ip_bans::until.gt(Utc::now()))))
        .set((ip_bans::lifted_at.eq(Utc::now()), ip_bans::lifted_by.eq(by)))
        .execute(conn)
}

/// Deletes bans that ended before `before` (maintenance).
pub fn delete_ended_bans(conn: &mut PgConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(ip_bans::table.filter(ip_bans::until.lt(before))).execute(conn)
}
