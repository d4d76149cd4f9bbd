//! Isolation: a tenant admin who edits a dashboard URL to another tenant's id, or to another
//! tenant's key or client, gets exactly the 404 page of an id that does not exist, on every
//! route, and nothing changes. Operator pages are 404 to tenant admins too.

use diesel::prelude::*;
use gatehouse::db::schema::{api_keys, oauth_clients, tenants};

use crate::dashboard_support::{Browser, admin_session};
use crate::helpers::{TestApp, seed};

const MISSING_TENANT: &str = "ten_0000000000000000000000";

const TENANT_GETS: [&str; 7] = ["", "/api-keys", "/clients", "/usage", "/usage/export?period=2026-11&format=csv", "/limits", "/audit"];

async fn assert_same_404(browser: &Browser<'_>, foreign: &str, missing: &str, post: bool) {
    let token = browser.get("/admin/settings").await.csrf();
    let form = [("csrf_token", token.as_str()), ("name", "x"), ("scopes", "models:read"), ("prompt_deny_patterns", "x")];
    let (a, b) = if post {
        (browser.post(foreign, &form).await, browser.post(missing, &form).await)
    } else {
        (browser.get(foreign).await, browser.get(missing).await)
    };
    assert_eq!(a.status, 404, "{foreign}: {}", a.body);
    assert_eq!(b.status, 404, "{missing}");
    assert_eq!(a.body, b.body, "{foreign} must look exactly like {missing}");
}

#[actix_rt::test]
async fn every_tenant_route_answers_another_tenants_id_like_a_missing_one() {
    let app = TestApp::spawn().await;
    let (_, browser) = admin_session(&app).await;
    let other = seed::tenant(&app.db, "Other");
    let other_key = seed::api_key(&app.db, &other, "models:read");
    let other_key_id = other_key.split('_').nth(2).unwrap().to_owned();
    let (other_client, _) = seed::client(&app.db, &other, "chat:completions");
    for page in TENANT_GETS {
        assert_same_404(&browser, &format!("/admin/t/{other}{page}"), &format!("/admin/t/{MISSING_TENANT}{page}"), false).await;
        assert_same_404(&browser, &format!("/admin/t/{other}{page}"), &format!("/admin/t/not-an-id{page}"), false).await;
    }
    let posts = [
        "/api-keys".to_owned(),
        format!("/api-keys/{other_key_id}/roll"),
        format!("/api-keys/{other_key_id}/revoke"),
        "/clients".to_owned(),
        format!("/clients/{other_client}/rotate"),
        format!("/clients/{other_client}/disable"),
        "/limits/deny-patterns".to_owned(),
    ];
    for action in &posts {
        assert_same_404(&browser, &format!("/admin/t/{other}{action}"), &format!("/admin/t/{MISSING_TENANT}{action}"), true).await;
    }
    let mut conn = app.db.conn();
    assert_eq!(api_keys::table.filter(api_keys::tenant_id.eq(other.as_str())).count().get_result::<i64>(&mut conn).unwrap(), 1);
    assert_eq!(
        api_keys::table
            .filter(api_keys::tenant_id.eq(other.as_str()))
            .filter(api_keys::revoked_at.is_not_null())
            .count()
            .get_result::<i64>(&mut conn)
            .unwrap(),
        0
    );
    assert_eq!(oauth_clients::table.filter(oauth_clients::disabled_at.is_not_null()).count().get_result::<i64>(&mut conn).unwrap(), 0);
    let patterns: Vec<String> = tenants::table.find(other.as_str()).select(tenants::prompt_deny_patterns).first(&mut conn).unwrap();
    assert!(patterns.is_empty());
    assert_eq!(app.get_with("/v1/models", &other_key).await.status(), 200);
}

#[actix_rt::test]
async fn another_tenants_key_or_client_under_ones_own_tenant_is_a_404() {
    let app = TestApp::spawn().await;
    let (own, browser) = admin_session(&app).await;
    let other = seed::tenant(&app.db, "Other");
    let other_key = seed::api_key(&app.db, &other, "models:read");
    let other_key_id = other_key.split('_').nth(2).unwrap().to_owned();
    let (other_client, _) = seed::client(&app.db, &other, "chat:completions");
    let base = format!("/admin/t/{own}");
    for (foreign, missing) in [
        (format!("{base}/api-keys/{other_key_id}/revoke"), format!("{base}/api-keys/000000000000/revoke")),
        (format!("{base}/api-keys/{other_key_id}/roll"), format!("{base}/api-keys/000000000000/roll")),
        (format!("{base}/clients/{other_client}/rotate"), format!("{base}/clients/cli_0000000000000000000000/rotate")),
        (format!("{base}/clients/{other_client}/disable"), format!("{base}/clients/cli_0000000000000000000000/disable")),
    ] {
        assert_same_404(&browser, &foreign, &missing, true).await;
    }
    assert_eq!(app.get_with("/v1/models", &other_key).await.status(), 200);
}

#[actix_rt::test]
async fn operator_pages_are_404_to_a_tenant_admin() {
    let app = TestApp::spawn().await;
    let (_, browser) = admin_session(&app).await;
    let missing = browser.get("/admin/no-such-page").await;
    assert_eq!(missing.status, 404);
    for page in [
        "/admin/tenants",
        "/admin/plans",
        "/admin/pools",
        "/admin/signing-keys",
        "/admin/usage",
        "/admin/audit",
        "/admin/usage/export?period=2026-11",
    ] {
        let answer = browser.get(page).await;
        assert_eq!(answer.status, 404, "{page}");
        assert_eq!(answer.body, missing.body, "{page}");
    }
    let token = browser.get("/admin/settings").await.csrf();
    for action in [
        "/admin/tenants",
        "/admin/plans",
        "/admin/plans/default",
        "/admin/signing-keys/rotate",
        "/admin/workers/wkr_0000000000000000000000/drain",
    ] {
        assert_eq!(browser.post(action, &[("csrf_token", &token), ("name", "x")]).await.status, 404, "{action}");
    }
    assert_eq!(tenants::table.count().get_result::<i64>(&mut app.db.conn()).unwrap(), 1);
}
