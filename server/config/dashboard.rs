//! `[dashboard]`: the admin dashboard under `/admin` — how long a sign-in lasts and how hard the
//! login form is to guess at. Accounts and sessions themselves live in the database.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Seconds a dashboard session may sit unused before it ends (60..=86400).
    pub session_idle_s: u64,
    /// Seconds after sign-in that a session ends however busy it is (at least session_idle_s,
    /// at most 30 days).
    pub session_absolute_s: u64,
    /// Login attempts per minute from one client IP (any account).
    pub login_ip_per_min: u32,
    /// Failed logins per (account, client IP) within 5 minutes before that pair is locked out.
    pub login_failures_per_5min: u32,
    /// Seconds an (account, client IP) pair stays locked out after too many failures.
    pub login_lockout_s: u64,
    /// Optional single sign-on through an OpenID Connect provider (`[dashboard.oidc]`).
    pub oidc: OidcConfig,
}

/// `[dashboard.oidc]`: sign-in through an OpenID Connect provider (authorization code + PKCE).
/// Off while `issuer` is empty.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the provider sends the browser back; empty = `{auth.issuer}/admin/login/oidc/callback`.
    pub redirect_url: String,
    /// Email domains allowed to sign in (`example.com`); empty = any verified email.
    pub allowed_email_domains: Vec<String>,
    /// The ID-token claim naming the tenant (slug or id) whose admin the person is; a tenant admin
    /// account is created for a new email.
    pub tenant_claim: String,
    /// The ID-token claim that, when it equals `operator_value` (or is a list containing it), makes
    /// the person an operator. Operators must already have an account with that email.
    pub operator_claim: String,
    pub operator_value: String,
}

impl OidcConfig {
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_idle_s: 1800,
            session_absolute_s: 43_200,
            login_ip_per_min: 30,
            login_failures_per_5min: 5,
            login_lockout_s: 900,
            oidc: OidcConfig {
                tenant_claim: "gatehouse_tenant".into(),
                operator_claim: "gatehouse_role".into(),
                operator_value: "operator".into(),
                ..OidcConfig::default()
            },
        }
    }
}

impl DashboardConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=86_400).contains(&self.session_idle_s) {
            return Err(ConfigError::invalid("dashboard.session_idle_s", "must be between 60 and 86400"));
        }
        if self.session_absolute_s < self.session_idle_s || self.session_absolute_s > 30 * 86_400 {
            return Err(ConfigError::invalid("dashboard.session_absolute_s", "must be between session_idle_s and 2592000 (30 days)"));
        }
        if self.login_ip_per_min == 0 {
            return Err(ConfigError::invalid("dashboard.login_ip_per_min", "must be at least 1"));
        }
        if self.login_failures_per_5min == 0 {
            return Err(ConfigError::invalid("dashboard.login_failures_per_5min", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.login_lockout_s) {
            return Err(ConfigError::invalid("dashboard.login_lockout_s", "must be between 1 and 86400"));
        }
        let o = &self.oidc;
        if o.enabled() {
            if !(o.issuer.starts_with("https://") || o.issuer.starts_with("http://")) || o.issuer.ends_with('/') {
                return Err(ConfigError::invalid("dashboard.oidc.issuer", "must be an http(s) URL without a trailing slash"));
            }
            if o.client_id.is_empty() {
                return Err(ConfigError::invalid("dashboard.oidc.client_id", "is required when dashboard.oidc.issuer is set"));
            }
            if o.client_secret.is_empty() {
                return Err(ConfigError::invalid("dashboard.oidc.client_secret", "is required when dashboard.oidc.issuer is set"));
            }
            if !(o.redirect_url.is_empty() || o.redirect_url.starts_with("https://") || o.redirect_url.starts_with("http://")) {
                return Err(ConfigError::invalid("dashboard.oidc.redirect_url", "must be an http(s) URL"));
            }
            if o.tenant_claim.is_empty() && o.operator_claim.is_empty() {
                return Err(ConfigError::invalid("dashboard.oidc.tenant_claim", "set tenant_claim, operator_claim or both"));
            }
        }
        Ok(())
    }
}
