//! Dashboard sign-in: the form, sessions in PostgreSQL (logout, idle and absolute expiry,
//! password change and disabling an admin end them), cookie flags, the login lockout and limit,
//! and `gatehouse admin create`.

use diesel::prelude::*;
use gatehouse::db::schema::{admin_sessions, audit_events};

use crate::dashboard_support::{Browser, PASSWORD, admin, admin_session, operator};
use crate::helpers::{TestApp, TestDb, gatehouse, run, seed};

#[actix_rt::test]
async fn login_page_has_the_form_fields_and_strict_headers() {
    let app = TestApp::spawn().await;
    let page = Browser::new(&app).get("/admin/login").await;
    assert_eq!(page.status, 200);
    for field in [r#"name="email""#, r#"name="password""#, r#"type="hidden" name="csrf_token""#] {
        assert!(page.body.contains(field), "{field} missing");
    }
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(!page.body.contains("<script>") && !page.body.contains("style="), "no inline script or style");
    assert!(page.body.contains(r#"name="viewport""#), "narrow screens get a viewport");
    // Browsers send `Origin: null` with form POSTs under `no-referrer`; the dashboard needs the real one.
    assert_eq!(page.headers["referrer-policy"], "same-origin");
}

#[actix_rt::test]
async fn static_assets_are_embedded_with_types_and_cache_headers() {
    let app = TestApp::spawn().await;
    for (name, kind) in [("admin.css", "text/css"), ("admin.js", "text/javascript"), ("icon.svg", "image/svg+xml")] {
        let r = app.get(&format!("/admin/static/{name}")).await;
        assert_eq!(r.status(), 200, "{name}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{name}");
        assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age="), "{name}");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let again = app.client.get(app.url(&format!("/admin/static/{name}"))).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{name}");
    }
    assert_eq!(app.get("/admin/static/missing.css").await.status(), 404);
}

#[actix_rt::test]
async fn tenant_admin_signs_in_and_lands_on_their_overview() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let cookie = browser.cookie("gh_session").expect("session cookie");
    assert_eq!(cookie.len(), 43);
    // Only the token's hash is stored.
    let stored: Vec<Vec<u8>> = admin_sessions::table.select(admin_sessions::token_hash).load(&mut app.db.conn()).unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].windows(cookie.len()).any(|w| w == cookie.as_bytes()));
    let home = browser.get("/admin").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.location(), format!("/admin/t/{tenant}"));
    let overview = browser.get(&format!("/admin/t/{tenant}")).await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Acme"));
}

#[actix_rt::test]
async fn session_cookie_is_httponly_and_samesite_lax_without_secure_on_plain_http() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let answer = Browser::new(&app).login_as(&email, PASSWORD).await;
    let cookie = answer.set_cookies().into_iter().find(|c| c.starts_with("gh_session=")).expect("session cookie set");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Under TLS the same cookie is `__Host-` prefixed and Secure.
    let tls = gatehouse::dashboard::session::cookie(gatehouse::dashboard::session::cookie_name(true), "x".into(), true, None).to_string();
    assert!(tls.starts_with("__Host-gh_session=") && tls.contains("Secure") && tls.contains("Path=/"), "{tls}");
}

