//! The `/v1` resource server's negative matrix (docs/auth.md §7, §13): forged and tampered
//! tokens, header tricks, claim violations and API-key failures all answer 401 `invalid_token`
//! in OpenAI's error shape with an RFC 6750 challenge; missing scope answers 403.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use diesel::prelude::*;
use gatehouse::auth::keys::KeySet;
use gatehouse::auth::seal::MasterKey;
use gatehouse::config::Secret;
use hmac::Mac;
use serde_json::{Value, json};

use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, seed};

struct Fixture {
    app: TestApp,
    token: String,
    header: Value,
    claims: Value,
    keys: KeySet,
    key: String,
    tenant: gatehouse::domain::TenantId,
}

async fn fixture() -> Fixture {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, cs) = seed::client(&db, &tenant, "models:read chat:completions");
    let key = seed::api_key(&db, &tenant, "models:read");
    let app = TestApp::spawn_on(db, |_| {}).await;
    let token = app.access_token(&cid, &cs, None).await;
    let part = |i: usize| -> Value { serde_json::from_slice(&B64.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap() };
    let master = MasterKey::from_config(&Secret::new(TEST_MASTER_KEY)).unwrap();
    let keys = KeySet::build(gatehouse::auth::rotation::load(&mut app.db.conn(), &master).unwrap()).unwrap();
    Fixture { header: part(0), claims: part(1), token, keys, app, key, tenant }
}

/// Signs any header and claims with the server's real active key.
fn sign(keys: &KeySet, header: &Value, claims: &Value) -> String {
    let body = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = keys.active.as_ref().unwrap().signer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", B64.encode(signature))
}

fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()), B64.encode(signature))
}

async fn assert_invalid_token(app: &TestApp, token: &str, case: &str) {
    let r = app.get_with("/v1/models", token).await;
    assert_eq!(r.status(), 401, "{case}");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\"api\", error=\"invalid_token\""), "{case}: {challenge}");
    assert!(!challenge.contains(token), "{case}: the token is never echoed");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{case}: refusals carry the security headers");
    assert!(r.headers().contains_key("x-request-id"), "{case}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key", "{case}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{case}");
}

#[actix_web::test]
async fn the_genuine_token_and_key_work() {
    let f = fixture().await;
    assert_eq!(f.app.get_with("/v1/models", &f.token).await.status(), 200);
    let r = f.app.get_with("/v1/models", &f.key).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "object": "list", "data": [] }), "no worker pools yet");
}

#[actix_web::test]
async fn forged_tokens_are_rejected() {
    let f = fixture().await;
    let (h, c) = (&f.header, &f.claims);
    let signing_input = |h: &Value| format!("{}.{}", B64.encode(h.to_string()), B64.encode(c.to_string()));

    let mut none = h.clone();
    none["alg"] = "none".into();
    assert_invalid_token(&f.app, &format!("{}.", signing_input(&none)), "alg none").await;

    // HS256 with the published public key as the HMAC secret (algorithm confusion).
    let jwks = f.app.get("/.well-known/jwks.json").await.text().await.unwrap();
    let mut hs = h.clone();
    hs["alg"] = "HS256".into();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(jwks.as_bytes()).unwrap();
    mac.update(signing_input(&hs).as_bytes());
    let forged = format!("{}.{}", signing_input(&hs), B64.encode(mac.finalize().into_bytes()));
    assert_invalid_token(&f.app, &forged, "HS256 keyed with the public key").await;

    // The header's alg never picks the verification algorithm.
    let mut rs = h.clone();
    rs["alg"] = "RS256".into();
    assert_invalid_token(&f.app, &sign(&f.keys, &rs, c), "alg not bound to the kid").await;

    for kid in ["../../etc/passwd", "' OR '1'='1", "https://evil.example/key", &"k".repeat(65)] {
        let mut bad = h.clone();
        bad["kid"] = kid.into();
        assert_invalid_token(&f.app, &sign(&f.keys, &bad, c), "kid injection").await;
    }
    for member in ["jku", "jwk", "x5u", "x5c", "crit"] {
        let mut bad = h.clone();
        bad[member] = json!("https://evil.example/jwks.json");
        assert_invalid_token(&f.app, &sign(&f.keys, &bad, c), member).await;
    }
    // CVE-2022-21449 "psychic signatures": r = s = 0.
    assert_invalid_token(&f.app, &unsigned(h, c, &[0u8; 64]), "ECDSA r=s=0").await;

    let mut typ = h.clone();
    typ["typ"] = "JWT".into();
    assert_invalid_token(&f.app, &sign(&f.keys, &typ, c), "typ JWT").await;

    // A tampered payload under the original signature.
    let mut more = c.clone();
    more["scope"] = "chat:completions models:read audio:align".into();
    let sig = f.token.rsplit('.').next().unwrap();
    assert_invalid_token(&f.app, &format!("{}.{}.{sig}", f.token.split('.').next().unwrap(), B64.encode(more.to_string())), "tampered")
        .await;

    // A well-formed token from a key the server never published.
    let stranger = gatehouse::auth::keys::generate(gatehouse::config::SigningAlg::ES256).unwrap();
    let stranger_set = KeySet::build(vec![gatehouse::auth::keys::LoadedKey {
        kid: stranger.kid.clone(),
        alg: stranger.alg,
        state: gatehouse::auth::keys::KeyState::Active,
        public_jwk: stranger.public_jwk,
        active_pkcs8: Some(stranger.pkcs8),
    }])
    .unwrap();
    let mut sh = h.clone();
    sh["kid"] = stranger.kid.into();
    assert_invalid_token(&f.app, &sign(&stranger_set, &sh, c), "unknown key").await;

    for garbage in ["abc", "a.b", "a.b.c.d", "eyJ.eyJ.x"] {
        assert_invalid_token(&f.app, garbage, "not a JWS").await;
    }
}

