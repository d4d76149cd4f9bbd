//! Tenant-admin pages: each renders for the tenant's admin and for an operator; API keys and
//! OAuth clients show their secret exactly once; forms re-render with the message beside the
//! field and the input kept; usage renders from rollups and the export downloads.

use chrono::{Duration, Utc};
use gatehouse::db::usage::Totals;
use gatehouse::domain::TenantId;

use crate::dashboard_support::{admin_session, operator_session};
use crate::helpers::{TestApp, seed};

const PAGES: [&str; 6] = ["", "/api-keys", "/clients", "/usage", "/limits", "/audit"];

fn rollup(app: &TestApp, tenant: &TenantId, minutes_ago: i64, model: &str, requests: i64) {
    use chrono::DurationRound;
    let minute = (Utc::now() - Duration::minutes(minutes_ago)).duration_trunc(Duration::minutes(1)).unwrap();
    let totals = Totals {
        requests,
        errors: 1,
        prompt_tokens: 100,
        completion_tokens: 50,
        audio_ms: 2000,
        queue_wait_ms_sum: 30,
        latency_ms_sum: 900,
    };
    gatehouse::db::usage::write_rollups(
        &mut app.db.conn(),
        &[((minute, tenant.clone(), "key_test".into(), model.into()), totals)],
        &[],
        None,
    )
    .unwrap();
}

#[actix_rt::test]
async fn every_tenant_page_renders_for_its_admin_and_for_an_operator() {
    let app = TestApp::spawn().await;
    let (tenant, admin) = admin_session(&app).await;
    let operator = operator_session(&app).await;
    for page in PAGES {
        let path = format!("/admin/t/{tenant}{page}");
        for (who, browser) in [("admin", &admin), ("operator", &operator)] {
            let answer = browser.get(&path).await;
            assert_eq!(answer.status, 200, "{who} {path}: {}", answer.body);
            assert!(answer.body.contains("aria-current=\"page\""), "{who} {path}: the page is marked in the navigation");
            assert_eq!(answer.headers["cache-control"], "no-store", "{path}");
        }
    }
    // Empty states.
    assert!(admin.get(&format!("/admin/t/{tenant}/api-keys")).await.body.contains("No API keys yet"));
    assert!(admin.get(&format!("/admin/t/{tenant}/clients")).await.body.contains("No OAuth2 clients yet"));
    assert!(admin.get(&format!("/admin/t/{tenant}/usage")).await.body.contains("No usage in this range"));
}

