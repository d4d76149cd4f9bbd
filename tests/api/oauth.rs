//! The authorization server: the `oauth2` crate as a real client, and the request-parsing,
//! client-authentication, scope, rotation and revocation rules of docs/auth.md.

use std::time::Duration;

use diesel::prelude::*;
use gatehouse::db::schema::audit_events;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, IntrospectionUrl, Scope, TokenIntrospectionResponse, TokenResponse, TokenUrl};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, eventually, seed};

/// oauth2's HTTP hook over reqwest 0.13 (oauth2 5 ships an integration only for reqwest 0.12).
async fn http(request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut builder = client.request(request.method().clone(), request.uri().to_string()).body(request.body().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.send().await?;
    let mut out = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    Ok(out.body(response.bytes().await?.to_vec()).expect("valid response"))
}

async fn app_with_client(scopes: &str) -> (TestApp, String, String) {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, scopes);
    (TestApp::spawn_on(db, |_| {}).await, cid, cs)
}

#[actix_web::test]
async fn the_oauth2_crate_gets_a_token_and_introspects_it() {
    let (app, cid, cs) = app_with_client("chat:completions models:read").await;
    let client = BasicClient::new(ClientId::new(cid.clone()))
        .set_client_secret(ClientSecret::new(cs))
        .set_token_uri(TokenUrl::new(app.url("/oauth2/token")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(app.url("/oauth2/introspect")).unwrap());
    let token = client.exchange_client_credentials().add_scope(Scope::new("models:read".into())).request_async(&http).await.unwrap();
    assert_eq!(token.scopes().unwrap(), &vec![Scope::new("models:read".into())]);
    assert_eq!(token.expires_in(), Some(Duration::from_secs(900)));
    assert!(token.refresh_token().is_none());

    let intro = client.introspect(token.access_token()).request_async(&http).await.unwrap();
    assert!(intro.active());
    assert_eq!(intro.client_id().map(|c| c.as_str()), Some(cid.as_str()));
    assert_eq!(intro.scopes().unwrap(), &vec![Scope::new("models:read".into())]);

    let r = app.get_with("/v1/models", token.access_token().secret()).await;
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn token_response_follows_rfc6749_and_rfc9068() {
    let (app, cid, cs) = app_with_client("chat:completions models:read").await;
    let r = app.token_response(&cid, &cs, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    assert_eq!(r.headers()["ratelimit-policy"], "\"token-client\";q=30;w=60");
    assert!(r.headers()["ratelimit"].to_str().unwrap().starts_with("\"token-client\";r=29;t="));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "chat:completions models:read", "omitted scope = everything grantable");
    assert!(body.get("refresh_token").is_none());

    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwks: jsonwebtoken::jwk::JwkSet = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(std::slice::from_ref(&app.state.auth.audience));
    v.set_issuer(std::slice::from_ref(&app.state.auth.issuer));
    let claims = jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims;
    for claim in ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "tenant_id"] {
        assert!(claims.get(claim).is_some(), "{claim} missing");
    }
    assert_eq!(claims["sub"], claims["client_id"]);
    assert!(claims["tenant_id"].as_str().unwrap().starts_with("ten_"));
}

#[actix_web::test]
async fn client_secret_post_works_and_percent_encoded_basic_credentials_are_decoded() {
    let (app, cid, cs) = app_with_client("models:read").await;
    let r = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", cid.as_str()), ("client_secret", cs.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // oauth4webapi and oauth2-rs form-urlencode Basic credentials (`_` as %5F).
    let encoded_id = cid.replace('_', "%5F");
    let encoded_secret = cs.replace('_', "%5F");
    let r = app.token_response(&encoded_id, &encoded_secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200);
}

async fn oauth_error(r: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].is_string());
    (status, body["error"].as_str().unwrap().to_owned(), headers)
}

