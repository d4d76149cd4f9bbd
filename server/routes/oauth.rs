//! The authorization server (docs/auth.md): token, revocation and
//! introspection endpoints with exact RFC 6749 request parsing, plus the metadata and JWKS
//! documents. Errors use `OAuthError` (RFC 6749 §5.2 JSON, always no-store).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use base64::Engine;
use serde_json::json;

use crate::auth::limits::ratelimit_headers;
use crate::auth::secrets;
use crate::auth::service::{AuthService, BearerError};
use crate::db::audit::{ActorKind, AuditEvent, Outcome};
use crate::db::clients::ClientAuthRecord;
use crate::domain::{INTROSPECT, Scopes, TOKEN_SCOPES};
use crate::error::oauth::OAuthError;
use crate::state::AppState;

/// Token endpoint bodies are small.
const MAX_FORM_BYTES: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let form_limit = web::PayloadConfig::new(MAX_FORM_BYTES);
    for (path, handler) in
        [("/oauth2/token", Endpoint::Token), ("/oauth2/revoke", Endpoint::Revoke), ("/oauth2/introspect", Endpoint::Introspect)]
    {
        cfg.service(
            web::resource(path)
                .app_data(form_limit.clone())
                .route(web::post().to(move |state, req, body| post_endpoint(handler, state, req, body)))
                .route(web::route().to(|| async { Err::<HttpResponse, _>(OAuthError::method_not_allowed()) })),
        );
    }
    cfg.route("/.well-known/oauth-authorization-server", web::get().to(get_metadata))
        .route("/.well-known/oauth-protected-resource", web::get().to(get_protected_resource))
        .route("/.well-known/jwks.json", web::get().to(get_jwks));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Token,
    Revoke,
    Introspect,
}

impl Endpoint {
    fn action(self) -> &'static str {
        match self {
            Endpoint::Token => "oauth2.token",
            Endpoint::Revoke => "oauth2.revoke",
            Endpoint::Introspect => "oauth2.introspect",
        }
    }
}

/// Form parameters with RFC 6749 §3.2 rules: a repeated parameter is an error, an empty value
/// counts as absent.
struct Form(HashMap<String, String>);

impl Form {
    fn parse(req: &HttpRequest, body: &[u8]) -> Result<Form, OAuthError> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let mut map: HashMap<String, String> = HashMap::new();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            let count = seen.entry(k.to_string()).or_default();
            *count += 1;
            if *count > 1 {
                return Err(OAuthError::invalid_request(format!("parameter `{}` is repeated", truncate(&k))));
            }
            if !v.is_empty() {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Ok(Form(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The client's credentials from exactly one method: HTTP Basic (both halves percent-decoded,
/// split at the first colon) or `client_id` + `client_secret` in the body.
fn client_credentials(req: &HttpRequest, form: &Form) -> Result<(String, String), OAuthError> {
    let basic = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
            let (scheme, rest) = value.split_once(' ').ok_or_else(|| OAuthError::invalid_request("malformed Authorization header"))?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client());
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
            let (id, secret) = decoded.split_once(':').ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.replace('+', " "));
            let id = decode(id).map_err(|_| OAuthError::invalid_request("malformed Basic credentials"))?;
            let secret = decode(secret).map_err(|_| OAuthError::invalid_request("malformed Basic credentials"))?;
            Some((id, secret))
        }
    };
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request("use one client authentication method, not two")),
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            Err(OAuthError::invalid_request("client_id differs from the Basic credentials"))
        }
        (Some((id, secret)), _, None) => Ok((id, secret)),
        (None, Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        (None, _, _) => Err(OAuthError::invalid_client()),
    }
}