#[actix_rt::test]
async fn an_api_key_is_shown_once_works_and_stops_working_when_revoked() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let page = format!("/admin/t/{tenant}/api-keys");
    let created = browser
        .submit(
            &page,
            &page,
            &[("name", "ci"), ("scopes", "models:read"), ("scopes", "chat:completions"), ("expires_in_days", "30"), ("ip_allowlist", "")],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = regex::Regex::new(r#"<code id="shown-secret">(gth_live_[A-Za-z0-9_]+)</code>"#)
        .unwrap()
        .captures(&created.body)
        .expect("key shown")[1]
        .to_owned();
    assert!(created.body.contains("shown only this once"));
    // Listed masked afterwards, never in full.
    let listed = browser.get(&page).await;
    assert!(!listed.body.contains(&key));
    assert!(listed.body.contains("ci") && listed.body.contains("…"));
    assert_eq!(app.get_with("/v1/models", &key).await.status(), 200);

    let id = key.split('_').nth(2).unwrap().to_owned();
    let revoked = browser.submit(&page, &format!("{page}/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, 303);
    let after = browser.get(&page).await;
    assert!(after.body.contains("revoked"), "flash and status");
    assert_eq!(app.get_with("/v1/models", &key).await.status(), 401);
}

#[actix_rt::test]
async fn rolling_a_key_shows_the_new_key_once() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let old = seed::api_key(&app.db, &tenant, "models:read");
    let id = old.split('_').nth(2).unwrap().to_owned();
    let page = format!("/admin/t/{tenant}/api-keys");
    let rolled = browser.submit(&page, &format!("{page}/{id}/roll"), &[("grace_period_s", "0")]).await;
    assert_eq!(rolled.status, 201, "{}", rolled.body);
    let new = regex::Regex::new(r#"<code id="shown-secret">(gth_live_[A-Za-z0-9_]+)</code>"#).unwrap().captures(&rolled.body).unwrap()[1]
        .to_owned();
    assert_ne!(new, old);
    assert!(!browser.get(&page).await.body.contains(&new));
    assert_eq!(app.get_with("/v1/models", &new).await.status(), 200);
}

#[actix_rt::test]
async fn an_invalid_key_form_comes_back_with_the_message_beside_the_field_and_the_input_kept() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let page = format!("/admin/t/{tenant}/api-keys");
    let no_scopes = browser.submit(&page, &page, &[("name", "keep me"), ("ip_allowlist", "10.0.0.0/8")]).await;
    assert_eq!(no_scopes.status, 422);
    assert!(no_scopes.body.contains(r#"value="keep me""#));
    assert!(no_scopes.body.contains("10.0.0.0/8"));
    assert!(no_scopes.body.contains(r#"<span class="error">give at least one scope</span>"#), "{}", no_scopes.body);
    let bad_expiry = browser.submit(&page, &page, &[("name", "x"), ("scopes", "models:read"), ("expires_in_days", "9999")]).await;
    assert_eq!(bad_expiry.status, 422);
    assert!(bad_expiry.body.contains("must be between 1 and 365"));
    assert!(bad_expiry.body.contains(r#"value="models:read" checked"#), "checked scopes stay checked");
    let bad_ip = browser.submit(&page, &page, &[("name", "x"), ("scopes", "models:read"), ("ip_allowlist", "not an address")]).await;
    assert_eq!(bad_ip.status, 422);
    assert!(bad_ip.body.contains("field invalid"));
}

#[actix_rt::test]
async fn an_oauth_client_secret_is_shown_once_and_rotation_shows_the_new_one() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let page = format!("/admin/t/{tenant}/clients");
    let created = browser.submit(&page, &page, &[("name", "backend"), ("scopes", "chat:completions"), ("token_ttl_seconds", "600")]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret_re = regex::Regex::new(r#"<code id="shown-secret">([^<]+)</code>"#).unwrap();
    let secret = secret_re.captures(&created.body).unwrap()[1].to_owned();
    let client_id = regex::Regex::new(r"(cli_[A-Za-z0-9]{22})").unwrap().captures(&created.body).unwrap()[1].to_owned();
    assert!(!browser.get(&page).await.body.contains(&secret));
    app.access_token(&client_id, &secret, None).await;

    let rotated = browser.submit(&page, &format!("{page}/{client_id}/rotate"), &[("grace_period_s", "0")]).await;
    assert_eq!(rotated.status, 200);
    let new_secret = secret_re.captures(&rotated.body).unwrap()[1].to_owned();
    assert_ne!(new_secret, secret);
    app.access_token(&client_id, &new_secret, None).await;

    let bad_ttl = browser.submit(&page, &page, &[("name", "x"), ("scopes", "chat:completions"), ("token_ttl_seconds", "5")]).await;
    assert_eq!(bad_ttl.status, 422);
    assert!(bad_ttl.body.contains("must be between 300 and 3600"));

    let revoked = browser.submit(&page, &format!("{page}/{client_id}/disable"), &[]).await;
    assert_eq!(revoked.status, 303);
    let refused = app.token_response(&client_id, &new_secret, &[("grant_type", "client_credentials")]).await;
    assert_ne!(refused.status(), 200);
}

#[actix_rt::test]
async fn overview_and_usage_render_rollups_as_svg_charts_with_tables() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    rollup(&app, &tenant, 5, "qwen-small", 7);
    rollup(&app, &tenant, 90, "qwen-large", 3);
    let overview = browser.get(&format!("/admin/t/{tenant}")).await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("<svg class=\"chart\""));
    assert!(overview.body.contains("qwen-small") && overview.body.contains("qwen-large"));
    assert!(overview.body.contains("<span class=\"stat\">10</span> requests"), "24 h total");
    assert!(overview.body.contains("20.00 %"), "2 errors in 10 requests");
    let usage = browser.get(&format!("/admin/t/{tenant}/usage?group_by=model")).await;
    assert_eq!(usage.status, 200);
    assert!(usage.body.contains("<svg class=\"chart\"") && usage.body.contains("<table>"));
    assert!(usage.body.contains("qwen-large"));
    let invalid = browser.get(&format!("/admin/t/{tenant}/usage?from=yesterday")).await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.body.contains("must be a date") && invalid.body.contains(r#"value="yesterday""#));

    let month = Utc::now().format("%Y-%m").to_string();
    let csv = browser.get(&format!("/admin/t/{tenant}/usage/export?period={month}&format=csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains("attachment"));
    assert!(csv.body.contains("qwen-small"));
    let ndjson = browser.get(&format!("/admin/t/{tenant}/usage/export?period={month}&format=ndjson")).await;
    assert!(ndjson.headers["content-type"].to_str().unwrap().starts_with("application/x-ndjson"));
}

#[actix_rt::test]
async fn deny_patterns_are_validated_like_the_api_and_saved() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let page = format!("/admin/t/{tenant}/limits");
    let action = format!("{page}/deny-patterns");
    let invalid = browser.submit(&page, &action, &[("prompt_deny_patterns", "fine\n(unclosed")]).await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.body.contains("is not a valid regular expression"));
    assert!(invalid.body.contains("(unclosed"), "input kept");
    let saved = browser.submit(&page, &action, &[("prompt_deny_patterns", "secret project\nssn: \\d+")]).await;
    assert_eq!(saved.status, 303);
    let shown = browser.get(&page).await;
    assert!(shown.body.contains("Prompt deny patterns saved."));
    assert!(shown.body.contains("secret project\nssn: \\d+"));
}

#[actix_rt::test]
async fn the_audit_log_filters_and_pages() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let events: Vec<_> = (0..55)
        .map(|i| gatehouse::service::Actor::cli().event(if i % 2 == 0 { "api_key.create" } else { "client.create" }).tenant(&tenant))
        .collect();
    gatehouse::db::audit::insert_many(&mut app.db.conn(), &events).unwrap();
    let page = format!("/admin/t/{tenant}/audit");
    let first = browser.get(&page).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("Older →"));
    let second = browser.get(&format!("{page}?page=2")).await;
    assert!(second.body.contains("← Newer"));
    let filtered = browser.get(&format!("{page}?action=client.")).await;
    assert!(filtered.body.contains("client.create") && !filtered.body.contains("api_key.create"));
    assert!(browser.get(&format!("{page}?action=nothing.")).await.body.contains("No audit events match"));
    assert_eq!(browser.get(&format!("{page}?from=bad")).await.status, 422);
}