#[actix_web::test]
async fn malformed_token_requests_are_refused_with_the_rfc_error() {
    let (app, cid, cs) = app_with_client("models:read").await;
    let post = |body: &'static str, ct: &'static str| {
        app.client.post(app.url("/oauth2/token")).basic_auth(&cid, Some(&cs)).header("content-type", ct).body(body).send()
    };
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (post("grant_type=client_credentials&scope=models:read&scope=models:read", form).await.unwrap(), 400, "invalid_request"),
        (post(r#"{"grant_type":"client_credentials"}"#, "application/json").await.unwrap(), 400, "invalid_request"),
        (post("scope=models:read", form).await.unwrap(), 400, "invalid_request"),
        (post("grant_type=password&username=a&password=b", form).await.unwrap(), 400, "unsupported_grant_type"),
        (post("grant_type=client_credentials&scope=admin", form).await.unwrap(), 400, "invalid_scope"),
        (post("grant_type=client_credentials&scope=chat:completions", form).await.unwrap(), 400, "invalid_scope"),
        (post("grant_type=client_credentials&resource=https://evil.example", form).await.unwrap(), 400, "invalid_target"),
    ];
    for (r, status, error) in cases {
        assert_eq!(r.headers()["cache-control"], "no-store");
        let (s, e, _) = oauth_error(r).await;
        assert_eq!((s, e.as_str()), (status, error));
    }
    // An empty value counts as absent: `scope=` means all grantable scopes.
    assert_eq!(post("grant_type=client_credentials&scope=", form).await.unwrap().status(), 200);

    let r = app.client.get(app.url("/oauth2/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    let r = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(&cid, Some(&cs))
        .form(&[("grant_type", "client_credentials"), ("client_secret", cs.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(r).await.1, "invalid_request", "two client authentication methods");

    let big = format!("grant_type=client_credentials&x={}", "a".repeat(20_000));
    let r =
        app.client.post(app.url("/oauth2/token")).basic_auth(&cid, Some(&cs)).header("content-type", form).body(big).send().await.unwrap();
    assert_eq!(oauth_error(r).await.1, "invalid_request", "body over 16 KiB");
}

#[actix_web::test]
async fn every_client_authentication_failure_looks_the_same_and_is_audited() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read");
    let (disabled_id, disabled_secret) = seed::client(&db, &tenant, "models:read");
    gatehouse::service::clients::disable(&mut db.conn(), &tenant, &disabled_id, &gatehouse::service::Actor::cli()).unwrap();
    let app = TestApp::spawn_on(db, |_| {}).await;
    let unknown = gatehouse::domain::ClientId::generate().to_string();
    let form = [("grant_type", "client_credentials")];
    let mut bodies = Vec::new();
    for (id, secret) in [
        (cid.as_str(), "gth_cs_wrong"),
        (unknown.as_str(), cs.as_str()),
        (disabled_id.as_str(), disabled_secret.as_str()),
        ("not-even-an-id", "x"),
    ] {
        let r = app.token_response(id, secret, &form).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"oauth2\"");
        bodies.push(r.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical responses: {bodies:?}");
    let r = app.client.post(app.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401, "no client authentication at all");

    app.state.audit.flush().await;
    let reasons: Vec<Value> = audit_events::table
        .filter(audit_events::action.eq("oauth2.token"))
        .filter(audit_events::outcome.eq("failure"))
        .select(audit_events::details)
        .load(&mut app.db.conn())
        .unwrap();
    let reasons: Vec<&str> = reasons.iter().filter_map(|d| d["reason"].as_str()).collect();
    for expected in ["wrong_secret", "unknown_client", "client_disabled", "no_client_authentication"] {
        assert!(reasons.contains(&expected), "{expected} not audited: {reasons:?}");
    }
}

#[actix_web::test]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let (app, cid, cs) = app_with_client("models:read").await;
    let form = [("grant_type", "client_credentials")];
    let mut limited = None;
    for _ in 0..35 {
        let r = app.token_response(&cid, &cs, &form).await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("the 31st token within a minute is refused");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(r.headers()["ratelimit"].to_str().unwrap().contains(";r=0;"));
    assert_eq!(oauth_error(r).await.1, "temporarily_unavailable");
}

#[actix_web::test]
async fn repeated_failures_lock_out_the_client_from_that_address() {
    let (app, cid, cs) = app_with_client("models:read").await;
    let form = [("grant_type", "client_credentials")];
    for _ in 0..11 {
        app.token_response(&cid, "gth_cs_guess", &form).await;
    }
    let r = app.token_response(&cid, &cs, &form).await;
    assert_eq!(r.status(), 429, "even the right secret waits out the lockout");
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 60);
    assert_eq!(r.headers()["ratelimit-policy"], "\"token-failures\";q=10;w=300", "like every other 429");
    assert!(r.headers()["ratelimit"].to_str().unwrap().starts_with("\"token-failures\";r=0;t="));
}

#[actix_web::test]
async fn strangers_guessing_a_client_id_cannot_lock_the_client_out() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read");
    let app = TestApp::spawn_on(db, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.auth.token_client_per_min = 5;
    })
    .await;
    let attempt = |secret: &str, ip: &str| {
        app.client
            .post(app.url("/oauth2/token"))
            .basic_auth(&cid, Some(secret))
            .header("x-forwarded-for", ip)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    // Six addresses, five wrong guesses each: past the client's budget of 5 a minute, under each
    // (client, address) pair's lockout.
    for n in 0..6 {
        for _ in 0..5 {
            assert_eq!(attempt("gth_cs_guess", &format!("203.0.113.{n}")).await.unwrap().status(), 401);
        }
    }
    let r = attempt(&cs, "198.51.100.9").await.unwrap();
    assert_eq!(r.status(), 200, "the right secret from a fresh address still gets a token during the attack");
}

#[actix_web::test]
async fn secret_rotation_keeps_the_old_secret_for_the_grace_period_only() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, old) = seed::client(&db, &tenant, "models:read");
    let app = TestApp::spawn_on(db, |_| {}).await;
    let admin = seed::admin_token(&app.db, &tenant);
    let rotate = |grace: u64| {
        app.client
            .post(app.url(&format!("/api/v1/tenants/{tenant}/clients/{cid}/secret/rotate")))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "grace_period_s": grace }))
            .send()
    };
    let r = rotate(3600).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let new = body["client_secret"].as_str().unwrap().to_owned();
    assert!(body["previous_secret_valid_until"].is_string());
    let form = [("grant_type", "client_credentials")];
    assert_eq!(app.token_response(&cid, &old, &form).await.status(), 200, "old secret in its grace period");
    assert_eq!(app.token_response(&cid, &new, &form).await.status(), 200);

    let body: Value = rotate(0).await.unwrap().json().await.unwrap();
    let newest = body["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(app.token_response(&cid, &old, &form).await.status(), 401, "at most two secrets");
    assert_eq!(app.token_response(&cid, &new, &form).await.status(), 401, "grace 0 = immediately invalid");
    assert_eq!(app.token_response(&cid, &newest, &form).await.status(), 200);
}

