//! OAuth2 clients: create (secret shown once), list, get, update, disable, rotate the secret with
//! a grace period, revoke every token.

use chrono::{DateTime, Duration, Utc};
use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceError, parse_scopes, validate_name};
use crate::auth::secrets::{self, Pepper};
use crate::db::audit;
use crate::db::clients::{self, Client, ClientChanges, NewClient};
use crate::domain::{ClientId, TenantId, normalise_allowlist};

pub const MAX_GRACE_S: u64 = 604_800;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    pub name: String,
    /// Scopes the client may request: chat:completions, audio:align, models:read, and the
    /// capability oauth2:introspect (introspect other clients' tokens of the same tenant).
    pub scopes: Vec<String>,
    /// CIDRs the client may authenticate from; empty = anywhere.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Access-token lifetime, 300..3600 s (default 900).
    pub token_ttl_seconds: Option<i32>,
    /// Optional expiry of the secret.
    pub secret_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClientRequest {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub token_ttl_seconds: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// Seconds the previous secret stays valid (0 = immediately invalid; max 604800).
    #[serde(default = "default_grace")]
    pub grace_period_s: u64,
}

fn default_grace() -> u64 {
    86_400
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientResponse {
    pub client_id: String,
    pub tenant_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub token_ttl_seconds: i32,
    pub status: String,
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// Until when the previous secret (after a rotation) is still accepted.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    /// Tokens issued before this instant are rejected.
    pub tokens_valid_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The create and rotate responses: the only time the secret is ever shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientResponse,
    pub client_secret: String,
}

impl From<Client> for ClientResponse {
    fn from(c: Client) -> Self {
        let now = Utc::now();
        ClientResponse {
            status: if c.disabled_at.is_some() { "disabled" } else { "active" }.into(),
            client_id: c.id,
            tenant_id: c.tenant_id,
            name: c.name,
            scopes: c.allowed_scopes,
            ip_allowlist: c.ip_allowlist,
            token_ttl_seconds: c.token_ttl_seconds,
            secret_expires_at: c.secret_expires_at,
            previous_secret_valid_until: c.rotated_expires_at.filter(|t| *t > now),
            tokens_valid_after: (c.tokens_valid_after.timestamp() > 0).then_some(c.tokens_valid_after),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn validate_ttl(ttl: i32) -> Result<i32, ServiceError> {
    if (300..=3600).contains(&ttl) { Ok(ttl) } else { Err(ServiceError::invalid("token_ttl_seconds", "must be between 300 and 3600")) }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("client not found".into())
}

fn parse_client_id(raw: &str) -> Result<ClientId, ServiceError> {
    ClientId::parse(raw).map_err(|_| not_found())
}

pub fn create(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    req: &CreateClientRequest,
    actor: &Actor,
) -> Result<ClientWithSecret, ServiceError> {
    let name = validate_name("name", &req.name)?;
    let scopes = parse_scopes("scopes", &req.scopes, true)?;
    if scopes.is_empty() {
        return Err(ServiceError::invalid("scopes", "give at least one scope"));
    }
    let allowlist = normalise_allowlist(&req.ip_allowlist).map_err(|m| ServiceError::invalid("ip_allowlist", m))?;
    let ttl = validate_ttl(req.token_ttl_seconds.unwrap_or(900))?;
    let id = ClientId::generate();
    let secret = secrets::generate_client_secret();
    let hash = pepper.hash(&secret);
    let client = conn.transaction(|conn| {
        crate::db::tenants::find(conn, tenant)?;
        let client = clients::insert(
            conn,
            &NewClient {
                id: id.as_str(),
                tenant_id: tenant.as_str(),
                name: &name,
                secret_hash: &hash,
                secret_expires_at: req.secret_expires_at,
                allowed_scopes: &scopes.to_vec(),
                ip_allowlist: &allowlist,
                token_ttl_seconds: ttl,
                created_by: Some(&actor.id),
            },
        )?;
        audit::insert(
            conn,
            &actor
                .event("client.create")
                .tenant(tenant)
                .target("client", id.as_str())
                .details(serde_json::json!({ "scopes": scopes.to_vec() })),
        )?;
        diesel::QueryResult::Ok(client)
    })?;
    Ok(ClientWithSecret { client: client.into(), client_secret: secret })
}

pub fn list(conn: &mut PgConnection, tenant: &TenantId) -> Result<Vec<ClientResponse>, ServiceError> {
    Ok(clients::list(conn, tenant)?.into_iter().map(Into::into).collect())
}

pub fn get(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str) -> Result<ClientResponse, ServiceError> {
    let id = parse_client_id(raw_id)?;
    clients::find(conn, tenant, &id).map(Into::into).map_err(|e| match e {
        diesel::result::Error::NotFound => not_found(),
        other => other.into(),
    })
}

fn mutate(
    conn: &mut PgConnection,
    tenant: &TenantId,
    raw_id: &str,
    actor: &Actor,
    action: &'static str,
    details: serde_json::Value,
    f: impl FnOnce(&mut PgConnection, &ClientId) -> diesel::QueryResult<Client>,
) -> Result<Client, ServiceError> {
    let id = parse_client_id(raw_id)?;
    conn.transaction(|conn| {
        let client = f(conn, &id)?;
        audit::insert(conn, &actor.event(action).tenant(tenant).target("client", id.as_str()).details(details))?;
        Ok(client)
    })
    .map_err(|e: diesel::result::Error| match e {
        diesel::result::Error::NotFound => not_found(),
        other => other.into(),
    })
}

pub fn update(
    conn: &mut PgConnection,
    tenant: &TenantId,
    raw_id: &str,
    req: &UpdateClientRequest,
    actor: &Actor,
) -> Result<ClientResponse, ServiceError> {
    let mut changes = ClientChanges::default();
    if let Some(name) = &req.name {
        changes.name = Some(validate_name("name", name)?);
    }
    if let Some(scopes) = &req.scopes {
        let parsed = parse_scopes("scopes", scopes, true)?;
        if parsed.is_empty() {
            return Err(ServiceError::invalid("scopes", "give at least one scope"));
        }
        changes.allowed_scopes = Some(parsed.to_vec());
    }
    if let Some(list) = &req.ip_allowlist {
        changes.ip_allowlist = Some(normalise_allowlist(list).map_err(|m| ServiceError::invalid("ip_allowlist", m))?);
    }
    if let Some(ttl) = req.token_ttl_seconds {
        changes.token_ttl_seconds = Some(validate_ttl(ttl)?);
    }
    let fields: Vec<&str> = [
        changes.name.as_ref().map(|_| "name"),
        changes.allowed_scopes.as_ref().map(|_| "scopes"),
        changes.ip_allowlist.as_ref().map(|_| "ip_allowlist"),
        changes.token_ttl_seconds.map(|_| "token_ttl_seconds"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if fields.is_empty() {
        return get(conn, tenant, raw_id);
    }
    let client = mutate(conn, tenant, raw_id, actor, "client.update", serde_json::json!({ "fields": fields }), |conn, id| {
        clients::update(conn, tenant, id, changes)
    })?;
    Ok(client.into())
}

pub fn disable(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str, actor: &Actor) -> Result<ClientResponse, ServiceError> {
    let client =
        mutate(conn, tenant, raw_id, actor, "client.disable", serde_json::json!({}), |conn, id| clients::disable(conn, tenant, id))?;
    Ok(client.into())
}

pub fn rotate_secret(
    conn: &mut PgConnection,
    pepper: &Pepper,
    tenant: &TenantId,
    raw_id: &str,
    req: &RotateSecretRequest,
    actor: &Actor,
) -> Result<ClientWithSecret, ServiceError> {
    if req.grace_period_s > MAX_GRACE_S {
        return Err(ServiceError::invalid("grace_period_s", format!("must be at most {MAX_GRACE_S}")));
    }
    let secret = secrets::generate_client_secret();
    let hash = pepper.hash(&secret);
    let until = (req.grace_period_s > 0).then(|| Utc::now() + Duration::seconds(req.grace_period_s as i64));
    let client = mutate(
        conn,
        tenant,
        raw_id,
        actor,
        "client.rotate_secret",
        serde_json::json!({ "grace_period_s": req.grace_period_s }),
        |conn, id| clients::rotate_secret(conn, tenant, id, &hash, until),
    )?;
    Ok(ClientWithSecret { client: client.into(), client_secret: secret })
}

pub fn revoke_tokens(conn: &mut PgConnection, tenant: &TenantId, raw_id: &str, actor: &Actor) -> Result<ClientResponse, ServiceError> {
    let client = mutate(conn, tenant, raw_id, actor, "client.revoke_tokens", serde_json::json!({}), |conn, id| {
        clients::revoke_all_tokens(conn, tenant, id)
    })?;
    Ok(client.into())
}
