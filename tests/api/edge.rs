//! The edge defenses against real parts: IP rules (the platform's and each tenant's) refuse
//! before authentication, and an address that attacks is banned on every instance — its failures
//! summed through Redis, the ban shared through PostgreSQL — until the ban ends or is lifted.
//! Clients pose as other addresses through `X-Forwarded-For` from a trusted proxy (127.0.0.1).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, eventually, gatehouse, run, seed};

fn behind_proxy(c: &mut gatehouse::config::Config) {
    c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    c.edge.sync_ms = 100;
}

async fn get_from(app: &TestApp, path: &str, ip: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path)).header("x-forwarded-for", ip);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

async fn code(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn ip_rules_refuse_before_authentication_and_stay_in_their_tenant() {
    let db = TestDb::new();
    let a = seed::tenant(&db, "Tenant A");
    let b = seed::tenant(&db, "Tenant B");
    let a_key = seed::api_key(&db, &a, "models:read");
    let b_key = seed::api_key(&db, &b, "models:read");
    let (a_client, a_secret) = seed::client(&db, &a, "models:read");
    let a_admin = seed::admin_token(&db, &a);
    let b_admin = seed::admin_token(&db, &b);
    let op = seed::operator_token(&db);
    let app = TestApp::spawn_on(db, behind_proxy).await;
    let post = |path: String, token: &str, body: Value| app.client.post(app.url(&path)).bearer_auth(token).json(&body).send();

    // The platform's deny list: refused before the credential is even looked at.
    let r = post("/api/v1/ip-rules".into(), &op, json!({ "cidr": "203.0.113.0/24", "action": "deny", "note": "abuse" })).await.unwrap();
    assert_eq!(r.status(), 201);
    let platform_rule: Value = r.json().await.unwrap();
    let (status, body) = code(get_from(&app, "/v1/models", "203.0.113.9", None).await).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ip_blocked")), "no credential needed to be refused: {body}");
    let (status, _) = code(get_from(&app, "/v1/models", "203.0.113.9", Some(&a_key)).await).await;
    assert_eq!(status, 403);
    let token_from = |ip: &'static str| {
        app.client
            .post(app.url("/oauth2/token"))
            .header("x-forwarded-for", ip)
            .basic_auth(&a_client, Some(&a_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let (status, body) = code(token_from("203.0.113.9").await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("access_denied")), "the OAuth endpoints answer in OAuth's shape");
    assert_eq!(get_from(&app, "/v1/models", "198.51.100.1", None).await.status(), 401, "other addresses reach authentication");
    assert_eq!(get_from(&app, "/healthz", "203.0.113.9", None).await.status(), 200, "probes are left alone");

    // A tenant's allow list: its credentials work only from there; other tenants are untouched.
    let rules = format!("/api/v1/tenants/{a}/ip-rules");
    let r = post(rules.clone(), &a_admin, json!({ "cidr": "198.51.100.0/24", "action": "allow" })).await.unwrap();
    assert_eq!(r.status(), 201);
    let tenant_rule: Value = r.json().await.unwrap();
    assert_eq!(get_from(&app, "/v1/models", "198.51.100.7", Some(&a_key)).await.status(), 200);
    let (status, body) = code(get_from(&app, "/v1/models", "192.0.2.1", Some(&a_key)).await).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ip_blocked")), "{body}");
    assert_eq!(get_from(&app, "/v1/models", "192.0.2.1", Some(&b_key)).await.status(), 200, "tenant B has no rules");
    assert_eq!(token_from("192.0.2.1").await.unwrap().status(), 403, "no token for A's client from outside its networks");

    // Isolation: B's admin neither sees nor changes A's list, nor the platform's.
    let tenant_rule_path = format!("{rules}/{}", tenant_rule["id"].as_str().unwrap());
    assert_eq!(app.client.get(app.url(&rules)).bearer_auth(&b_admin).send().await.unwrap().status(), 404);
    assert_eq!(post(rules.clone(), &b_admin, json!({ "cidr": "0.0.0.0/0", "action": "deny" })).await.unwrap().status(), 404);
    assert_eq!(app.client.delete(app.url(&tenant_rule_path)).bearer_auth(&b_admin).send().await.unwrap().status(), 404);
    let b_path = format!("/api/v1/tenants/{b}/ip-rules/{}", tenant_rule["id"].as_str().unwrap());
    assert_eq!(app.client.delete(app.url(&b_path)).bearer_auth(&b_admin).send().await.unwrap().status(), 404, "not in B's list");
    assert_eq!(app.client.get(app.url("/api/v1/ip-rules")).bearer_auth(&a_admin).send().await.unwrap().status(), 403);
    assert_eq!(app.client.get(app.url("/api/v1/bans")).bearer_auth(&a_admin).send().await.unwrap().status(), 403);
    let listed: Vec<Value> = app.client.get(app.url(&rules)).bearer_auth(&a_admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 1, "B's attempts added nothing: {listed:?}");

    // Validation in the API's shape.
    for bad in [json!({ "cidr": "not-an-ip", "action": "deny" }), json!({ "cidr": "10.0.0.0/8", "action": "maybe" })] {
        let (status, body) = code(post(rules.clone(), &a_admin, bad).await.unwrap()).await;
        assert_eq!(status, 422, "{body}");
    }

    // Removing the rules lets the addresses back in at once.
    assert_eq!(app.client.delete(app.url(&tenant_rule_path)).bearer_auth(&a_admin).send().await.unwrap().status(), 200);
    assert_eq!(get_from(&app, "/v1/models", "192.0.2.1", Some(&a_key)).await.status(), 200);
    let platform_path = format!("/api/v1/ip-rules/{}", platform_rule["id"].as_str().unwrap());
    assert_eq!(app.client.delete(app.url(&platform_path)).bearer_auth(&op).send().await.unwrap().status(), 200);
    assert_eq!(get_from(&app, "/v1/models", "203.0.113.9", Some(&a_key)).await.status(), 200);
}

fn redis_prefix() -> String {
    format!("gh-test-{}", gatehouse::domain::random_base62(10))
}

#[actix_web::test]
async fn failures_summed_over_two_instances_ban_the_address_on_both_until_lifted() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let key = seed::api_key(&db, &tenant, "models:read");
    let op = seed::operator_token(&db);
    let prefix = redis_prefix();
    let config = |c: &mut gatehouse::config::Config| {
        behind_proxy(c);
        c.redis.url = gatehouse::config::Secret::new("redis://127.0.0.1:6379");
        c.redis.key_prefix = prefix.clone();
        c.edge.bans.max_auth_failures = 6;
        c.edge.bans.allow = vec!["192.0.2.200/32".into()];
        c.edge.bans.durations_s = vec![60, 600];
    };
    let apps = [TestApp::spawn_on(db.share(), config).await, TestApp::spawn_on(db.share(), config).await];
    let attacker = "192.0.2.50";

    // Four bad credentials on each instance: under the threshold on each, over it together.
    for app in &apps {
        for _ in 0..4 {
            assert_eq!(get_from(app, "/v1/models", attacker, Some("gth_live_forged")).await.status(), 401);
        }
    }
    for app in &apps {
        let banned =
            eventually(Duration::from_secs(10), || async { get_from(app, "/v1/models", attacker, Some(&key)).await.status() == 429 }).await;
        assert!(banned, "the address is banned on both instances, even with a good key");
    }
    let r = get_from(&apps[1], "/v1/models", attacker, Some(&key)).await;
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (_, body) = code(r).await;
    assert_eq!(body["error"]["code"], "ip_banned");
    assert_eq!(get_from(&apps[0], "/v1/models", "192.0.2.51", Some(&key)).await.status(), 200, "other addresses pass");

    // The ban is listed, audited and alerted once; an allowlisted address is never banned.
    let bans: Vec<Value> = apps[0].client.get(apps[0].url("/api/v1/bans")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (bans[0]["ip"].as_str(), bans[0]["reason"].as_str(), bans[0]["level"].as_i64()),
        (Some(attacker), Some("auth_failures"), Some(0))
    );
    use diesel::prelude::*;
    let count = |sql: &'static str| {
        let mut conn = db.conn();
        diesel::sql_query(sql).get_result::<Count>(&mut conn).unwrap().n
    };
    // The audit writer batches its inserts: wait for it.
    let audited = eventually(Duration::from_secs(5), || async {
        count("select count(*) as n from audit_events where action = 'edge.ban' and target_id = '192.0.2.50'") == 1
    })
    .await;
    assert!(audited, "one audit event for the ban");
    assert_eq!(
        count("select count(*) as n from alert_outbox where kind = 'ip_banned'"),
        1,
        "one alert, although both instances saw the attack"
    );
    for _ in 0..10 {
        assert_eq!(get_from(&apps[0], "/v1/models", "192.0.2.200", Some("gth_live_forged")).await.status(), 401);
    }
    assert_eq!(get_from(&apps[0], "/v1/models", "192.0.2.200", Some(&key)).await.status(), 200, "allowlisted: never banned");

    // Lifted by an operator: both instances let it in again.
    let r = apps[0].client.delete(apps[0].url(&format!("/api/v1/bans/{attacker}"))).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for app in &apps {
        let back =
            eventually(Duration::from_secs(10), || async { get_from(app, "/v1/models", attacker, Some(&key)).await.status() == 200 }).await;
        assert!(back, "the lifted ban ends on both instances");
    }

    // A second attack within the day earns a longer ban.
    for _ in 0..8 {
        get_from(&apps[0], "/v1/models", attacker, Some("gth_live_forged")).await;
    }
    let second = eventually(Duration::from_secs(10), || async {
        let bans: Vec<Value> = apps[1].client.get(apps[1].url("/api/v1/bans")).bearer_auth(&op).send().await.unwrap().json().await.unwrap();
        bans.first().is_some_and(|b| b["level"] == 1)
    })
    .await;
    assert!(second, "the second ban is the next step up");
    // Both instances hold it for the ten minutes (a ban decided here is held at its first length
    // only until the ban in force is known).
    let longer = eventually(Duration::from_secs(10), || async {
        let r = get_from(&apps[1], "/v1/models", attacker, Some(&key)).await;
        r.status() == 429 && r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 60
    })
    .await;
    assert!(longer, "ten minutes this time");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[test]
fn the_cli_manages_ip_rules_and_lists_bans() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("DATABASE_URL", &db.url);
    };
    let mut add = gatehouse();
    env(&mut add);
    add.args(["ip-rules", "add", "203.0.113.7", "--action", "deny", "--note", "scanner", "--json"]);
    let (code, out, err) = run(&mut add);
    assert_eq!(code, 0, "{err}");
    let rule: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((rule["cidr"].as_str(), rule["action"].as_str()), (Some("203.0.113.7/32"), Some("deny")));

    let mut tenant_add = gatehouse();
    env(&mut tenant_add);
    tenant_add.args(["ip-rules", "add", "10.0.0.0/8", "--action", "allow", "--tenant", tenant.as_str(), "--json"]);
    assert_eq!(run(&mut tenant_add).0, 0);

    let mut list = gatehouse();
    env(&mut list);
    list.args(["ip-rules", "list", "--json"]);
    let (_, out, _) = run(&mut list);
    let rules: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rules.len(), 1, "the platform's list holds only the platform's rule");

    let mut bad = gatehouse();
    env(&mut bad);
    bad.args(["ip-rules", "add", "nonsense", "--action", "deny"]);
    let (code, _, err) = run(&mut bad);
    assert_eq!(code, 2, "a usage error: {err}");

    let mut remove = gatehouse();
    env(&mut remove);
    remove.args(["ip-rules", "remove", rule["id"].as_str().unwrap(), "--json"]);
    assert_eq!(run(&mut remove).0, 0);

    let mut bans = gatehouse();
    env(&mut bans);
    bans.args(["bans", "list", "--json"]);
    let (code, out, err) = run(&mut bans);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 0);
    let mut lift = gatehouse();
    env(&mut lift);
    lift.args(["bans", "lift", "192.0.2.1"]);
    assert_eq!(run(&mut lift).0, 1, "nothing to lift is an error");
}