#[actix_web::test]
async fn revocation_introspection_and_tenant_boundaries() {
    let db = TestDb::new();
    let t1 = seed::tenant(&db, "One");
    let t2 = seed::tenant(&db, "Two");
    let (a, a_secret) = seed::client(&db, &t1, "models:read");
    let (b, b_secret) = seed::client(&db, &t2, "models:read");
    let (auditor, auditor_secret) = seed::client(&db, &t1, "models:read oauth2:introspect");
    let key = seed::api_key(&db, &t1, "models:read");
    let app = TestApp::spawn_on(db, |_| {}).await;
    let form_post = |path: &'static str, id: String, secret: String, token: String| {
        let client = app.client.clone();
        let url = app.url(path);
        async move { client.post(url).basic_auth(id, Some(secret)).form(&[("token", token)]).send().await.unwrap() }
    };
    let a_token = app.access_token(&a, &a_secret, None).await;
    let b_token = app.access_token(&b, &b_secret, None).await;

    // Introspection: own token active; another tenant's token inactive; the introspect
    // capability reaches the same tenant only.
    let own: Value = form_post("/oauth2/introspect", a.clone(), a_secret.clone(), a_token.clone()).await.json().await.unwrap();
    assert_eq!(own["active"], true);
    assert_eq!(own["tenant_id"], t1.as_str());
    let foreign: Value = form_post("/oauth2/introspect", a.clone(), a_secret.clone(), b_token.clone()).await.json().await.unwrap();
    assert_eq!(foreign, serde_json::json!({ "active": false }));
    let by_auditor: Value =
        form_post("/oauth2/introspect", auditor.clone(), auditor_secret.clone(), a_token.clone()).await.json().await.unwrap();
    assert_eq!(by_auditor["active"], true);
    let by_auditor: Value = form_post("/oauth2/introspect", auditor, auditor_secret, b_token.clone()).await.json().await.unwrap();
    assert_eq!(by_auditor["active"], false);
    let r = app.client.post(app.url("/oauth2/introspect")).form(&[("token", a_token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 401, "introspection requires client authentication");

    // Revoking another client's token is a no-op; an API key is the wrong kind of token.
    let r = form_post("/oauth2/revoke", a.clone(), a_secret.clone(), b_token.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.get_with("/v1/models", &b_token).await.status(), 200, "B's token still works");
    let r = form_post("/oauth2/revoke", a.clone(), a_secret.clone(), key.clone()).await;
    assert_eq!(oauth_error(r).await.1, "unsupported_token_type");
    let r = form_post("/oauth2/revoke", a.clone(), a_secret.clone(), "garbage".into()).await;
    assert_eq!(r.status(), 200, "unknown tokens: 200 (RFC 7009 §2.2)");

    // Revoking its own token works at once.
    let r = form_post("/oauth2/revoke", a.clone(), a_secret.clone(), a_token.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = app.get_with("/v1/models", &a_token).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let after: Value = form_post("/oauth2/introspect", a.clone(), a_secret, a_token).await.json().await.unwrap();
    assert_eq!(after, serde_json::json!({ "active": false }));
}

#[actix_web::test]
async fn revocations_reach_another_instance_within_five_seconds() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read");
    // Instances behind one load balancer share the issuer (and database).
    let shared_issuer = |c: &mut gatehouse::config::Config| c.auth.issuer = "https://gatehouse.test".into();
    let first = TestApp::spawn_on(db, shared_issuer).await;
    let second_db = first.db.share();
    let second = TestApp::spawn_on(second_db, shared_issuer).await;
    let token = first.access_token(&cid, &cs, None).await;
    assert_eq!(second.get_with("/v1/models", &token).await.status(), 200);

    let r =
        first.client.post(first.url("/oauth2/revoke")).basic_auth(&cid, Some(&cs)).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let started = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(5), || async { second.get_with("/v1/models", &token).await.status() == 401 }).await);
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "revocation propagated");

    // Disabling the client on the first instance stops new tokens on the second.
    let fresh = first.access_token(&cid, &cs, None).await;
    let admin = seed::admin_token(&first.db, &tenant);
    let r = first.client.delete(first.url(&format!("/api/v1/tenants/{tenant}/clients/{cid}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(first.get_with("/v1/models", &fresh).await.status(), 401, "same instance: at once");
    assert!(eventually(Duration::from_secs(5), || async { second.get_with("/v1/models", &fresh).await.status() == 401 }).await);
}

#[actix_web::test]
async fn revoking_all_tokens_of_a_client_and_disabling_its_tenant() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read");
    let app = TestApp::spawn_on(db, |_| {}).await;
    let op = seed::operator_token(&app.db);
    let token = app.access_token(&cid, &cs, None).await;
    let r = app.client.delete(app.url(&format!("/api/v1/oauth2/tokens?client_id={cid}"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get_with("/v1/models", &token).await.status(), 401);
    // `iat` has whole seconds, so a token from the second of the revocation counts as revoked:
    // wait for the clock to leave that second.
    use gatehouse::db::schema::oauth_clients as c;
    let valid_after: chrono::DateTime<chrono::Utc> =
        c::table.filter(c::id.eq(&cid)).select(c::tokens_valid_after).first(&mut app.db.conn()).unwrap();
    let later_second = || async { chrono::Utc::now().timestamp() > valid_after.timestamp() };
    assert!(eventually(Duration::from_secs(3), later_second).await);
    let fresh = app.access_token(&cid, &cs, None).await;
    assert_eq!(app.get_with("/v1/models", &fresh).await.status(), 200, "tokens issued afterwards work");

    let r = app.client.post(app.url(&format!("/api/v1/tenants/{tenant}/disable"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get_with("/v1/models", &fresh).await.status(), 401);
    assert_eq!(app.token_response(&cid, &cs, &[("grant_type", "client_credentials")]).await.status(), 401);
}

#[actix_web::test]
async fn metadata_and_jwks_documents() {
    let app = TestApp::spawn().await;
    let r = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
    let m: Value = r.json().await.unwrap();
    let iss = m["issuer"].as_str().unwrap();
    assert_eq!(iss, app.address, "issuer is the fetch prefix exactly");
    assert_eq!(m["token_endpoint"], format!("{iss}/oauth2/token"));
    assert_eq!(m["grant_types_supported"], serde_json::json!(["client_credentials"]));
    assert_eq!(m["response_types_supported"], serde_json::json!([]));
    assert_eq!(m["token_endpoint_auth_methods_supported"], serde_json::json!(["client_secret_basic", "client_secret_post"]));
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "active and next keys are published");
    for k in keys {
        assert_eq!(k["kty"], "EC");
        assert!(k.get("d").is_none(), "never private parameters");
    }
    assert_eq!(app.get("/.well-known/openid-configuration").await.status(), 404);
    let pr: Value = app.get("/.well-known/oauth-protected-resource").await.json().await.unwrap();
    assert_eq!(pr["resource"], format!("{iss}/v1"));
}

#[actix_web::test]
async fn signing_key_rotation_keeps_old_tokens_valid_and_signs_with_the_next_key() {
    let (app, cid, cs) = app_with_client("models:read").await;
    let op = seed::operator_token(&app.db);
    let before = app.access_token(&cid, &cs, None).await;
    let kid_before = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    let r = app.client.post(app.url("/api/v1/signing-keys/rotate")).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let keys: Vec<Value> = r.json().await.unwrap();
    let state_of = |kid: &str| keys.iter().find(|k| k["kid"] == kid).map(|k| k["state"].as_str().unwrap().to_owned());
    assert_eq!(state_of(&kid_before).as_deref(), Some("retiring"));
    let after = app.access_token(&cid, &cs, None).await;
    let kid_after = jsonwebtoken::decode_header(&after).unwrap().kid.unwrap();
    assert_ne!(kid_before, kid_after);
    assert_eq!(state_of(&kid_after).as_deref(), Some("active"));
    assert_eq!(app.get_with("/v1/models", &before).await.status(), 200, "retiring keys still verify");
    assert_eq!(app.get_with("/v1/models", &after).await.status(), 200);
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3, "retiring, active and next");
}

#[actix_web::test]
async fn rs256_signing_is_available_by_configuration() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read");
    let app = TestApp::spawn_on(db, |c| c.auth.signing_alg = gatehouse::config::SigningAlg::RS256).await;
    let token = app.access_token(&cid, &cs, None).await;
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(app.get_with("/v1/models", &token).await.status(), 200);
}
