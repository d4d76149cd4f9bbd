//! Logs never carry credentials: a full auth flow against the real binary at debug level, then
//! a search of everything it logged for every secret, token and key involved.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TEST_MASTER_KEY, TEST_PEPPER, TestDb, eventually, gatehouse, seed};

#[test]
fn a_full_auth_flow_logs_no_secret_token_or_key() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let (cid, secret) = seed::client(&db, &tenant, "models:read chat:completions");
    let key = seed::api_key(&db, &tenant, "models:read");
    let admin = seed::admin_token(&db, &tenant);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = gatehouse()
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("GATEHOUSE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut secrets_seen = vec![secret.clone(), key.clone(), admin.clone(), TEST_MASTER_KEY.to_owned(), TEST_PEPPER.to_owned()];
    rt.block_on(async {
        let http = reqwest::Client::new();
        let ready = eventually(Duration::from_secs(10), || async {
            http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "the server became ready");
        let form = [("grant_type", "client_credentials")];
        let token: Value = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(&cid, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        secrets_seen.push(token.clone());
        // Failures log too: a wrong secret, a bad token, a bad key.
        http.post(format!("{base}/oauth2/token")).basic_auth(&cid, Some("gth_cs_wrong-secret-value")).form(&form).send().await.unwrap();
        secrets_seen.push("gth_cs_wrong-secret-value".into());
        http.get(format!("{base}/v1/models")).bearer_auth(format!("{token}x")).send().await.unwrap();
        assert_eq!(http.get(format!("{base}/v1/models")).bearer_auth(&token).send().await.unwrap().status(), 200);
        assert_eq!(http.get(format!("{base}/v1/models")).bearer_auth(&key).send().await.unwrap().status(), 200);
        http.post(format!("{base}/oauth2/introspect"))
            .basic_auth(&cid, Some(&secret))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        let created: Value = http
            .post(format!("{base}/api/v1/tenants/{tenant}/clients"))
            .bearer_auth(&admin)
            .json(&json!({ "name": "second", "scopes": ["models:read"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        secrets_seen.push(created["client_secret"].as_str().unwrap().to_owned());
        http.post(format!("{base}/oauth2/revoke")).basic_auth(&cid, Some(&secret)).form(&[("token", token.as_str())]).send().await.unwrap();
        http.get(format!("{base}/v1/models?access_token={token}")).send().await.unwrap();
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(logs.contains("request finished"), "debug logs were captured");
    for s in &secrets_seen {
        assert!(!logs.contains(s.as_str()), "a credential appeared in the logs: {}…", &s[..12]);
        // Also no recognisable fragment (e.g. a JWT's signature or a key's secret part).
        let tail = &s[s.len() - 24..];
        assert!(!logs.contains(tail), "a credential fragment appeared in the logs");
    }
    assert!(!logs.to_lowercase().contains("authorization: "), "no raw Authorization header");
}
