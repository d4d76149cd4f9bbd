//! `[dashboard]`: the admin dashboard under `/admin` — how long a sign-in lasts and how hard the
//! login form is to guess at. Accounts and sessions themselves live in the database.

use serde::{Deserialize, Serialize};

use super::ConfigError;

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
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_idle_s: 1800,
            session_absolute_s: 43_200,
            login_ip_per_min: 30,
            login_failures_per_5min: 5,
            login_lockout_s: 900,
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
        Ok(())
    }
}
