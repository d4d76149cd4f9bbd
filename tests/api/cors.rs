//! CORS against the running app: off by default; a tenant's origins answer preflights (echoed,
//! never `*`, no credentials) and reach the answers to that tenant's credentials only, on `/v1`
//! (streams and errors included) and the token endpoint; origins are validated strictly and only
//! the tenant's own admins (and operators) change them.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, gatehouse, run, seed};
use crate::limits::{World, chat};

const A_ORIGIN: &str = "https://app.a.example";

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, x-stainless-os, x-evil")
        .send()
        .await
        .unwrap()
}

async fn patch(app: &TestApp, tenant: &str, token: &str, body: Value) -> Response {
    app.client.patch(app.url(&format!("/api/v1/tenants/{tenant}"))).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn get_from(app: &TestApp, path: &str, origin: &str, bearer: &str) -> Response {
    app.client.get(app.url(path)).header("origin", origin).bearer_auth(bearer).send().await.unwrap()
}

fn no_cors(h: &HeaderMap) -> bool {
    h.keys().all(|k| !k.as_str().starts_with("access-control-"))
}

fn allows(h: &HeaderMap, origin: &str) -> bool {
    h.get("access-control-allow-origin").is_some_and(|v| v == origin)
        && h.get("access-control-allow-credentials").is_none()
        && h.get_all("vary").iter().any(|v| v.to_str().unwrap().contains("Origin"))
}

#[actix_web::test]
async fn tenant_origins_answer_preflights_and_reach_only_their_tenants_answers() {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let b = seed::tenant(&db, "Tenant B");
    let a_key = seed::api_key(&db, &a, "models:read");
    let b_key = seed::api_key(&db, &b, "models:read");
    let (a_client, a_secret) = seed::client(&db, &a, "models:read");
    let a_admin = seed::admin_token(&db, &a);
    let b_admin = seed::admin_token(&db, &b);
    let app = TestApp::spawn_on(db, |_| {}).await;

    // Off by default: no tenant allows any origin.
    let r = preflight(&app, "/v1/models", A_ORIGIN).await;
    assert_eq!(r.status(), 403);
    assert!(no_cors(r.headers()), "{:?}", r.headers());
    let r = get_from(&app, "/v1/models", A_ORIGIN, &a_key).await;
    assert_eq!(r.status(), 200);
    assert!(no_cors(r.headers()), "{:?}", r.headers());

    // Strict validation, naming the field; nothing changes.
    for bad in ["*", "null", "https://x.example/path", "ftp://x", "https://X.example", "https://x.example:443"] {
        let r = patch(&app, a.as_str(), &a_admin, json!({ "cors_origins": [bad] })).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["param"], "cors_origins", "{bad}: {body}");
    }
    let too_many: Vec<String> = (0..21).map(|i| format!("https://a{i}.example")).collect();
    assert_eq!(patch(&app, a.as_str(), &a_admin, json!({ "cors_origins": too_many })).await.status(), 422);
    // Another tenant's admin cannot see, let alone change, A's origins.
    assert_eq!(patch(&app, a.as_str(), &b_admin, json!({ "cors_origins": ["https://evil.example"] })).await.status(), 404);

    // A's admin allows A's origin: applied at once on this instance.
    let r = patch(&app, a.as_str(), &a_admin, json!({ "cors_origins": [A_ORIGIN] })).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["cors_origins"], json!([A_ORIGIN]));

    let r = preflight(&app, "/v1/chat/completions", A_ORIGIN).await;
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert!(allows(h, A_ORIGIN), "{h:?}");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, DELETE, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "authorization, content-type, x-stainless-os", "x-evil is not echoed");
    assert_eq!(h["access-control-max-age"], "600");
    let r = preflight(&app, "/v1/models", "https://evil.example").await;
    assert_eq!(r.status(), 403);
    assert!(no_cors(r.headers()));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    assert_eq!(preflight(&app, "/api/v1/tenants", A_ORIGIN).await.status(), 401, "the management API has no CORS");

    // Actual requests: A's credential from A's origin gets the headers; B's does not.
    let r = get_from(&app, "/v1/models", A_ORIGIN, &a_key).await;
    assert_eq!(r.status(), 200);
    assert!(allows(r.headers(), A_ORIGIN), "{:?}", r.headers());
    let exposed = r.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after") && exposed.contains("ratelimit"), "{exposed}");
    let r = get_from(&app, "/v1/models", A_ORIGIN, &b_key).await;
    assert_eq!(r.status(), 200);
    assert!(no_cors(r.headers()), "B does not allow A's origin: {:?}", r.headers());
    let r = get_from(&app, "/v1/models", "https://evil.example", &a_key).await;
    assert!(no_cors(r.headers()));
    // Errors after authentication carry them too.
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("origin", A_ORIGIN)
        .bearer_auth(&a_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the key lacks chat:completions");
    assert!(allows(r.headers(), A_ORIGIN), "{:?}", r.headers());
    // Requests without Origin are unchanged.
    let r = app.get_with("/v1/models", &a_key).await;
    assert!(no_cors(r.headers()));

    // The token endpoint: preflight, then A's client from A's origin.
    let r = preflight(&app, "/oauth2/token", A_ORIGIN).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-methods"], "POST, OPTIONS");
    let r = preflight(&app, "/oauth2/token", "https://evil.example").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "access_denied", "OAuth-shaped: {body}");
    let r = app
        .client
        .post(app.url("/oauth2/token"))
        .header("origin", A_ORIGIN)
        .basic_auth(&a_client, Some(&a_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(allows(r.headers(), A_ORIGIN), "{:?}", r.headers());
    let r = app
        .client
        .post(app.url("/oauth2/token"))
        .header("origin", A_ORIGIN)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(no_cors(r.headers()), "no client authenticated, no tenant: {:?}", r.headers());

    // An empty list turns CORS off again.
    assert_eq!(patch(&app, a.as_str(), &a_admin, json!({ "cors_origins": [] })).await.status(), 200);
    assert_eq!(preflight(&app, "/v1/models", A_ORIGIN).await.status(), 403);
}

#[actix_web::test]
async fn streamed_completions_carry_the_headers() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let admin = seed::admin_token(&app.db, &world.tenant);
    assert_eq!(patch(&app, world.tenant.as_str(), &admin, json!({ "cors_origins": [A_ORIGIN] })).await.status(), 200);
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("origin", A_ORIGIN)
        .bearer_auth(&world.key)
        .json(&chat(5, true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(allows(r.headers(), A_ORIGIN), "{:?}", r.headers());
    assert!(r.text().await.unwrap().contains("[DONE]"));
}

#[test]
fn the_cli_sets_and_clears_origins() {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let cli = |args: &[&str]| run(gatehouse().env("DATABASE_URL", &db.url).args(args));
    let (code, out, err) =
        cli(&["tenant", "update", a.as_str(), "--cors-origin", A_ORIGIN, "--cors-origin", "http://localhost:5173", "--json"]);
    assert_eq!(code, 0, "{err}");
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["cors_origins"], json!([A_ORIGIN, "http://localhost:5173"]));
    let (code, _, err) = cli(&["tenant", "update", a.as_str(), "--cors-origin", "*"]);
    assert_ne!(code, 0);
    assert!(err.contains("cors_origins"), "{err}");
    let (code, out, err) = cli(&["tenant", "update", a.as_str(), "--no-cors-origins", "--json"]);
    assert_eq!(code, 0, "{err}");
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["cors_origins"], json!([]));
}
