//! Management operations shared by the management API and the CLI: each validates its input,
//! makes its change and writes its audit event in one transaction, and returns a response DTO.
//! Functions are synchronous (run inside `db.run` or a CLI connection) and take the owning
//! `TenantId` explicitly. Secrets are returned exactly once, from the create/rotate calls.

pub mod accounts;
pub mod alerts;
pub mod api_keys;
pub mod clients;
pub mod ip_rules;
pub mod limits;
pub mod plans;
pub mod tenants;
pub mod workers;

use crate::db::DbError;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};

/// Who is acting, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    pub source_ip: Option<std::net::IpAddr>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The host's CLI (`gatehouse … --json`): a person with shell access and the config.
    pub fn cli() -> Actor {
        Actor { kind: ActorKind::System, id: "cli".into(), source_ip: None, request_id: None }
    }

    pub fn event(&self, action: &'static str) -> AuditEvent {
        AuditEvent::new(self.kind, action, Outcome::Success).actor(self.id.clone()).origin(self.source_ip, self.request_id.clone())
    }
}

/// Input that fails validation, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("`{field}`: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field, message: message.into() }
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(e: diesel::result::Error) -> Self {
        match DbError::from(e) {
            DbError::NotFound => ServiceError::NotFound("not found".into()),
            other => ServiceError::Db(other),
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(e: anyhow::Error) -> Self {
        ServiceError::Db(DbError::Other(e))
    }
}

impl From<ServiceError> for crate::error::ApiError {
    fn from(e: ServiceError) -> Self {
        use crate::error::ApiError;
        match e {
            ServiceError::Invalid { field, message } => {
                ApiError::Validation { code: "invalid_value", message: format!("`{field}`: {message}"), param: Some(field) }
            }
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Db(e) => e.into(),
        }
    }
}

impl From<ServiceError> for crate::error::CliError {
    fn from(e: ServiceError) -> Self {
        use crate::error::CliError;
        match e {
            ServiceError::Invalid { .. } => CliError::Usage(e.to_string()),
            other => CliError::runtime(other),
        }
    }
}

impl From<ServiceError> for DbError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Db(d) => d,
            ServiceError::NotFound(_) => DbError::NotFound,
            ServiceError::Conflict(m) => DbError::Conflict(m),
            other => DbError::Other(anyhow::anyhow!("{other}")),
        }
    }
}

/// Parses a scope list given as strings, naming the field on error.
pub fn parse_scopes(field: &'static str, scopes: &[String], client: bool) -> Result<crate::domain::Scopes, ServiceError> {
    let joined = scopes.join(" ");
    let parsed = if client { crate::domain::Scopes::parse_client(&joined) } else { crate::domain::Scopes::parse(&joined) };
    parsed.map_err(|e| ServiceError::invalid(field, e.to_string()))
}

pub fn validate_name(field: &'static str, name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must be 1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}