async fn post_endpoint(
    endpoint: Endpoint,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, OAuthError> {
    let body = body.map_err(|_| OAuthError::invalid_request(format!("the body must be at most {MAX_FORM_BYTES} bytes")))?;
    let form = Form::parse(&req, &body)?;
    let ip = state.client_ip(&req);
    let (client_id, secret) = match client_credentials(&req, &form) {
        Ok(c) => c,
        Err(e) => {
            if e.error == "invalid_client" {
                audit_failure(&state, endpoint, None, ip, "no_client_authentication").await;
            }
            return Err(e);
        }
    };
    let auth = &state.auth;

    // Brute-force protection happens before any secret is checked.
    if let Some(ip) = ip {
        if let Err(limited) = auth.limits.check_ip(ip) {
            return Err(OAuthError::rate_limited(limited.retry_after, ratelimit_headers(&limited.info).to_vec()));
        }
        if let Some(locked) = auth.limits.locked_out(&client_id, ip) {
            return Err(OAuthError::rate_limited(locked.retry_after, ratelimit_headers(&locked.info).to_vec()));
        }
    }
    if endpoint == Endpoint::Token {
        // The grant type is checked before the secret: a wrong grant reveals nothing.
        match form.get("grant_type") {
            None => return Err(OAuthError::invalid_request("grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => return Err(OAuthError::unsupported_grant_type()),
        }
    }

    let record = match auth.authenticate_client(&state.db, &client_id, &secret, ip).await {
        Ok(Ok(record)) => record,
        Ok(Err(failure)) => {
            if let Some(ip) = ip {
                auth.limits.record_failure(&client_id, ip);
            }
            audit_failure(&state, endpoint, Some(&client_id), ip, failure.as_str()).await;
            return Err(OAuthError::invalid_client());
        }
        Err(e) => {
            tracing::warn!(error = %e, "client authentication unavailable");
            return Err(OAuthError::unavailable());
        }
    };

    let tenant = crate::domain::TenantId::from_trusted(record.client.tenant_id.clone());
    if state.edge.tenant_refuses(&tenant, ip) {
        audit_failure(&state, endpoint, Some(&client_id), ip, "ip_rule").await;
        return Err(OAuthError::address_refused());
    }
    if endpoint == Endpoint::Token && req.headers().contains_key(header::ORIGIN) {
        // Answers from here on carry the CORS headers when the client's tenant allows the origin.
        req.extensions_mut().insert(crate::edge::cors::CorsTenant(tenant));
    }

    // The per-client token budget is charged only once the client has proved who it is: strangers
    // who know a client id (it is every token's `sub`) cannot spend it and lock the client out.
    // Their guesses meet the per-IP limit and the per-(client, IP) lockout above.
    let mut rate_info = None;
    if endpoint == Endpoint::Token {
        match auth.limits.check_client(&client_id) {
            Ok(info) => rate_info = Some(info),
            Err(limited) => return Err(OAuthError::rate_limited(limited.retry_after, ratelimit_headers(&limited.info).to_vec())),
        }
    }
    let mut response = match endpoint {
        Endpoint::Token => issue_token(auth, &record, &form)?,
        Endpoint::Revoke => revoke(&state, &record, &form, ip).await?,
        Endpoint::Introspect => introspect(&state, &record, &form).await?,
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(info) = rate_info {
        for (name, value) in ratelimit_headers(&info) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::HeaderName::from_static(if name == "RateLimit" { "ratelimit" } else { "ratelimit-policy" }), v);
            }
        }
    }
    Ok(response)
}

async fn audit_failure(state: &AppState, endpoint: Endpoint, client_id: Option<&str>, ip: Option<IpAddr>, reason: &str) {
    metrics::counter!("gatehouse_auth_failures_total", "endpoint" => "oauth2").increment(1);
    state.auth.failures.record(ip, client_id);
    let mut event = AuditEvent::new(ActorKind::Anonymous, endpoint.action(), Outcome::Failure)
        .origin(ip, crate::telemetry::current_request_id())
        .details(json!({ "reason": reason }));
    // Only a well-formed id is recorded; arbitrary input never reaches the audit table.
    if let Some(id) = client_id.filter(|id| crate::domain::ClientId::parse(id).is_ok()) {
        event = event.target("client", id);
    }
    state.audit.record(event).await;
}

fn issue_token(auth: &AuthService, record: &ClientAuthRecord, form: &Form) -> Result<HttpResponse, OAuthError> {
    if let Some(resource) = form.get("resource") {
        if resource != auth.audience {
            return Err(OAuthError::invalid_target());
        }
    }
    let grantable = AuthService::grantable(record);
    let scopes = match form.get("scope") {
        None => grantable,
        Some(requested) => {
            let requested = Scopes::parse(requested).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            if !requested.is_subset(&grantable) {
                return Err(OAuthError::invalid_scope(format!("this client may request only: {grantable}")));
            }
            requested
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope can be granted to this client"));
    }
    let (token, expires_in, claims) = auth.issue(record, &scopes).map_err(|e| {
        tracing::error!(error = %e, "token not issued");
        OAuthError::server_error()
    })?;
    tracing::debug!(client_id = %claims.client_id, jti = %claims.jti, "access token issued");
    Ok(HttpResponse::Ok().json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scopes.to_string(),
    })))
}

