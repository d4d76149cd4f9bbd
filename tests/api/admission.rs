//! The `/v1` admission step as a caller sees it: every answer to a rate-limited credential carries
//! the rate-limit headers, a refused or invalid request included, and a 5xx answer never carries
//! an internal cause (only the request id).

use diesel::RunQueryDsl;
use serde_json::{Value, json};

use crate::helpers::{TestApp, seed};
use crate::limits::{MODEL, World, chat, post};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[actix_web::test]
async fn validation_errors_carry_the_rate_limit_headers_and_take_nothing() {
    let world = World::new();
    world.plan(json!({ "requests_per_minute": 5, "tokens_per_minute": 100000 }));
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&world.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let answers = vec![
        (raw("{not json").await.unwrap(), 400),
        (raw(r#"{"messages":[{"role":"user","content":"hi"}]}"#).await.unwrap(), 400),
        (post(&app, &world.key, &json!({ "model": "no-such-model", "messages": [{ "role": "user", "content": "hi" }] })).await, 404),
        (post(&app, &world.key, &json!({ "model": MODEL, "max_tokens": 0, "messages": [{ "role": "user", "content": "hi" }] })).await, 400),
    ];
    for (response, status) in &answers {
        assert_eq!(response.status(), *status);
        assert_eq!(header(response, "x-ratelimit-limit-requests").as_deref(), Some("5"), "status {status}");
        // Refused before admission: nothing was taken from the window.
        assert_eq!(header(response, "x-ratelimit-remaining-requests").as_deref(), Some("5"), "status {status}");
        assert!(header(response, "ratelimit-policy").is_some());
    }
    let ok = post(&app, &world.key, &chat(10, false)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-ratelimit-remaining-requests").as_deref(), Some("4"));
    // The model listing and the alignment routes answer through the same step.
    let models = app.get_with("/v1/models", &world.key).await;
    assert_eq!(header(&models, "x-ratelimit-remaining-requests").as_deref(), Some("3"));
    let no_scope = app.get_with("/v1/audio/alignments/languages", &world.key).await;
    assert_eq!(no_scope.status(), 403);
    assert_eq!(header(&no_scope, "x-ratelimit-limit-requests").as_deref(), Some("5"));
}

#[actix_web::test]
async fn a_credential_without_limits_gets_no_rate_limit_headers() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let r = post(&app, &world.key, &json!({ "model": MODEL })).await;
    assert_eq!(r.status(), 400);
    assert!(header(&r, "x-ratelimit-limit-requests").is_none());
}

/// Words that belong to the inside of the server, never to an answer.
const INTERNAL: [&str; 8] = ["relation", "does not exist", "SQL", "diesel", "postgres", "plans_gone", "connection", "panicked"];

fn assert_opaque(status: u16, body: &Value) {
    let text = body.to_string();
    assert!((500..600).contains(&status), "{status}: {text}");
    for word in INTERNAL {
        assert!(!text.contains(word), "a {status} body reveals `{word}`: {text}");
    }
    assert!(text.contains("request id"), "{text}");
}

#[actix_web::test]
async fn no_5xx_body_carries_internal_error_text() {
    let world = World::new();
    let app = TestApp::spawn_on(world.db.share(), |_| {}).await;
    let operator = seed::operator_token(&world.db);
    // Authenticate once so the credential is cached, then break the schema under the server.
    assert_eq!(post(&app, &world.key, &chat(5, false)).await.status(), 200);
    diesel::sql_query("ALTER TABLE plans RENAME TO plans_gone").execute(&mut world.db.conn()).unwrap();
    app.state.admission.policies.forget_all_tenants();

    let v1 = post(&app, &world.key, &chat(5, false)).await;
    let status = v1.status().as_u16();
    assert_opaque(status, &v1.json().await.unwrap());
    let listing = app.get_with("/api/v1/plans", &operator).await;
    let status = listing.status().as_u16();
    assert_opaque(status, &listing.json().await.unwrap());
    diesel::sql_query("ALTER TABLE plans_gone RENAME TO plans").execute(&mut world.db.conn()).unwrap();
}
