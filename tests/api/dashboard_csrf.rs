//! CSRF: every state-changing dashboard form needs this session's synchronizer token (a missing
//! or another session's token is refused with 403 and changes nothing), and a browser's `Origin`
//! must be this site's.

use diesel::prelude::*;
use gatehouse::db::schema::api_keys;

use crate::dashboard_support::{Browser, admin, admin_session};
use crate::helpers::TestApp;

fn key_count(app: &TestApp) -> i64 {
    api_keys::table.count().get_result(&mut app.db.conn()).unwrap()
}

#[actix_rt::test]
async fn a_form_without_the_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let action = format!("/admin/t/{tenant}/api-keys");
    let refused = browser.post(&action, &[("name", "sneaky"), ("scopes", "models:read")]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("nothing was changed"));
    assert_eq!(key_count(&app), 0);
    // Logout needs it too.
    assert_eq!(browser.post("/admin/logout", &[]).await.status, 403);
    assert_eq!(browser.get(&action).await.status, 200, "still signed in");
}

#[actix_rt::test]
async fn another_sessions_token_is_refused() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let other = Browser::new(&app);
    other.login(&admin(&app.db, &tenant)).await;
    let foreign_token = other.get("/admin/settings").await.csrf();
    let own_token = browser.get("/admin/settings").await.csrf();
    assert_ne!(foreign_token, own_token, "tokens are per session");
    let action = format!("/admin/t/{tenant}/api-keys");
    let refused = browser.post(&action, &[("csrf_token", &foreign_token), ("name", "x"), ("scopes", "models:read")]).await;
    assert_eq!(refused.status, 403);
    let wrong = browser.post(&action, &[("csrf_token", "0000"), ("name", "x"), ("scopes", "models:read")]).await;
    assert_eq!(wrong.status, 403);
    assert_eq!(key_count(&app), 0);
}

#[actix_rt::test]
async fn a_form_from_another_origin_is_refused_even_with_the_token() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let token = browser.get("/admin/settings").await.csrf();
    let action = format!("/admin/t/{tenant}/api-keys");
    let form = [("csrf_token", token.as_str()), ("name", "x"), ("scopes", "models:read")];
    assert_eq!(browser.post_from(&action, &form, Some("https://evil.example")).await.status, 403);
    assert_eq!(browser.post_from(&action, &form, Some("null")).await.status, 403);
    assert_eq!(key_count(&app), 0);
    // Same origin, right token: accepted.
    assert_eq!(browser.post(&action, &form).await.status, 201);
    assert_eq!(key_count(&app), 1);
}

#[actix_rt::test]
async fn the_login_form_needs_its_token_too() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    browser.get("/admin/login").await;
    let refused = browser.post("/admin/login", &[("email", "a@example.com"), ("password", "whatever password")]).await;
    assert_eq!(refused.status, 403);
    let forged = browser
        .post("/admin/login", &[("csrf_token", "forged-forged-forged-forged-1234"), ("email", "a@example.com"), ("password", "x")])
        .await;
    assert_eq!(forged.status, 403);
}
