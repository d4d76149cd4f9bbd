//! The management API: operators and tenant admins, and the isolation promise — another
//! tenant's admin gets the same 404 as for something that does not exist, and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, seed};

struct World {
    app: TestApp,
    a: gatehouse::domain::TenantId,
    b: gatehouse::domain::TenantId,
    a_client: (String, String),
    a_key: String,
    a_key_id: String,
    a_token: String,
    b_admin: String,
    a_admin: String,
    op: String,
}

async fn world() -> World {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let b = seed::tenant(&db, "Tenant B");
    let a_client = seed::client(&db, &a, "models:read");
    let a_key = seed::api_key(&db, &a, "models:read");
    let a_key_id = gatehouse::auth::secrets::parse_api_key(&a_key).unwrap().id.to_owned();
    let b_admin = seed::admin_token(&db, &b);
    let a_admin = seed::admin_token(&db, &a);
    let op = seed::operator_token(&db);
    let app = TestApp::spawn_on(db, |_| {}).await;
    let a_token = app.access_token(&a_client.0, &a_client.1, None).await;
    World { app, a, b, a_client, a_key, a_key_id, a_token, b_admin, a_admin, op }
}

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[actix_web::test]
async fn another_tenants_admin_gets_404_on_every_route_and_changes_nothing() {
    let w = world().await;
    let (a, b, cid, kid) = (w.a.to_string(), w.b.to_string(), w.a_client.0.clone(), w.a_key_id.clone());
    let ghost_tenant = gatehouse::domain::TenantId::generate().to_string();
    let ghost_client = gatehouse::domain::ClientId::generate().to_string();
    let ghost_key = gatehouse::domain::random_base62(12);
    // (method, path with A's ids, the same path with ids that do not exist, body)
    let routes: Vec<(Method, String, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/tenants/{a}"), format!("/api/v1/tenants/{ghost_tenant}"), None),
        (Method::POST, format!("/api/v1/tenants/{a}/disable"), format!("/api/v1/tenants/{ghost_tenant}/disable"), None),
        (
            Method::POST,
            format!("/api/v1/tenants/{a}/clients"),
            format!("/api/v1/tenants/{ghost_tenant}/clients"),
            Some(json!({ "name": "sneaky", "scopes": ["models:read"] })),
        ),
        (Method::GET, format!("/api/v1/tenants/{a}/clients"), format!("/api/v1/tenants/{ghost_tenant}/clients"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/clients/{cid}"), format!("/api/v1/tenants/{a}/clients/{ghost_client}"), None),
        (Method::GET, format!("/api/v1/tenants/{b}/clients/{cid}"), format!("/api/v1/tenants/{b}/clients/{ghost_client}"), None),
        (
            Method::PATCH,
            format!("/api/v1/tenants/{b}/clients/{cid}"),
            format!("/api/v1/tenants/{b}/clients/{ghost_client}"),
            Some(json!({ "name": "renamed" })),
        ),
        (Method::DELETE, format!("/api/v1/tenants/{b}/clients/{cid}"), format!("/api/v1/tenants/{b}/clients/{ghost_client}"), None),
        (
            Method::POST,
            format!("/api/v1/tenants/{b}/clients/{cid}/secret/rotate"),
            format!("/api/v1/tenants/{b}/clients/{ghost_client}/secret/rotate"),
            Some(json!({ "grace_period_s": 0 })),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{a}/api-keys"),
            format!("/api/v1/tenants/{ghost_tenant}/api-keys"),
            Some(json!({ "name": "sneaky", "scopes": ["models:read"] })),
        ),
        (Method::GET, format!("/api/v1/tenants/{a}/api-keys"), format!("/api/v1/tenants/{ghost_tenant}/api-keys"), None),
        (Method::GET, format!("/api/v1/tenants/{b}/api-keys/{kid}"), format!("/api/v1/tenants/{b}/api-keys/{ghost_key}"), None),
        (Method::DELETE, format!("/api/v1/tenants/{b}/api-keys/{kid}"), format!("/api/v1/tenants/{b}/api-keys/{ghost_key}"), None),
        (
            Method::POST,
            format!("/api/v1/tenants/{b}/api-keys/{kid}/rotate"),
            format!("/api/v1/tenants/{b}/api-keys/{ghost_key}/rotate"),
            Some(json!({ "grace_period_s": 0 })),
        ),
        (Method::DELETE, format!("/api/v1/oauth2/tokens?client_id={cid}"), format!("/api/v1/oauth2/tokens?client_id={ghost_client}"), None),
    ];
    for (method, path, ghost, body) in routes {
        let (status, text) = call(&w.app, &w.b_admin, method.clone(), &path, body.clone()).await;
        assert_eq!(status, 404, "{method} {path}: {text}");
        let (ghost_status, ghost_text) = call(&w.app, &w.b_admin, method.clone(), &ghost, body).await;
        assert_eq!(ghost_status, 404, "{method} {ghost}");
        assert_eq!(text, ghost_text, "{method} {path}: a foreign resource reads exactly like a missing one");
        assert!(!text.contains(&cid) && !text.contains(&kid), "{method} {path} leaked an id");
    }

    let (status, _) = call(&w.app, &w.b_admin, Method::POST, "/api/v1/oauth2/revoke", Some(json!({ "token": w.a_token }))).await;
    assert_eq!(status, 404);
    let (status, _) = call(&w.app, &w.b_admin, Method::POST, "/api/v1/oauth2/revoke", Some(json!({ "jti": "x", "client_id": cid }))).await;
    assert_eq!(status, 404);
    let (status, text) = call(&w.app, &w.b_admin, Method::POST, "/api/v1/oauth2/introspect", Some(json!({ "token": w.a_token }))).await;
    assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()), (200, json!({ "active": false })));
    let (_, text) = call(&w.app, &w.b_admin, Method::GET, "/api/v1/tenants", None).await;
    let tenants: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["id"], b.as_str());

    // Nothing of A's changed.
    assert_eq!(w.app.get_with("/v1/models", &w.a_token).await.status(), 200, "A's token still works");
    assert_eq!(w.app.get_with("/v1/models", &w.a_key).await.status(), 200, "A's key still works");
    assert!(!w.app.access_token(&w.a_client.0, &w.a_client.1, None).await.is_empty(), "A's secret unchanged");
    let (_, text) = call(&w.app, &w.a_admin, Method::GET, &format!("/api/v1/tenants/{a}/clients"), None).await;
    let clients: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(clients.len(), 1, "no client was created in A");
    assert_eq!(clients[0]["name"], "test client");
    let (_, text) = call(&w.app, &w.a_admin, Method::GET, &format!("/api/v1/tenants/{a}/api-keys"), None).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&text).unwrap().len(), 1, "no key was created in A");
}

