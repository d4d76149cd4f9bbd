//! `AuthService`: issuing and checking credentials with the caches that make it fast and the
//! invalidation that keeps revocation within 5 s on every instance (docs/auth.md, revocation).
//!
//! - Credential state (clients, API keys, management tokens, with their tenant's status and
//!   plan) is cached for `auth.cache_ttl_ms` (≤ 5 s); changes made on this instance invalidate
//!   at once, other instances see them when the entry expires.
//! - Verified JWTs are cached by SHA-256 of the token, so a warm request skips the signature check
//!   but never the state checks.
//! - The jti denylist is polled from PostgreSQL every `auth.revocation_poll_ms`.
//! - The key view is reloaded from PostgreSQL in the background (see `reload_keys`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::failures::FailureTally;
use super::jwt::{self, AccessClaims, Audience, TokenError};
use super::keys::{KeySet, KeyStore};
use super::limits::TokenLimits;
use super::seal::MasterKey;
use super::secrets::{self, Pepper};
use crate::config::Config;
use crate::db::admins::ManagementTokenRecord;
use crate::db::api_keys::ApiKeyAuthRecord;
use crate::db::clients::ClientAuthRecord;
use crate::db::{Db, DbError, admins, api_keys, clients, revocations};
use crate::domain::{Scopes, TenantId, ip_allowed, random_base62};

/// How a `/v1` caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Jwt,
    ApiKey,
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub kind: CredentialKind,
    /// Client id (JWT) or API key id.
    pub credential_id: String,
    pub scopes: Scopes,
    pub client_ip: Option<IpAddr>,
}

/// Why a bearer credential was refused; rendered per RFC 6750 by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("missing credentials")]
    Missing,
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("credential store unavailable")]
    Unavailable,
}

/// Why client authentication failed. Rendered identically (`invalid_client`) to the caller; the
/// variants exist for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthFailure {
    UnknownClient,
    WrongSecret,
    Disabled,
    TenantDisabled,
    IpNotAllowed,
}

impl ClientAuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthFailure::UnknownClient => "unknown_client",
            ClientAuthFailure::WrongSecret => "wrong_secret",
            ClientAuthFailure::Disabled => "client_disabled",
            ClientAuthFailure::TenantDisabled => "tenant_disabled",
            ClientAuthFailure::IpNotAllowed => "ip_not_allowed",
        }
    }
}

pub struct AuthService {
    pub issuer: String,
    pub audience: String,
    pub default_ttl_s: i64,
    pub pepper: Pepper,
    pub master: Arc<MasterKey>,
    pub keys: KeyStore,
    pub limits: TokenLimits,
    /// Failed authentications by IP and client id (the authentication-failure alert).
    pub failures: FailureTally,
    clients: moka::future::Cache<String, Option<Arc<ClientAuthRecord>>>,
    api_keys: moka::future::Cache<String, Option<Arc<ApiKeyAuthRecord>>>,
    management: moka::future::Cache<String, Option<Arc<ManagementTokenRecord>>>,
    verified: moka::sync::Cache<[u8; 32], Arc<AccessClaims>>,
    denylist: moka::sync::Cache<String, ()>,
    touched: moka::sync::Cache<String, ()>,
}

fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> moka::future::Cache<String, V> {
    moka::future::Cache::builder().max_capacity(100_000).time_to_live(ttl).build()
}

