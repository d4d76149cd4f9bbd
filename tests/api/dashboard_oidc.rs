//! Dashboard single sign-on against a real OpenID Connect provider (`tests/oidc/provider.py`,
//! started per test from the test virtualenv): authorization code + PKCE, the ID token checked
//! against the provider's JWKS, tenant admins created at first sign-in, operators mapped by claim,
//! and the refusals (foreign email domain, unverified email, forged state).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use diesel::prelude::*;
use gatehouse::config::{DashboardConfig, OidcConfig, Secret};
use gatehouse::db::schema::{admin_sessions, tenant_admins};

use crate::dashboard_support::{Browser, Page};
use crate::helpers::{TestApp, TestDb, seed};

const CLIENT_ID: &str = "gatehouse-test";
const CLIENT_SECRET: &str = "client-secret-for-tests";

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEHOUSE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-conf/bin/python");
    assert!(venv.exists(), "{} is missing: run `bash ops/test.sh` once (it creates the virtualenv with PyJWT)", venv.display());
    venv
}

struct Provider {
    port: u16,
    child: Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider(email: &str, claims: serde_json::Value, verified: bool) -> Provider {
    let port = crate::smtp::free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(["--port", &port.to_string(), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--email", email])
        .args(["--claims", &claims.to_string(), "--email-verified", if verified { "true" } else { "false" }])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the OIDC provider starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the OIDC provider did not start");
    Provider { port, child }
}

async fn app_for(p: &Provider) -> TestApp {
    let issuer = format!("http://127.0.0.1:{}", p.port);
    TestApp::spawn_on(TestDb::new(), move |c| {
        c.dashboard.oidc = OidcConfig {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            allowed_email_domains: vec!["acme.example".into()],
            ..DashboardConfig::default().oidc
        };
    })
    .await
}

/// The browser's trip: the dashboard sends it to the provider, which sends it straight back.
async fn sso(app: &TestApp, browser: &Browser<'_>) -> Page {
    let start = browser.get("/admin/login/oidc").await;
    assert_eq!(start.status, 303, "{}", start.body);
    let at_provider = app.client.get(start.location()).send().await.unwrap();
    assert_eq!(at_provider.status(), 302, "the provider accepted the authorization request");
    let back = at_provider.headers()["location"].to_str().unwrap().to_owned();
    let path = back.strip_prefix(&app.address).unwrap_or_else(|| panic!("{back} is not this server's callback"));
    assert!(path.starts_with("/admin/login/oidc/callback?"), "{path}");
    browser.get(path).await
}

#[actix_rt::test]
async fn sso_signs_in_a_new_tenant_admin_of_the_tenant_named_by_the_claim() {
    let p = provider("ann@acme.example", serde_json::json!({ "gatehouse_tenant": "acme" }), true);
    let app = app_for(&p).await;
    let tenant = seed::tenant(&app.db, "Acme");
    let browser = Browser::new(&app);
    assert!(browser.get("/admin/login").await.body.contains(r#"href="/admin/login/oidc""#), "the login form offers SSO");
    let start = browser.get("/admin/login/oidc").await;
    for part in ["code_challenge_method=S256", "code_challenge=", "nonce=", "state=", "scope=openid"] {
        assert!(start.location().contains(part), "{part} missing from {}", start.location());
    }
    let back = sso(&app, &browser).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(back.location(), "/admin");
    assert_eq!(browser.get("/admin").await.location(), format!("/admin/t/{tenant}"));
    assert_eq!(browser.get(&format!("/admin/t/{tenant}/api-keys")).await.status, 200);
    let admins: Vec<(String, Option<String>)> =
        tenant_admins::table.select((tenant_admins::email, tenant_admins::password_hash)).load(&mut app.db.conn()).unwrap();
    assert_eq!(admins, vec![("ann@acme.example".to_owned(), None)], "created at first sign-in, without a password");
    // The second time, the same account.
    let again = Browser::new(&app);
    assert_eq!(sso(&app, &again).await.status, 303);
    assert_eq!(tenant_admins::table.count().get_result::<i64>(&mut app.db.conn()).unwrap(), 1);
}

#[actix_rt::test]
async fn the_operator_claim_signs_in_the_operator_with_that_email() {
    let p = provider("ops@acme.example", serde_json::json!({ "gatehouse_role": ["viewer", "operator"] }), true);
    let app = app_for(&p).await;
    let browser = Browser::new(&app);
    let refused = sso(&app, &browser).await;
    assert_eq!(refused.status, 403, "no operator account yet");
    assert!(refused.body.contains("no operator account with your email"));
    let hash = gatehouse::auth::password::hash("operator password 1").unwrap();
    let id = gatehouse::domain::OperatorId::generate();
    gatehouse::db::operators::insert(
        &mut app.db.conn(),
        &gatehouse::db::operators::NewOperator { id: id.as_str(), email: "ops@acme.example", password_hash: &hash },
    )
    .unwrap();
    assert_eq!(sso(&app, &browser).await.status, 303);
    assert_eq!(browser.get("/admin").await.location(), "/admin/tenants");
}

#[actix_rt::test]
async fn foreign_domains_unverified_emails_and_forged_state_are_refused() {
    let foreign = provider("eve@evil.example", serde_json::json!({ "gatehouse_tenant": "acme" }), true);
    let app = app_for(&foreign).await;
    seed::tenant(&app.db, "Acme");
    let browser = Browser::new(&app);
    let refused = sso(&app, &browser).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Accounts of evil.example may not sign in here"));
    drop(foreign);

    let unverified = provider("bob@acme.example", serde_json::json!({ "gatehouse_tenant": "acme" }), false);
    let app2 = app_for(&unverified).await;
    seed::tenant(&app2.db, "Acme");
    let browser2 = Browser::new(&app2);
    let refused = sso(&app2, &browser2).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("ID token was not valid"));

    // A callback whose state is not the one this browser started with, or with no flow at all.
    let start = browser2.get("/admin/login/oidc").await;
    let at_provider = app2.client.get(start.location()).send().await.unwrap();
    let back = at_provider.headers()["location"].to_str().unwrap().to_owned();
    let forged = regex::Regex::new("state=[^&]+").unwrap().replace(&back, "state=forged").into_owned();
    assert_eq!(browser2.get(forged.strip_prefix(&app2.address).unwrap()).await.status, 403);
    assert_eq!(Browser::new(&app2).get(back.strip_prefix(&app2.address).unwrap()).await.status, 403);
    for db in [&app.db, &app2.db] {
        assert_eq!(admin_sessions::table.count().get_result::<i64>(&mut db.conn()).unwrap(), 0);
        assert_eq!(tenant_admins::table.count().get_result::<i64>(&mut db.conn()).unwrap(), 0);
    }
}

#[actix_rt::test]
async fn without_a_provider_configured_there_is_no_sso() {
    let app = TestApp::spawn().await;
    let browser = Browser::new(&app);
    assert!(!browser.get("/admin/login").await.body.contains("/admin/login/oidc"));
    assert_eq!(browser.get("/admin/login/oidc").await.status, 404);
    assert_eq!(browser.get("/admin/login/oidc/callback?code=x&state=y").await.status, 404);
}