#[actix_web::test]
async fn claim_violations_are_rejected() {
    let f = fixture().await;
    let now = chrono::Utc::now().timestamp();
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("wrong aud", Box::new(|c| c["aud"] = "https://other.example/v1".into())),
        ("iss with a trailing slash", Box::new(|c| c["iss"] = format!("{}/", c["iss"].as_str().unwrap()).into())),
        (
            "expired beyond leeway",
            Box::new(move |c| {
                c["iat"] = (now - 1000).into();
                c["nbf"] = (now - 1000).into();
                c["exp"] = (now - 31).into();
            }),
        ),
        ("nbf in the future", Box::new(move |c| c["nbf"] = (now + 120).into())),
        (
            "iat in the future",
            Box::new(move |c| {
                c["iat"] = (now + 120).into();
                c["exp"] = (now + 900).into();
            }),
        ),
        ("lifetime over an hour", Box::new(move |c| c["exp"] = (now + 7200).into())),
        ("another tenant in the claims", Box::new(|c| c["tenant_id"] = gatehouse::domain::TenantId::generate().to_string().into())),
        (
            "no jti",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
    ];
    for (case, mutate) in cases {
        let mut c = f.claims.clone();
        mutate(&mut c);
        assert_invalid_token(&f.app, &sign(&f.keys, &f.header, &c), case).await;
    }
    // Within the 30 s leeway the same token is fine.
    let mut c = f.claims.clone();
    c["exp"] = (now - 29).into();
    c["iat"] = (now - 900).into();
    c["nbf"] = (now - 900).into();
    assert_eq!(f.app.get_with("/v1/models", &sign(&f.keys, &f.header, &c)).await.status(), 200);
}

#[actix_web::test]
async fn credentials_must_come_in_one_bearer_header() {
    let f = fixture().await;
    let r = f.app.get("/v1/models").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api\"", "no error code without credentials");
    let r = f.app.client.get(f.app.url(&format!("/v1/models?access_token={}", f.token))).send().await.unwrap();
    assert_eq!(r.status(), 401, "query tokens are not accepted");
    let r = f.app.client.get(f.app.url(&format!("/v1/models?access_token={}", f.token))).bearer_auth(&f.token).send().await.unwrap();
    assert_eq!(r.status(), 400, "header and query at once");
    let r = f.app.client.get(f.app.url("/v1/models")).basic_auth("x", Some("y")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = f
        .app
        .client
        .get(f.app.url("/v1/models"))
        .header("authorization", format!("Bearer {}", f.token))
        .header("authorization", format!("Bearer {}", f.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "two Authorization headers");
    assert_invalid_token(&f.app, &"a".repeat(9000), "oversized").await;
}

#[actix_web::test]
async fn missing_scope_is_403_with_the_needed_scope() {
    let f = fixture().await;
    let chat_only = seed::api_key(&f.app.db, &f.tenant, "chat:completions");
    let r = f.app.get_with("/v1/models", &chat_only).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"models:read\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
}

#[actix_web::test]
async fn api_key_failures_are_rejected() {
    use gatehouse::db::schema::api_keys;
    let f = fixture().await;
    // A typo fails the checksum: rejected without a lookup.
    let mut typo: Vec<char> = f.key.chars().collect();
    let i = typo.len() - 8;
    typo[i] = if typo[i] == 'a' { 'b' } else { 'a' };
    assert_invalid_token(&f.app, &typo.into_iter().collect::<String>(), "typo").await;
    let unknown = gatehouse::auth::secrets::generate_api_key(gatehouse::auth::secrets::KeyEnvironment::Live).full;
    assert_invalid_token(&f.app, &unknown, "unknown key").await;

    let expired = seed::api_key(&f.app.db, &f.tenant, "models:read");
    let expired_id = gatehouse::auth::secrets::parse_api_key(&expired).unwrap().id.to_owned();
    diesel::update(api_keys::table.find(&expired_id))
        .set(api_keys::expires_at.eq(Some(chrono::Utc::now() - chrono::Duration::seconds(1))))
        .execute(&mut f.app.db.conn())
        .unwrap();
    assert_invalid_token(&f.app, &expired, "expired key").await;

    let fenced = {
        let req = gatehouse::service::api_keys::CreateApiKeyRequest {
            name: "fenced".into(),
            scopes: vec!["models:read".into()],
            environment: None,
            expires_in_days: None,
            ip_allowlist: vec!["10.0.0.0/8".into()],
        };
        gatehouse::service::api_keys::create(&mut f.app.db.conn(), &seed::pepper(), &f.tenant, &req, &gatehouse::service::Actor::cli())
            .unwrap()
            .key
    };
    assert_invalid_token(&f.app, &fenced, "IP not in the allowlist").await;

    let op = seed::operator_token(&f.app.db);
    let id = gatehouse::auth::secrets::parse_api_key(&f.key).unwrap().id.to_owned();
    let r = f.app.client.delete(f.app.url(&format!("/api/v1/tenants/{}/api-keys/{id}", f.tenant))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_invalid_token(&f.app, &f.key, "revoked key").await;
}
