//! How the management API refuses: the token is checked before the path, query or body, every
//! 4xx is JSON, and a disabled tenant's admins can read but change nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, seed};

async fn send(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> (u16, String, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: a {status} that is not JSON ({content_type}): {text:?}"));
    (status, content_type, body)
}

#[actix_web::test]
async fn authentication_comes_before_query_validation_and_every_refusal_is_json() {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let op = seed::operator_token(&db);
    let app = TestApp::spawn_on(db, |_| {}).await;
    let bad_query = format!("/api/v1/tenants/{a}/usage?group_by=nonsense&from=yesterday");

    // A stranger learns nothing from the query's validation: the answer is the 401.
    let (status, _, body) = send(&app, None, Method::GET, &bad_query).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = send(&app, Some("gth_mgmt_forged"), Method::GET, "/api/v1/usage/export?format=xml").await;
    assert_eq!(status, 401, "{body}");

    // With a token, the query's error is JSON in the API's error shape.
    let (status, content_type, body) = send(&app, Some(&op), Method::GET, &bad_query).await;
    assert_eq!(status, 400, "{body}");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    let (status, _, body) = send(&app, Some(&op), Method::GET, "/api/v1/usage/export?format=xml").await;
    assert_eq!(status, 400, "{body}");

    // Unknown paths and a method a path does not take.
    let (status, _, body) = send(&app, Some(&op), Method::GET, "/api/v1/no-such-thing").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = send(&app, Some(&op), Method::DELETE, "/api/v1/tenants").await;
    assert!(status == 404 || status == 405, "{status} {body}");

    // Bodies: not JSON, the wrong type, the wrong shape.
    let url = app.url("/api/v1/tenants");
    for (content_type, raw, want) in
        [("application/json", "{\"name\": ", 400), ("text/plain", "{\"name\": \"X\"}", 415), ("application/json", "{\"name\": 7}", 422)]
    {
        let r = app.client.post(&url).bearer_auth(&op).header("content-type", content_type).body(raw).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{content_type} {raw}");
        let body: Value = r.json().await.expect("a JSON error body");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[actix_web::test]
async fn a_disabled_tenants_admin_can_read_but_not_change_anything() {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let admin = seed::admin_token(&db, &a);
    let op = seed::operator_token(&db);
    let app = TestApp::spawn_on(db, |_| {}).await;
    let keys = format!("/api/v1/tenants/{a}/api-keys");
    let create =
        |token: &str| app.client.post(app.url(&keys)).bearer_auth(token).json(&json!({ "name": "k", "scopes": ["models:read"] })).send();

    assert_eq!(create(&admin).await.unwrap().status(), 201, "an active tenant's admin creates keys");
    let r = app.client.post(app.url(&format!("/api/v1/tenants/{a}/disable"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = create(&admin).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("disabled"), "{body}");
    let (status, _, _) = send(&app, Some(&admin), Method::PATCH, &format!("/api/v1/tenants/{a}")).await;
    assert_eq!(status, 403, "no change of any kind");

    let (status, _, body) = send(&app, Some(&admin), Method::GET, &keys).await;
    assert_eq!(status, 200, "reads still work: {body}");
    assert_eq!(body.as_array().unwrap().len(), 1, "the refused create made nothing: {body}");
    let (status, _, _) = send(&app, Some(&op), Method::GET, &keys).await;
    assert_eq!(status, 200, "operators are not affected");
}