impl AuthService {
    pub fn new(config: &Config) -> anyhow::Result<AuthService> {
        config.require_auth_secrets()?;
        let ttl = Duration::from_millis(config.auth.cache_ttl_ms);
        Ok(AuthService {
            issuer: config.issuer(),
            audience: config.api_audience(),
            default_ttl_s: i64::from(config.auth.access_token_ttl_s),
            pepper: Pepper::new(&config.auth.pepper),
            master: Arc::new(MasterKey::from_config(&config.auth.master_key)?),
            keys: KeyStore::default(),
            limits: TokenLimits::new(&config.auth),
            failures: FailureTally::new(Duration::from_secs(config.alerts.window_s)),
            clients: cache(ttl),
            api_keys: cache(ttl),
            management: cache(ttl),
            verified: moka::sync::Cache::builder().max_capacity(200_000).time_to_live(ttl).build(),
            denylist: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs((jwt::MAX_LIFETIME_S + jwt::LEEWAY_S) as u64))
                .build(),
            touched: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        })
    }

    // ---- keys -------------------------------------------------------------------------------

    /// Loads the key view from the database when it changed. Returns whether it was replaced.
    pub async fn reload_keys(&self, db: &Db) -> Result<bool, DbError> {
        let master = self.master.clone();
        let current = self.keys.snapshot().fingerprint.clone();
        let built = db
            .run(move |conn| {
                let loaded = crate::auth::rotation::load(conn, &master)?;
                if crate::auth::keys::fingerprint(&loaded) == current {
                    return Ok(None);
                }
                Ok(Some(KeySet::build(loaded)?))
            })
            .await?;
        Ok(match built {
            Some(set) => {
                tracing::info!(keys = %set.fingerprint, "signing keys loaded");
                self.keys.replace(set);
                true
            }
            None => false,
        })
    }

    // ---- clients ----------------------------------------------------------------------------

    pub async fn client_record(&self, db: &Db, client_id: &str) -> Result<Option<Arc<ClientAuthRecord>>, DbError> {
        if crate::domain::ClientId::parse(client_id).is_err() {
            return Ok(None);
        }
        let id = client_id.to_owned();
        let db = db.clone();
        self.clients
            .try_get_with(client_id.to_owned(), async move {
                db.run(move |conn| Ok(clients::find_for_authentication(conn, &id)?.map(Arc::new))).await
            })
            .await
            .map_err(|e: Arc<DbError>| DbError::Unavailable(e.to_string()))
    }

    /// After a tenant-wide change (tenant disabled): forget every cached credential.
    pub fn invalidate_all_credentials(&self) {
        self.clients.invalidate_all();
        self.api_keys.invalidate_all();
        self.management.invalidate_all();
    }

    pub async fn invalidate_client(&self, client_id: &str) {
        self.clients.invalidate(client_id).await;
    }

    /// Client authentication for the token, revocation and introspection endpoints. Unknown ids
    /// spend the same HMAC work as known ones.
    pub async fn authenticate_client(
        &self,
        db: &Db,
        client_id: &str,
        secret: &str,
        ip: Option<IpAddr>,
    ) -> Result<Result<Arc<ClientAuthRecord>, ClientAuthFailure>, DbError> {
        let Some(record) = self.client_record(db, client_id).await? else {
            self.pepper.verify_dummy(secret);
            return Ok(Err(ClientAuthFailure::UnknownClient));
        };
        let c = &record.client;
        let now = Utc::now();
        let current_ok = self.pepper.verify(secret, &c.secret_hash) && c.secret_expires_at.is_none_or(|e| e > now);
        let rotated_ok = match (&c.rotated_secret_hash, c.rotated_expires_at) {
            (Some(hash), Some(until)) if until > now => self.pepper.verify(secret, hash),
            _ => false,
        };
        Ok(if !(current_ok || rotated_ok) {
            Err(ClientAuthFailure::WrongSecret)
        } else if c.disabled_at.is_some() {
            Err(ClientAuthFailure::Disabled)
        } else if !record.tenant_active {
            Err(ClientAuthFailure::TenantDisabled)
        } else if !ip_allowed(&c.ip_allowlist, ip) {
            Err(ClientAuthFailure::IpNotAllowed)
        } else {
            Ok(record)
        })
    }

    /// Scopes the client may be granted: its allowed scopes ∩ its plan's entitlements.
    pub fn grantable(record: &ClientAuthRecord) -> Scopes {
        Scopes::from_stored(&record.client.allowed_scopes).token_scopes().intersect(&Scopes::from_stored(&record.entitlements))
    }

    pub fn issue(&self, record: &ClientAuthRecord, scopes: &Scopes) -> Result<(String, i64, AccessClaims), TokenError> {
        let now = Utc::now().timestamp();
        let ttl = i64::from(record.client.token_ttl_seconds).clamp(300, jwt::MAX_LIFETIME_S);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: record.client.id.clone(),
            aud: Audience::One(self.audience.clone()),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: random_base62(22),
            client_id: record.client.id.clone(),
            scope: scopes.to_string(),
            tenant_id: record.client.tenant_id.clone(),
        };
        let token = jwt::sign(&self.keys.snapshot(), &claims)?;
        Ok((token, ttl, claims))
    }

    // ---- access tokens ----------------------------------------------------------------------

    /// Verification of a JWT (signature, issuer, audience, lifetime), with the verified-token cache.
    pub fn verify_jwt(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        let now = Utc::now().timestamp();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            if claims.exp + jwt::LEEWAY_S >= now {
                return Ok(claims);
            }
            return Err(TokenError::Expired);
        }
        let claims = Arc::new(jwt::verify(&self.keys.snapshot(), token, &self.issuer, &self.audience, now)?);
        self.verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Credential state: not revoked, client enabled and not reset since, tenant active.
    pub async fn check_token_state(&self, db: &Db, claims: &AccessClaims) -> Result<Arc<ClientAuthRecord>, BearerError> {
        if self.denylist.contains_key(&claims.jti) {
            return Err(BearerError::InvalidToken("the access token has been revoked"));
        }
        let record = self
            .client_record(db, &claims.client_id)
            .await
            .map_err(|_| BearerError::Unavailable)?
            .ok_or(BearerError::InvalidToken("the access token's client no longer exists"))?;
        let c = &record.client;
        if c.tenant_id != claims.tenant_id {
            return Err(BearerError::InvalidToken("the access token is invalid"));
        }
        if c.disabled_at.is_some() {
            return Err(BearerError::InvalidToken("the access token's client is disabled"));
        }
        if !record.tenant_active {
            return Err(BearerError::InvalidToken("the tenant is disabled"));
        }
        // Revoke-all sets tokens_valid_after to now; `iat` has whole seconds, so a token from
        // the same second counts as revoked too.
        let valid_after = c.tokens_valid_after.timestamp();
        if valid_after > 0 && claims.iat <= valid_after {
            return Err(BearerError::InvalidToken("the access token has been revoked"));
        }
        Ok(record)
    }

    /// Full check of a JWT for introspection: signature, claims and state. None = inactive.
    pub async fn active_token(&self, db: &Db, token: &str) -> Result<Option<Arc<AccessClaims>>, BearerError> {
        let Ok(claims) = self.verify_jwt(token) else { return Ok(None) };
        match self.check_token_state(db, &claims).await {
            Ok(_) => Ok(Some(claims)),
            Err(BearerError::Unavailable) => Err(BearerError::Unavailable),
            Err(_) => Ok(None),
        }
    }

    /// Denies a token by jti here at once; other instances pick it up from the table.
    pub fn deny_locally(&self, jti: &str) {
        self.denylist.insert(jti.to_owned(), ());
    }

    /// Records a revocation durably and locally.
    pub async fn revoke_jti(&self, db: &Db, claims: &AccessClaims, reason: &'static str) -> Result<(), DbError> {
        let jti = claims.jti.clone();
        let tenant = TenantId::parse(&claims.tenant_id).map_err(|e| DbError::Other(e.into()))?;
        let client = claims.client_id.clone();
        let expires = DateTime::<Utc>::from_timestamp(claims.exp + jwt::LEEWAY_S, 0)
            .unwrap_or_else(Utc::now)
            .max(Utc::now() + chrono::Duration::seconds(10));
        db.run(move |conn| Ok(revocations::insert(conn, &jti, &tenant, &client, expires, reason)?)).await?;
        self.deny_locally(&claims.jti);
        Ok(())
    }

    /// Pulls revocations made anywhere since `since` into the local denylist. Returns the new
    /// cursor. The 10 s overlap covers transactions that commit out of timestamp order.
    pub async fn poll_revocations(&self, db: &Db, since: DateTime<Utc>) -> Result<DateTime<Utc>, DbError> {
        let from = since - chrono::Duration::seconds(10);
        let rows = db.run(move |conn| Ok(revocations::list_since(conn, from)?)).await?;
        let mut cursor = since;
        for (jti, _expires, revoked_at) in rows {
            self.denylist.insert(jti, ());
            cursor = cursor.max(revoked_at);
        }
        Ok(cursor)
    }

    // ---- API keys ---------------------------------------------------------------------------

    pub async fn invalidate_api_key(&self, key_id: &str) {
        self.api_keys.invalidate(key_id).await;
    }

    async fn api_key_record(&self, db: &Db, key_id: &str) -> Result<Option<Arc<ApiKeyAuthRecord>>, DbError> {
        // The warm path: a lookup without building the loader.
        if let Some(record) = self.api_keys.get(key_id).await {
            return Ok(record);
        }
        let id = key_id.to_owned();
        let db = db.clone();
        self.api_keys
            .try_get_with(key_id.to_owned(), async move {
                db.run(move |conn| Ok(api_keys::find_for_authentication(conn, &id)?.map(Arc::new))).await
            })
            .await
            .map_err(|e: Arc<DbError>| DbError::Unavailable(e.to_string()))
    }

    /// Secret verification: format and checksum (no lookup for typos), lookup, constant-time HMAC,
    /// then expiry, revocation, tenant and IP allowlist.
    pub async fn authenticate_api_key(&self, db: &Db, key: &str, ip: Option<IpAddr>) -> Result<Principal, BearerError> {
        let invalid = BearerError::InvalidToken("the API key is invalid");
        let Some(parsed) = secrets::parse_api_key(key) else { return Err(invalid) };
        let Some(record) = self.api_key_record(db, parsed.id).await.map_err(|_| BearerError::Unavailable)? else {
            self.pepper.verify_dummy(key);
            return Err(invalid);
        };
        if !self.pepper.verify(key, &record.secret_hash) || record.environment != parsed.kind {
            return Err(invalid);
        }
        let now = Utc::now();
        if record.revoked_at.is_some() {
            return Err(BearerError::InvalidToken("the API key has been revoked"));
        }
        if record.expires_at.is_some_and(|e| e <= now) {
            return Err(BearerError::InvalidToken("the API key has expired"));
        }
        if !record.tenant_active {
            return Err(BearerError::InvalidToken("the tenant is disabled"));
        }
        if !ip_allowed(&record.ip_allowlist, ip) {
            return Err(BearerError::InvalidToken("the API key may not be used from this address"));
        }
        self.touch_api_key(db, &record.id);
        Ok(Principal {
            tenant_id: TenantId::from_trusted(record.tenant_id.clone()),
            kind: CredentialKind::ApiKey,
            credential_id: record.id.clone(),
            scopes: record.scopes.clone(),
            client_ip: ip,
        })
    }

    /// `last_used_at` is written at most once a minute per key per instance, off the request path.
    fn touch_api_key(&self, db: &Db, key_id: &str) {
        if self.touched.contains_key(key_id) {
            return;
        }
        self.touched.insert(key_id.to_owned(), ());
        let db = db.clone();
        let id = key_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = db.run(move |conn| Ok(api_keys::touch_last_used(conn, &id)?)).await {
                tracing::debug!(error = %e, "could not record API key use");
            }
        });
    }

    /// A bearer value on `/v1`: API key or JWT, then state. Scopes are the caller's to check.
    pub async fn authenticate_bearer(&self, db: &Db, token: &str, ip: Option<IpAddr>) -> Result<Principal, BearerError> {
        if secrets::looks_like_key(token) {
            return self.authenticate_api_key(db, token, ip).await;
        }
        let claims = self.verify_jwt(token).map_err(|e| {
            BearerError::InvalidToken(match e {
                TokenError::Expired => "the access token has expired",
                _ => "the access token is invalid",
            })
        })?;
        let record = self.check_token_state(db, &claims).await?;
        if !ip_allowed(&record.client.ip_allowlist, ip) {
            return Err(BearerError::InvalidToken("the access token may not be used from this address"));
        }
        Ok(Principal {
            tenant_id: TenantId::from_trusted(claims.tenant_id.clone()),
            kind: CredentialKind::Jwt,
            credential_id: claims.client_id.clone(),
            scopes: Scopes::parse(&claims.scope).unwrap_or_default(),
            client_ip: ip,
        })
    }

    // ---- management tokens ------------------------------------------------------------------

    pub async fn authenticate_management(&self, db: &Db, token: &str) -> Result<Option<Arc<ManagementTokenRecord>>, DbError> {
        let Some(parsed) = secrets::parse_management_token(token) else { return Ok(None) };
        let id = parsed.id.to_owned();
        let dbc = db.clone();
        let record = self
            .management
            .try_get_with(id.clone(), async move {
                dbc.run(move |conn| Ok(admins::find_token_for_authentication(conn, &id)?.map(Arc::new))).await
            })
            .await
            .map_err(|e: Arc<DbError>| DbError::Unavailable(e.to_string()))?;
        let Some(record) = record else {
            self.pepper.verify_dummy(token);
            return Ok(None);
        };
        Ok((self.pepper.verify(token, &record.secret_hash) && record.usable).then_some(record))
    }
}