#[actix_web::test]
async fn operator_only_routes_refuse_tenant_admins() {
    let w = world().await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/tenants".to_owned(), Some(json!({ "name": "Mine" }))),
        (Method::GET, "/api/v1/signing-keys".to_owned(), None),
        (Method::POST, "/api/v1/signing-keys/rotate".to_owned(), None),
        (Method::POST, format!("/api/v1/tenants/{}/disable", w.a), None),
    ] {
        let (status, text) = call(&w.app, &w.a_admin, method.clone(), &path, body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        let (status, text) = call(&w.app, &w.op, method.clone(), &path, body).await;
        assert!(status == 200 || status == 201, "operator: {method} {path}: {text}");
    }
    let (_, text) = call(&w.app, &w.op, Method::GET, "/api/v1/tenants", None).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&text).unwrap().len(), 3, "operators see every tenant");
}

#[actix_web::test]
async fn management_requires_a_valid_token() {
    let w = world().await;
    let r = w.app.get("/api/v1/tenants").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"management\"");
    for bad in ["nonsense", w.a_key.as_str(), w.a_token.as_str(), &gatehouse::auth::secrets::generate_management_token().full] {
        assert_eq!(call(&w.app, bad, Method::GET, "/api/v1/tenants", None).await.0, 401);
    }
}