#[actix_rt::test]
async fn wrong_password_shows_the_form_again_with_the_email_kept() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let answer = Browser::new(&app).login_as(&email, "not the password at all").await;
    assert_eq!(answer.status, 401);
    assert!(answer.body.contains("Email or password is incorrect"));
    assert!(answer.body.contains(&format!(r#"value="{email}""#)));
    assert!(answer.set_cookies().iter().all(|c| !c.starts_with("gh_session=")));
    let unknown = Browser::new(&app).login_as("nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status, 401);
}

#[actix_rt::test]
async fn operators_sign_in_with_their_existing_password() {
    let app = TestApp::spawn().await;
    let email = operator(&app.db);
    let browser = Browser::new(&app);
    browser.login(&email).await;
    assert_eq!(browser.get("/admin").await.location(), "/admin/tenants");
    assert_eq!(browser.get("/admin/tenants").await.status, 200);
}

#[actix_rt::test]
async fn logout_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let (tenant, browser) = admin_session(&app).await;
    let stolen = browser.cookie("gh_session").unwrap();
    let out = browser.submit(&format!("/admin/t/{tenant}"), "/admin/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/admin/login");
    assert_eq!(browser.get(&format!("/admin/t/{tenant}")).await.location(), "/admin/login");
    // The old cookie, replayed, is worthless: the row is gone.
    let replay = Browser::new(&app);
    replay.set_cookie("gh_session", &stolen);
    assert_eq!(replay.get(&format!("/admin/t/{tenant}")).await.status, 303);
    assert_eq!(admin_sessions::table.count().get_result::<i64>(&mut app.db.conn()).unwrap(), 0);
}

#[actix_rt::test]
async fn idle_and_absolute_session_expiry_send_the_browser_to_the_login_form() {
    let app = TestApp::spawn_on(TestDb::new(), |c| {
        c.dashboard.session_idle_s = 60;
        c.dashboard.session_absolute_s = 120;
    })
    .await;
    let (tenant, browser) = admin_session(&app).await;
    let page = format!("/admin/t/{tenant}");
    assert_eq!(browser.get(&page).await.status, 200);
    // Idle past the timeout (the clock is moved back in the database, not waited for).
    diesel::update(admin_sessions::table)
        .set(admin_sessions::last_seen_at.eq(chrono::Utc::now() - chrono::Duration::seconds(61)))
        .execute(&mut app.db.conn())
        .unwrap();
    assert_eq!(browser.get(&page).await.location(), "/admin/login");

    let second = Browser::new(&app);
    second.login(&admin(&app.db, &tenant)).await;
    assert_eq!(second.get(&page).await.status, 200);
    // Busy, but past the absolute lifetime.
    diesel::update(admin_sessions::table).set(admin_sessions::expires_at.eq(chrono::Utc::now())).execute(&mut app.db.conn()).unwrap();
    assert_eq!(second.get(&page).await.location(), "/admin/login");
}

#[actix_rt::test]
async fn repeated_failures_lock_the_account_out_from_that_address_and_are_audited() {
    let app = TestApp::spawn_on(TestDb::new(), |c| {
        c.dashboard.login_failures_per_5min = 2;
        c.dashboard.login_lockout_s = 600;
    })
    .await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let other = admin(&app.db, &tenant);
    let browser = Browser::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(browser.login_as(&email, "wrong password, again").await.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Locked out: even the right password is refused, with Retry-After.
    let locked = browser.login_as(&email, PASSWORD).await;
    assert_eq!(locked.status, 429);
    assert!(locked.headers.contains_key("retry-after"));
    assert!(locked.body.contains("Too many sign-in attempts"));
    // Another account from the same address is not locked out.
    assert_eq!(Browser::new(&app).login_as(&other, PASSWORD).await.status, 303);
    // The audit writer batches: the lockout's refusals land shortly.
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(5), || async {
            audit_events::table
                .filter(audit_events::action.eq("dashboard.login"))
                .filter(audit_events::details.retrieve_as_text("reason").eq("locked_out"))
                .count()
                .get_result::<i64>(&mut app.db.conn())
                .unwrap()
                > 0
        })
        .await
    );
}

#[actix_rt::test]
async fn login_attempts_are_limited_per_client_address() {
    let app = TestApp::spawn_on(TestDb::new(), |c| c.dashboard.login_ip_per_min = 3).await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(Browser::new(&app).login_as(&email, PASSWORD).await.status);
    }
    assert_eq!(statuses, vec![303, 303, 303, 429]);
}

