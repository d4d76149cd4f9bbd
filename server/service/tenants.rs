//! Tenants: create and disable (operators), show (operators and the tenant's own admins), change
//! (plan and time zone: operators; prompt deny patterns, rule packs and CORS origins: also the
//! tenant's admins).

use diesel::{Connection, PgConnection};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Actor, ServiceError};
use crate::db::tenants::{self, NewTenant, TenantView};
use crate::db::{DbError, audit, plans};
use crate::domain::prompt_rules::{Catalogue, PackChoice};
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

/// Fields to change; omitted fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    /// Plan name (operators only).
    pub plan: Option<String>,
    /// IANA time zone for quota periods (operators only).
    pub time_zone: Option<String>,
    /// Regular expressions (case-insensitive) refused in prompts with 400 `prompt_denied`;
    /// replaces the list. At most 100 patterns of at most 500 characters.
    pub prompt_deny_patterns: Option<Vec<String>>,
    /// Prompt rule packs to enable (`injection`, `jailbreak`, `exfiltration`), each with an
    /// optional `action` (`block` or `flag`) for all its rules; replaces the list, `[]` turns
    /// them off. See docs/prompt-rules.md.
    pub prompt_rule_packs: Option<Vec<PackChoice>>,
    /// Origins (`https://app.example.com`, `http://localhost:5173`) whose browser pages may call
    /// `/v1` and `/oauth2/token` with this tenant's credentials (CORS); replaces the list, `[]`
    /// turns CORS off. At most 20, each `scheme://host[:port]` with scheme http or https.
    pub cors_origins: Option<Vec<String>>,
}

/// At most this many CORS origins per tenant.
pub const MAX_CORS_ORIGINS: usize = 20;

