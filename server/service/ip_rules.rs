//! IP rules and bans, for the management API and the CLI. The platform's rules (scope `None`) are
//! the operators'; a tenant's rules are its admins' (and operators'), read and changed only with
//! its `TenantId`. Bans are the operators'.

use diesel::PgConnection;
use diesel::prelude::*;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::db::ip_rules::{self, IpBan, IpRule, NewIpRule};
use crate::db::{DbError, audit, tenants};
use crate::domain::{IpRuleId, RuleAction, TenantId, parse_cidr};

/// Rules per list: the check scans them on every request.
pub const MAX_RULES_PER_LIST: usize = 1000;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIpRuleRequest {
    /// A network (`203.0.113.0/24`, `2001:db8::/48`) or one address.
    pub cidr: String,
    /// `deny` or `allow`.
    pub action: String,
    /// Why (shown in the list; at most 200 characters).
    #[serde(default)]
    pub note: String,
}

/// Adds a rule to the platform's list (`None`) or a tenant's.
pub fn create_rule(
    conn: &mut PgConnection,
    scope: Option<&TenantId>,
    req: &CreateIpRuleRequest,
    actor: &Actor,
) -> Result<IpRule, ServiceError> {
    let net = parse_cidr(&req.cidr)
        .ok_or_else(|| ServiceError::invalid("cidr", "must be an IP address or a network such as 203.0.113.0/24"))?
        .trunc();
    let action: RuleAction = req.action.parse().map_err(|_| ServiceError::invalid("action", "must be `deny` or `allow`"))?;
    if scope.is_none() && action == RuleAction::Deny && net.prefix_len() == 0 {
        return Err(ServiceError::invalid("cidr", "a platform deny rule cannot cover every address"));
    }
    let note = req.note.trim();
    if note.chars().count() > 200 {
        return Err(ServiceError::invalid("note", "must be at most 200 characters"));
    }
    conn.transaction(|conn| {
        if let Some(t) = scope {
            tenants::find(conn, t)?;
        }
        if ip_rules::list_rules(conn, scope)?.len() >= MAX_RULES_PER_LIST {
            return Err(ServiceError::invalid("cidr", format!("a list holds at most {MAX_RULES_PER_LIST} rules")));
        }
        let id = IpRuleId::generate();
        let cidr = net.to_string();
        let created_by = actor.id.clone();
        let rule = NewIpRule { id: id.as_str(), tenant: scope, cidr: &cidr, action, note, created_by: &created_by };
        let rule = ip_rules::insert_rule(conn, &rule).map_err(|e| match DbError::from(e) {
            DbError::Conflict(_) => ServiceError::Conflict(format!("{cidr} is already a `{}` rule of this list", action.as_str())),
            other => ServiceError::Db(other),
        })?;
        let mut event = actor
            .event("ip_rule.create")
            .target("ip_rule", id.as_str())
            .details(serde_json::json!({ "cidr": cidr, "action": action.as_str() }));
        if let Some(t) = scope {
            event = event.tenant(t);
        }
        audit::insert(conn, &event)?;
        Ok(rule)
    })
}

pub fn list_rules(conn: &mut PgConnection, scope: Option<&TenantId>) -> Result<Vec<IpRule>, ServiceError> {
    if let Some(t) = scope {
        tenants::find(conn, t)?;
    }
    Ok(ip_rules::list_rules(conn, scope)?)
}

/// Removes a rule from the platform's list (`None`) or a tenant's; a rule of another list is not
/// found.
pub fn delete_rule(conn: &mut PgConnection, scope: Option<&TenantId>, id: &str, actor: &Actor) -> Result<IpRule, ServiceError> {
    conn.transaction(|conn| {
        let rule = ip_rules::delete_rule(conn, scope, id)?.ok_or_else(|| ServiceError::NotFound(format!("no IP rule `{id}`")))?;
        let mut event = actor
            .event("ip_rule.delete")
            .target("ip_rule", id)
            .details(serde_json::json!({ "cidr": rule.cidr, "action": rule.action.as_str() }));
        if let Some(t) = scope {
            event = event.tenant(t);
        }
        audit::insert(conn, &event)?;
        Ok(rule)
    })
}

pub fn list_bans(conn: &mut PgConnection) -> Result<Vec<IpBan>, ServiceError> {
    Ok(ip_rules::active_bans(conn)?)
}

/// Ends the bans of an address now (every instance lets it in within `edge.sync_ms`).
pub fn lift_ban(conn: &mut PgConnection, ip: &str, actor: &Actor) -> Result<usize, ServiceError> {
    let address: std::net::IpAddr = ip.trim().parse().map_err(|_| ServiceError::invalid("ip", "must be an IP address"))?;
    let address = crate::domain::canonical(address).to_string();
    conn.transaction(|conn| {
        let lifted = ip_rules::lift(conn, &address, &actor.id)?;
        if lifted == 0 {
            return Err(ServiceError::NotFound(format!("{address} is not banned")));
        }
        audit::insert(conn, &actor.event("ip_ban.lift").target("ip", address.as_str()))?;
        Ok(lifted)
    })
}