async fn revoke(state: &AppState, caller: &ClientAuthRecord, form: &Form, ip: Option<IpAddr>) -> Result<HttpResponse, OAuthError> {
    let token = form.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    if secrets::looks_like_key(token) {
        return Err(OAuthError::unsupported_token_type("API keys are revoked through the management API"));
    }
    // Malformed, expired or foreign tokens: 200 and nothing happens (RFC 7009 §2.2).
    let Ok(claims) = state.auth.verify_jwt(token) else { return Ok(HttpResponse::Ok().finish()) };
    let own = claims.client_id == caller.client.id;
    let mut event = AuditEvent::new(ActorKind::Client, "oauth2.revoke", if own { Outcome::Success } else { Outcome::Denied })
        .actor(caller.client.id.clone())
        .target("access_token", claims.jti.clone())
        .origin(ip, crate::telemetry::current_request_id());
    if let Ok(tenant) = crate::domain::TenantId::parse(&caller.client.tenant_id) {
        event = event.tenant(&tenant);
    }
    if own {
        state.auth.revoke_jti(&state.db, &claims, "revoked by client").await.map_err(|e| {
            tracing::warn!(error = %e, "revocation not stored");
            OAuthError::unavailable()
        })?;
    }
    state.audit.record(event).await;
    Ok(HttpResponse::Ok().finish())
}

async fn introspect(state: &AppState, caller: &ClientAuthRecord, form: &Form) -> Result<HttpResponse, OAuthError> {
    let token = form.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let inactive = || Ok(HttpResponse::Ok().json(json!({ "active": false })));
    if secrets::looks_like_key(token) {
        return inactive();
    }
    let claims: Arc<_> = match state.auth.active_token(&state.db, token).await {
        Ok(Some(c)) => c,
        Ok(None) => return inactive(),
        Err(BearerError::Unavailable) => return Err(OAuthError::unavailable()),
        Err(_) => return inactive(),
    };
    let may_see = claims.client_id == caller.client.id
        || (caller.client.allowed_scopes.iter().any(|s| s == INTROSPECT) && claims.tenant_id == caller.client.tenant_id);
    if !may_see {
        return inactive();
    }
    Ok(HttpResponse::Ok().json(claims.introspection()))
}

async fn get_metadata(state: web::Data<AppState>) -> HttpResponse {
    let iss = &state.auth.issuer;
    let methods = json!(["client_secret_basic", "client_secret_post"]);
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=3600")).json(json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "scopes_supported": TOKEN_SCOPES,
        "service_documentation": format!("{iss}/api/openapi.json"),
    }))
}

async fn get_protected_resource(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=3600")).json(json!({
        "resource": state.auth.audience,
        "authorization_servers": [state.auth.issuer],
        "scopes_supported": TOKEN_SCOPES,
        "bearer_methods_supported": ["header"],
    }))
}

async fn get_jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/json")
        .body(state.auth.keys.snapshot().jwks.clone())
}
