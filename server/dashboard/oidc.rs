//! Single sign-on through an OpenID Connect provider (`[dashboard.oidc]`): the authorization-code
//! flow with PKCE through the `oauth2` crate, the ID token checked with `jsonwebtoken` against the
//! provider's JWKS (signature, issuer, audience, expiry, nonce, verified email), then the person
//! mapped to an account: an operator by the operator claim (the account must exist), or a tenant
//! admin by the tenant claim (created at first sign-in). The state, PKCE verifier and nonce travel
//! in a short-lived cookie sealed with an HMAC, so any instance can finish the flow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::PageError;
use super::session::{self, tokens_match};
use crate::config::OidcConfig;
use crate::db::admins::TokenOwner;
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::domain::{AdminId, Slug, TenantId};
use crate::state::AppState;

/// How long a discovery document and its JWKS are trusted before they are fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// How long a browser may take at the provider.
const FLOW_TTL_S: i64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenFields {
    pub id_token: String,
}

impl oauth2::ExtraTokenFields for IdTokenFields {}

type OidcTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OidcClient = oauth2::Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Discovered {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks: jsonwebtoken::jwk::JwkSet,
}

/// The provider's metadata and keys, fetched on first use and cached (one per server thread).
#[derive(Default)]
pub struct Provider {
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Discovered>)>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> PageError {
    tracing::warn!(error = %e, "OIDC provider {what} failed");
    PageError::Unavailable
}

impl Provider {
    async fn get(&self, http: &reqwest::Client, config: &OidcConfig, refresh: bool) -> Result<Arc<Discovered>, PageError> {
        let mut cached = self.cached.lock().await;
        if let Some((_, d)) = cached.as_ref().filter(|(at, _)| !refresh && at.elapsed() < DISCOVERY_TTL) {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let doc: DiscoveryDocument = fetch_json(http, &url).await.map_err(|e| unavailable("discovery", e))?;
        if doc.issuer != config.issuer {
            return Err(unavailable("discovery", format!("the document names issuer `{}`, not `{}`", doc.issuer, config.issuer)));
        }
        let jwks: jsonwebtoken::jwk::JwkSet = fetch_json(http, &doc.jwks_uri).await.map_err(|e| unavailable("JWKS", e))?;
        let d = Arc::new(Discovered {
            issuer: doc.issuer,
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            jwks,
        });
        *cached = Some((Instant::now(), d.clone()));
        Ok(d)
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> anyhow::Result<T> {
    let response = http.get(url).timeout(Duration::from_secs(10)).send().await?.error_for_status()?;
    Ok(response.json().await?)
}

/// oauth2's HTTP hook over reqwest 0.13 (oauth2 5 integrates only reqwest 0.12); no redirects.
async fn http_call(request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, OidcHttpError> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(10)).build()?;
    let mut builder = client.request(request.method().clone(), request.uri().to_string()).body(request.body().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.send().await?;
    let mut out = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    out.body(response.bytes().await?.to_vec()).map_err(|e| OidcHttpError::Http(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
enum OidcHttpError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error("{0}")]
    Http(String),
}

fn redirect_url(state: &AppState) -> String {
    let c = &state.config.dashboard.oidc;
    if c.redirect_url.is_empty() { format!("{}/admin/login/oidc/callback", state.config.issuer()) } else { c.redirect_url.clone() }
}

fn client(state: &AppState, d: &Discovered) -> Result<OidcClient, PageError> {
    let c = &state.config.dashboard.oidc;
    let bad = |e: oauth2::url::ParseError| PageError::Internal(anyhow::anyhow!("OIDC endpoint URL: {e}"));
    Ok(oauth2::Client::new(ClientId::new(c.client_id.clone()))
        .set_client_secret(ClientSecret::new(c.client_secret.expose().to_owned()))
        .set_auth_uri(AuthUrl::new(d.authorization_endpoint.clone()).map_err(bad)?)
        .set_token_uri(TokenUrl::new(d.token_endpoint.clone()).map_err(bad)?)
        .set_redirect_uri(RedirectUrl::new(redirect_url(state)).map_err(bad)?))
}

/// The flow's secrets in the browser: state, PKCE verifier, nonce and expiry, MAC'd with the pepper.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    verifier: String,
    nonce: String,
    expires: i64,
}

fn cookie_name(tls: bool) -> &'static str {
    if tls { "__Host-gh_oidc" } else { "gh_oidc" }
}

fn seal(state: &AppState, flow: &Flow) -> String {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(flow).unwrap_or_default());
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.auth.pepper.hash(&format!("oidc-flow:{payload}")));
    format!("{payload}.{mac}")
}

