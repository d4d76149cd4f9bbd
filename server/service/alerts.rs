//! Alert recipients and the alert list, for the management API and the CLI. On-call addresses
//! are the platform's (operators manage them); a tenant's recipients receive only that tenant's
//! alerts, and its admins manage only those.

use diesel::PgConnection;
use diesel::prelude::*;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::db::alerts::{self, AlertRow, Recipient, Silence};
use crate::db::{DbError, audit, tenants};
use crate::domain::{RecipientId, SilenceId, TenantId};

/// Whose recipient: the platform's on-call, or one tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientScope {
    Oncall,
    Tenant(TenantId),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRecipientRequest {
    pub email: String,
    /// The tenant whose alerts the address receives; omitted = an on-call address (operators).
    pub tenant_id: Option<String>,
}

/// A plausible mail address: what lettre will accept as a mailbox, at most 254 characters.
fn check_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim();
    let plausible = (3..=254).contains(&email.len()) && email.parse::<lettre::Address>().is_ok();
    if plausible { Ok(email.to_owned()) } else { Err(ServiceError::invalid("email", "must be a mail address such as oncall@example.com")) }
}

pub fn add_recipient(conn: &mut PgConnection, email: &str, scope: &RecipientScope, actor: &Actor) -> Result<Recipient, ServiceError> {
    let email = check_email(email)?;
    conn.transaction(|conn| {
        let tenant = match scope {
            RecipientScope::Oncall => None,
            RecipientScope::Tenant(t) => {
                tenants::find(conn, t)?;
                Some(t)
            }
        };
        let id = RecipientId::generate();
        let recipient = alerts::insert_recipient(conn, id.as_str(), &email, tenant).map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => ServiceError::Conflict(format!("{email} already receives these alerts")),
            other => ServiceError::Db(other),
        })?;
        let mut event = actor.event("alert_recipient.add").target("alert_recipient", id.as_str());
        if let Some(t) = tenant {
            event = event.tenant(t);
        }
        audit::insert(conn, &event)?;
        Ok(recipient)
    })
}

pub fn list_recipients(conn: &mut PgConnection, scope: Option<&TenantId>) -> Result<Vec<Recipient>, ServiceError> {
    Ok(match scope {
        Some(t) => alerts::list_tenant_recipients(conn, t)?,
        None => alerts::list_all_recipients(conn)?,
    })
}

/// Removes a recipient: a tenant admin only its tenant's (`Some`), an operator any (`None`).
pub fn remove_recipient(conn: &mut PgConnection, scope: Option<&TenantId>, id: &str, actor: &Actor) -> Result<(), ServiceError> {
    conn.transaction(|conn| {
        let removed = match scope {
            Some(t) => alerts::delete_tenant_recipient(conn, t, id)?,
            None => alerts::delete_any_recipient(conn, id)?,
        };
        if removed == 0 {
            return Err(ServiceError::NotFound(format!("no alert recipient `{id}`")));
        }
        let mut event = actor.event("alert_recipient.remove").target("alert_recipient", id);
        if let Some(t) = scope {
            event = event.tenant(t);
        }
        audit::insert(conn, &event)?;
        Ok(())
    })
}

/// The latest alerts: a tenant's (`Some`), or every alert for operators (`None`).
pub fn list_alerts(conn: &mut PgConnection, scope: Option<&TenantId>, limit: i64) -> Result<Vec<AlertRow>, ServiceError> {
    let limit = limit.clamp(1, 1000);
    Ok(match scope {
        Some(t) => alerts::list_tenant_alerts(conn, t, limit)?,
        None => alerts::list_all_alerts(conn, limit)?,
    })
}

/// The rules alerts come from (a silence names one of them, or none for all).
pub const RULES: [&str; 10] = [
    "worker_down",
    "pool_down",
    "queue_saturated",
    "error_rate",
    "auth_failures",
    "store_down",
    "job_failed",
    "maintenance_failed",
    "quota_threshold",
    "ip_banned",
];

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// One of the rules, or omitted for every rule.
    pub rule: Option<String>,
    /// A worker, pool or tenant id, an IP or a client id the alert's key contains; omitted for
    /// every object.
    pub object: Option<String>,
    /// How long, in seconds (1 minute to 30 days).
    pub duration_s: i64,
    /// Why (shown in the list).
    #[serde(default)]
    pub reason: String,
}

/// Silences a rule, an object or both for a while (operators).
pub fn add_silence(conn: &mut PgConnection, req: &SilenceRequest, actor: &Actor) -> Result<Silence, ServiceError> {
    if let Some(rule) = &req.rule {
        if !RULES.contains(&rule.as_str()) {
            return Err(ServiceError::invalid("rule", format!("must be one of {}", RULES.join(", "))));
        }
    }
    let object = req.object.as_deref().map(str::trim).filter(|o| !o.is_empty());
    if req.rule.is_none() && object.is_none() {
        return Err(ServiceError::invalid("rule", "name a rule, an object, or both: silencing everything is not a silence"));
    }
    if !(60..=30 * 86_400).contains(&req.duration_s) {
        return Err(ServiceError::invalid("duration_s", "must be between 60 (a minute) and 2592000 (30 days)"));
    }
    if req.reason.len() > 500 || object.is_some_and(|o| o.len() > 200) {
        return Err(ServiceError::invalid("reason", "reason ≤ 500 and object ≤ 200 characters"));
    }
    conn.transaction(|conn| {
        let silence = Silence {
            id: SilenceId::generate().to_string(),
            rule: req.rule.clone(),
            object: object.map(str::to_owned),
            until: chrono::Utc::now() + chrono::Duration::seconds(req.duration_s),
            reason: req.reason.clone(),
            created_by: actor.id.clone(),
            created_at: chrono::Utc::now(),
        };
        let saved = alerts::insert_silence(conn, &silence)?;
        audit::insert(conn, &actor.event("alert_silence.add").target("alert_silence", saved.id.as_str()))?;
        Ok(saved)
    })
}

pub fn list_silences(conn: &mut PgConnection) -> Result<Vec<Silence>, ServiceError> {
    Ok(alerts::active_silences(conn, chrono::Utc::now())?)
}

pub fn remove_silence(conn: &mut PgConnection, id: &str, actor: &Actor) -> Result<(), ServiceError> {
    conn.transaction(|conn| {
        if alerts::delete_silence(conn, id)? == 0 {
            return Err(ServiceError::NotFound(format!("no alert silence `{id}`")));
        }
        audit::insert(conn, &actor.event("alert_silence.remove").target("alert_silence", id))?;
        Ok(())
    })
}