#[actix_web::test]
async fn a_tenant_admin_manages_clients_and_keys_end_to_end() {
    let w = world().await;
    let a = w.a.to_string();
    let (status, text) = call(
        &w.app,
        &w.a_admin,
        Method::POST,
        &format!("/api/v1/tenants/{a}/clients"),
        Some(json!({ "name": "worker", "scopes": ["chat:completions", "models:read"], "ip_allowlist": ["127.0.0.1"], "token_ttl_seconds": 600 })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let cid = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(created["ip_allowlist"], json!(["127.0.0.1/32"]));
    let token = w.app.access_token(&cid, &secret, Some("models:read")).await;
    assert_eq!(w.app.get_with("/v1/models", &token).await.status(), 200);

    let (_, text) = call(&w.app, &w.a_admin, Method::GET, &format!("/api/v1/tenants/{a}/clients/{cid}"), None).await;
    assert!(!text.contains(&secret), "the secret is shown only at creation");
    let (status, text) =
        call(&w.app, &w.a_admin, Method::PATCH, &format!("/api/v1/tenants/{a}/clients/{cid}"), Some(json!({ "scopes": ["bogus"] }))).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("scopes"), "the error names the field: {text}");
    let (status, text) =
        call(&w.app, &w.a_admin, Method::PATCH, &format!("/api/v1/tenants/{a}/clients/{cid}"), Some(json!({ "token_ttl_seconds": 5 })))
            .await;
    assert_eq!(status, 422, "{text}");
    let (status, _) = call(&w.app, &w.a_admin, Method::POST, &format!("/api/v1/tenants/{a}/clients"), Some(json!({ "nme": "typo" }))).await;
    assert_eq!(status, 422, "unknown fields are refused");

    let (status, text) = call(
        &w.app,
        &w.a_admin,
        Method::POST,
        &format!("/api/v1/tenants/{a}/api-keys"),
        Some(json!({ "name": "ci", "scopes": ["models:read"], "expires_in_days": 30 })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, text) = call(&w.app, &w.a_admin, Method::GET, &format!("/api/v1/tenants/{a}/api-keys"), None).await;
    assert!(!text.contains(&key));
    assert!(text.contains(&format!("gth_live_{id}_…{}", &key[key.len() - 4..])), "{text}");

    let (status, text) =
        call(&w.app, &w.a_admin, Method::POST, &format!("/api/v1/tenants/{a}/api-keys/{id}/rotate"), Some(json!({ "grace_period_s": 0 })))
            .await;
    assert_eq!(status, 201, "{text}");
    let rolled: Value = serde_json::from_str(&text).unwrap();
    let new_key = rolled["key"].as_str().unwrap();
    assert_eq!(rolled["rolled_from"], id.as_str());
    assert_eq!(w.app.get_with("/v1/models", new_key).await.status(), 200);
    assert_eq!(w.app.get_with("/v1/models", &key).await.status(), 401, "grace 0: the old key stops at once");
}

/// Issue 15 (found while documenting what schemathesis reported for the roll): the optional
/// bodies of `…/api-keys/{id}/rotate` and `…/clients/{id}/secret/rotate` were read as "no body"
/// when they were malformed, so a typo rolled the key (or the secret) with the default 24 h grace
/// instead of being refused.
#[actix_web::test]
async fn a_malformed_optional_rotation_body_is_refused_and_rotates_nothing() {
    let w = world().await;
    let (a, cid, kid) = (w.a.to_string(), w.a_client.0.clone(), w.a_key_id.clone());
    let key_path = format!("/api/v1/tenants/{a}/api-keys/{kid}/rotate");
    let secret_path = format!("/api/v1/tenants/{a}/clients/{cid}/secret/rotate");
    for path in [&key_path, &secret_path] {
        for (body, status, code) in [
            (r#"{"grace_period_s": "soon"}"#, 422, "invalid_value"),
            (r#"{"grace": 0}"#, 422, "invalid_value"),
            ("{not json", 400, "invalid_json"),
        ] {
            let r = w
                .app
                .client
                .post(w.app.url(path))
                .bearer_auth(&w.op)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{path} {body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{path} {body}: {v}");
        }
    }
    // Nothing rotated: tenant A still has its one key, and the client has no previous secret.
    let (_, keys) = call(&w.app, &w.op, Method::GET, &format!("/api/v1/tenants/{a}/api-keys"), None).await;
    assert_eq!(serde_json::from_str::<Value>(&keys).unwrap().as_array().unwrap().len(), 1, "{keys}");
    let (_, client) = call(&w.app, &w.op, Method::GET, &format!("/api/v1/tenants/{a}/clients/{cid}"), None).await;
    assert!(serde_json::from_str::<Value>(&client).unwrap()["previous_secret_valid_until"].is_null(), "{client}");
    assert_eq!(w.app.get_with("/v1/models", &w.a_key).await.status(), 200);

    // Without a body, or with JSON `null`, the default grace period applies.
    let r = w.app.client.post(w.app.url(&key_path)).bearer_auth(&w.op).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = w
        .app
        .client
        .post(w.app.url(&secret_path))
        .bearer_auth(&w.op)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    assert!(rotated["previous_secret_valid_until"].is_string(), "{rotated}");
    assert_eq!(w.app.get_with("/v1/models", &w.a_key).await.status(), 200, "the rolled key works during its grace period");
}