fn open(state: &AppState, value: &str) -> Option<Flow> {
    let (payload, mac) = value.split_once('.')?;
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.auth.pepper.hash(&format!("oidc-flow:{payload}")));
    if !tokens_match(mac, &expected) {
        return None;
    }
    let flow: Flow = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (flow.expires > chrono::Utc::now().timestamp()).then_some(flow)
}

/// `GET /admin/login/oidc`: off to the provider.
pub async fn start(req: HttpRequest, state: web::Data<AppState>, provider: web::Data<Provider>) -> Result<HttpResponse, PageError> {
    let config = &state.config.dashboard.oidc;
    if !config.enabled() {
        return Err(PageError::NotFound);
    }
    let d = provider.get(&state.upstream, config, false).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = crate::domain::random_base62(32);
    let (url, csrf) = client(&state, &d)?
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_extra_param("nonce", nonce.clone())
        .set_pkce_challenge(challenge)
        .url();
    let flow = Flow {
        state: csrf.secret().clone(),
        verifier: verifier.secret().clone(),
        nonce,
        expires: chrono::Utc::now().timestamp() + FLOW_TTL_S,
    };
    let tls = session::secure(&state, &req);
    let mut response = super::see_other(url.as_str());
    response
        .add_cookie(&session::cookie(cookie_name(tls), seal(&state, &flow), tls, Some(FLOW_TTL_S)))
        .map_err(|e| PageError::Internal(e.into()))?;
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Why a sign-in through the provider was refused (shown on the login form, audited).
struct Refusal(&'static str, String);

/// `GET /admin/login/oidc/callback`: the provider's answer.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    provider: web::Data<Provider>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, PageError> {
    let config = &state.config.dashboard.oidc;
    if !config.enabled() {
        return Err(PageError::NotFound);
    }
    let tls = session::secure(&state, &req);
    let flow = req.cookie(cookie_name(tls)).and_then(|c| open(&state, c.value()));
    let outcome = match flow {
        // No flow of ours, or another one: a forged or replayed callback.
        None => return Err(PageError::Csrf),
        Some(flow) if !query.state.as_deref().is_some_and(|s| tokens_match(s, &flow.state)) => return Err(PageError::Csrf),
        Some(flow) => finish(&state, &provider, &query, &flow).await,
    };
    let mut response = match outcome {
        Ok(owner) => super::login::start_session(&req, &state, owner, "oidc").await?,
        Err(Refusal(reason, message)) => {
            let event = AuditEvent::new(ActorKind::Anonymous, "dashboard.login", Outcome::Failure)
                .origin(state.client_ip(&req), crate::telemetry::current_request_id())
                .details(serde_json::json!({ "method": "oidc", "reason": reason }));
            state.audit.record(event).await;
            metrics::counter!("gatehouse_dashboard_logins_total", "outcome" => "oidc_refused").increment(1);
            super::login::login_page(&req, &state, StatusCode::FORBIDDEN, String::new(), Some(message))?
        }
    };
    let mut gone = session::cookie(cookie_name(tls), String::new(), tls, None);
    gone.make_removal();
    response.add_cookie(&gone).map_err(|e| PageError::Internal(e.into()))?;
    Ok(response)
}

async fn finish(state: &AppState, provider: &Provider, query: &CallbackQuery, flow: &Flow) -> Result<TokenOwner, Refusal> {
    let config = &state.config.dashboard.oidc;
    if let Some(e) = &query.error {
        let e: String = e.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        return Err(Refusal("provider_error", format!("The identity provider refused the sign-in ({e}).")));
    }
    let code = query.code.clone().ok_or_else(|| Refusal("no_code", "The identity provider sent no authorization code.".into()))?;
    let failed = || Refusal("exchange_failed", "The sign-in could not be completed with the identity provider.".into());
    let d = provider.get(&state.upstream, config, false).await.map_err(|_| failed())?;
    let token = client(state, &d)
        .map_err(|_| failed())?
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&http_call)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OIDC code exchange failed");
            failed()
        })?;
    let id_token = &token.extra_fields().id_token;
    let claims = match verify(&d, config, id_token, &flow.nonce) {
        Err(VerifyError::UnknownKey) => {
            // The provider may have rotated its keys since they were cached.
            let fresh = provider.get(&state.upstream, config, true).await.map_err(|_| failed())?;
            verify(&fresh, config, id_token, &flow.nonce)
        }
        other => other,
    }
    .map_err(|e| {
        tracing::warn!(error = %e, "OIDC ID token refused");
        Refusal("id_token_invalid", "The identity provider's ID token was not valid.".into())
    })?;
    let email = claims.email.to_lowercase();
    let domain = email.rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default();
    if !config.allowed_email_domains.is_empty() && !config.allowed_email_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
        return Err(Refusal("domain_not_allowed", format!("Accounts of {domain} may not sign in here.")));
    }
    let operator = !config.operator_claim.is_empty()
        && match claims.extra.get(&config.operator_claim) {
            Some(serde_json::Value::String(s)) => *s == config.operator_value,
            Some(serde_json::Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(config.operator_value.as_str())),
            _ => false,
        };
    let tenant_ref =
        claims.extra.get(&config.tenant_claim).and_then(|v| v.as_str()).map(str::to_owned).filter(|_| !config.tenant_claim.is_empty());
    let sub = claims.sub.clone();
    state
        .db
        .run(move |conn| {
            let existing = crate::db::sessions::find_login(conn, &email)?;
            if operator {
                return Ok(match existing {
                    Some(a) if matches!(a.owner, TokenOwner::Operator(_)) && !a.disabled => Ok(a.owner),
                    _ => Err(Refusal("no_operator_account", "There is no operator account with your email.".into())),
                });
            }
            let Some(reference) = tenant_ref else {
                return Ok(Err(Refusal("no_role", "Your identity names no tenant and no operator role.".into())));
            };
            let tenant = match TenantId::parse(&reference) {
                Ok(id) => crate::db::tenants::find(conn, &id).optional_row()?,
                Err(_) => match Slug::parse(&reference) {
                    Ok(slug) => crate::db::tenants::find_by_slug(conn, &slug).optional_row()?,
                    Err(_) => None,
                },
            };
            let Some(tenant) = tenant else {
                return Ok(Err(Refusal("unknown_tenant", "Your identity names a tenant that does not exist here.".into())));
            };
            let tenant_id = tenant.id();
            match existing {
                Some(a) => Ok(match &a.owner {
                    TokenOwner::TenantAdmin { tenant, .. } if *tenant == tenant_id && !a.disabled => Ok(a.owner.clone()),
                    _ => Err(Refusal("account_mismatch", "Your email belongs to another account here.".into())),
                }),
                None => {
                    let admin = AdminId::generate();
                    crate::db::admins::insert_admin(conn, &admin, &tenant_id, &email, None)?;
                    let event = AuditEvent::new(ActorKind::System, "tenant_admin.create", Outcome::Success)
                        .actor("oidc")
                        .tenant(&tenant_id)
                        .target("tenant_admin", admin.as_str())
                        .details(serde_json::json!({ "sub": sub }));
                    crate::db::audit::insert(conn, &event)?;
                    Ok(Ok(TokenOwner::TenantAdmin { admin, tenant: tenant_id }))
                }
            }
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OIDC account mapping failed");
            failed()
        })?
}