/// Checks one CORS origin as a browser sends it in `Origin`: `http` or `https`, a lower-case host
/// (name, IPv4 or bracketed IPv6), an optional non-default port, nothing else.
pub fn validate_origin(origin: &str) -> Result<(), String> {
    if origin == "*" || origin.eq_ignore_ascii_case("null") {
        return Err(format!("`{origin}` is not allowed: list each origin"));
    }
    let shown: String = origin.chars().take(80).collect();
    let bad = |why: &str| Err(format!("`{shown}` is not an origin: {why}"));
    let Some((scheme, rest)) = origin.split_once("://") else { return bad("expected scheme://host[:port]") };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return bad("the scheme must be http or https"),
    };
    if rest.contains(['/', '?', '#']) {
        return bad("no path, query or fragment");
    }
    if rest.contains('@') {
        return bad("no user information");
    }
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest.ends_with(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(port) = port {
        if port == default_port {
            return bad("leave out the scheme's default port (browsers do)");
        }
        if port.is_empty() || port.starts_with('0') || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let Ok(ip) = v6.parse::<std::net::Ipv6Addr>() else { return bad("a bad IPv6 address") };
        return if ip.to_string() == v6 { Ok(()) } else { bad("write the IPv6 address in its shortest lower-case form") };
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("the host must be lower-case (browsers send it so)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return bad("the host must be a DNS name (letters, digits, hyphens; punycode for others) or an IP address");
    }
    Ok(())
}

fn validate_origins(origins: &[String]) -> Result<(), ServiceError> {
    if origins.len() > MAX_CORS_ORIGINS {
        return Err(ServiceError::invalid("cors_origins", format!("at most {MAX_CORS_ORIGINS} origins")));
    }
    for (i, origin) in origins.iter().enumerate() {
        validate_origin(origin).map_err(|m| ServiceError::invalid("cors_origins", m))?;
        if origins[..i].contains(origin) {
            return Err(ServiceError::invalid("cors_origins", format!("`{origin}` is listed twice")));
        }
    }
    Ok(())
}

impl UpdateTenantRequest {
    pub fn needs_operator(&self) -> bool {
        self.plan.is_some() || self.time_zone.is_some()
    }
}

pub fn update(conn: &mut PgConnection, id: &TenantId, req: &UpdateTenantRequest, actor: &Actor) -> Result<TenantView, ServiceError> {
    use crate::db::schema::tenants as t;
    use diesel::prelude::*;
    let plan = match &req.plan {
        Some(name) => Some(plans::find_by_name(conn, name).map_err(|e| match e {
            diesel::result::Error::NotFound => ServiceError::invalid("plan", format!("no plan named `{name}`")),
            other => other.into(),
        })?),
        None => None,
    };
    let tz = match &req.time_zone {
        Some(z) => Some(TimeZone::parse(z).map_err(|e| ServiceError::invalid("time_zone", e.to_string()))?),
        None => None,
    };
    if let Some(patterns) = &req.prompt_deny_patterns {
        if patterns.len() > 100 {
            return Err(ServiceError::invalid("prompt_deny_patterns", "at most 100 patterns"));
        }
        for p in patterns {
            if p.is_empty() || p.len() > 500 {
                return Err(ServiceError::invalid("prompt_deny_patterns", "each pattern must be 1 to 500 characters"));
            }
            regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ServiceError::invalid("prompt_deny_patterns", format!("`{p}` is not a valid regular expression: {e}")))?;
        }
    }
    let rule_packs = match &req.prompt_rule_packs {
        Some(choices) => {
            let catalogue = Catalogue::embedded().map_err(|e| anyhow::anyhow!(e))?;
            catalogue.check(choices).map_err(|e| ServiceError::invalid("prompt_rule_packs", e.to_string()))?;
            Some(serde_json::to_value(choices).map_err(anyhow::Error::from)?)
        }
        None => None,
    };
    if let Some(origins) = &req.cors_origins {
        validate_origins(origins)?;
    }
    conn.transaction(|conn| {
        let target = t::table.find(id.as_str());
        if let Some(plan) = &plan {
            diesel::update(target).set(t::plan_id.eq(&plan.id)).execute(conn)?;
        }
        if let Some(tz) = &tz {
            diesel::update(target).set(t::time_zone.eq(tz.name())).execute(conn)?;
        }
        if let Some(patterns) = &req.prompt_deny_patterns {
            diesel::update(target).set(t::prompt_deny_patterns.eq(patterns)).execute(conn)?;
        }
        if let Some(packs) = &rule_packs {
            diesel::update(target).set(t::prompt_rule_packs.eq(packs)).execute(conn)?;
        }
        if let Some(origins) = &req.cors_origins {
            diesel::update(target).set(t::cors_origins.eq(origins)).execute(conn)?;
        }
        let n = diesel::update(target).set(t::updated_at.eq(diesel::dsl::now)).execute(conn)?;
        if n == 0 {
            return Err(ServiceError::NotFound("tenant not found".into()));
        }
        audit::insert(
            conn,
            &actor.event("tenant.update").tenant(id).target("tenant", id.as_str()).details(serde_json::to_value(req).unwrap_or_default()),
        )?;
        Ok(tenants::find_view(conn, id)?)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_strictly() {
        for good in [
            "https://app.a.example",
            "http://localhost:5173",
            "https://10.0.0.1:8443",
            "http://[::1]:3000",
            "https://xn--bcher-kva.example",
        ] {
            assert_eq!(validate_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "*",
            "null",
            "https://x.example/path",
            "https://x.example/",
            "ftp://x",
            "https://X.example",
            "https://user@x.example",
            "https://x.example:443",
            "http://x.example:0",
            "http://x.example:99999",
            "https://x.example?q",
            "x.example",
            "https://",
            "https://-x.example",
            "https://[::01]",
        ] {
            assert!(validate_origin(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..21).map(|i| format!("https://a{i}.example")).collect();
        assert!(validate_origins(&many).is_err());
        assert!(validate_origins(&["https://a.example".into(), "https://a.example".into()]).is_err());
        assert!(validate_origins(&many[..20]).is_ok());
    }
}