#[actix_rt::test]
async fn changing_the_password_ends_every_session_of_that_admin() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let (one, two) = (Browser::new(&app), Browser::new(&app));
    one.login(&email).await;
    two.login(&email).await;
    let wrong = one
        .submit(
            "/admin/settings",
            "/admin/settings/password",
            &[("current_password", "not it at all"), ("new_password", "a brand new password")],
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("is not your current password"));
    let short =
        one.submit("/admin/settings", "/admin/settings/password", &[("current_password", PASSWORD), ("new_password", "short")]).await;
    assert_eq!(short.status, 422);
    assert!(short.body.contains("at least 12 characters"));
    let changed = one
        .submit("/admin/settings", "/admin/settings/password", &[("current_password", PASSWORD), ("new_password", "a brand new password")])
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(one.get("/admin/settings").await.location(), "/admin/login");
    assert_eq!(two.get("/admin/settings").await.location(), "/admin/login");
    assert_eq!(Browser::new(&app).login_as(&email, PASSWORD).await.status, 401);
    assert_eq!(Browser::new(&app).login_as(&email, "a brand new password").await.status, 303);
}

#[actix_rt::test]
async fn disabling_an_admin_ends_their_sessions() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let browser = Browser::new(&app);
    browser.login(&email).await;
    let id: String = gatehouse::db::schema::tenant_admins::table
        .filter(gatehouse::db::schema::tenant_admins::email.eq(&email))
        .select(gatehouse::db::schema::tenant_admins::id)
        .first(&mut app.db.conn())
        .unwrap();
    let ended = gatehouse::service::accounts::disable_admin(&mut app.db.conn(), &tenant, &id, &gatehouse::service::Actor::cli()).unwrap();
    assert_eq!(ended, 1);
    assert_eq!(browser.get("/admin/settings").await.location(), "/admin/login");
    assert_eq!(Browser::new(&app).login_as(&email, PASSWORD).await.status, 401);
}

#[actix_rt::test]
async fn admin_create_prints_a_generated_password_once_or_takes_one_from_stdin() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.db, "Acme");
    let (code, stdout, stderr) = run(gatehouse()
        .args(["admin", "create", "--tenant", tenant.as_str(), "--email", "gen@example.com", "--json"])
        .env("DATABASE_URL", &app.db.url));
    assert_eq!(code, 0, "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let password = created["password"].as_str().expect("generated password");
    assert!(created["token"].as_str().unwrap().starts_with("gth_mgmt_"));
    assert_eq!(Browser::new(&app).login_as("gen@example.com", password).await.status, 303);

    let mut child = gatehouse()
        .args(["admin", "create", "--tenant", tenant.as_str(), "--email", "stdin@example.com", "--password-stdin", "--json"])
        .env("DATABASE_URL", &app.db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a password from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(created.get("password").is_none(), "a given password is never printed");
    assert_eq!(Browser::new(&app).login_as("stdin@example.com", "a password from stdin").await.status, 303);
}

#[actix_rt::test]
async fn behind_a_trusted_tls_proxy_the_cookies_are_secure_and_host_prefixed() {
    let app = TestApp::spawn_on(TestDb::new(), |c| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let tenant = seed::tenant(&app.db, "Acme");
    let email = admin(&app.db, &tenant);
    let via_proxy = |r: reqwest::RequestBuilder| r.header("x-forwarded-proto", "https");
    let form = via_proxy(app.client.get(app.url("/admin/login"))).send().await.unwrap();
    let login_cookie =
        form.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with("__Host-gh_login="));
    let login_cookie = login_cookie.expect("the login cookie is __Host- prefixed");
    assert!(login_cookie.contains("Secure"), "{login_cookie}");
    let token = login_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let answer = via_proxy(app.client.post(app.url("/admin/login")))
        .header("cookie", format!("__Host-gh_login={token}"))
        .header("origin", &app.address)
        .form(&[("csrf_token", token.as_str()), ("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let session =
        answer.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with("__Host-gh_session="));
    let session = session.expect("the session cookie is __Host- prefixed");
    assert!(session.contains("Secure") && session.contains("HttpOnly") && session.contains("Path=/"), "{session}");
    // The same header from an untrusted peer changes nothing.
    let plain = TestApp::spawn().await;
    let r = plain.client.get(plain.url("/admin/login")).header("x-forwarded-proto", "https").send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("gh_login=") && !cookie.contains("Secure"), "{cookie}");
}