trait OptionalRow<T> {
    fn optional_row(self) -> diesel::QueryResult<Option<T>>;
}

impl<T> OptionalRow<T> for diesel::QueryResult<T> {
    fn optional_row(self) -> diesel::QueryResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(diesel::result::Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    email: String,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error("no key in the provider's JWKS for this token")]
    UnknownKey,
    #[error("{0}")]
    Invalid(String),
}

fn verify(d: &Discovered, config: &OidcConfig, token: &str, nonce: &str) -> Result<IdClaims, VerifyError> {
    use jsonwebtoken::Algorithm;
    let header = jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    // Asymmetric signatures only: a provider's HS256 would be keyed with our client secret.
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA
    ) {
        return Err(VerifyError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => d.jwks.find(kid),
        None if d.jwks.keys.len() == 1 => d.jwks.keys.first(),
        None => None,
    }
    .ok_or(VerifyError::UnknownKey)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[&d.issuer]);
    validation.set_audience(&[&config.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation).map_err(|e| VerifyError::Invalid(e.to_string()))?.claims;
    if !claims.nonce.as_deref().is_some_and(|n| tokens_match(n, nonce)) {
        return Err(VerifyError::Invalid("the nonce does not match this sign-in".into()));
    }
    if claims.email_verified != Some(true) {
        return Err(VerifyError::Invalid("the email is not verified".into()));
    }
    Ok(claims)
}
