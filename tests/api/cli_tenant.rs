//! `gatehouse tenant …` and `gatehouse operator create` against a real database.

use diesel::prelude::*;
use gatehouse::db::schema::{audit_events, operators};
use serde_json::Value;

use crate::helpers::{TestDb, gatehouse, run};

fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    run(gatehouse().args(args).env("DATABASE_URL", &db.url))
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not only JSON ({e}): {stdout}"))
}

#[test]
fn tenant_create_prints_json_with_id_and_slug_and_list_shows_it() {
    let db = TestDb::new();
    let (code, stdout, stderr) = cli(&db, &["tenant", "create", "--name", "Acme", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let created = json(&stdout);
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("ten_") && id.len() == 26, "{id}");
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["status"], "active");
    assert_eq!(created["plan"], "default");

    let (code, stdout, _) = cli(&db, &["tenant", "list", "--json"]);
    assert_eq!(code, 0);
    let list = json(&stdout);
    let found: Vec<_> = list.as_array().unwrap().iter().filter(|t| t["id"] == id).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["slug"], "acme");
}

#[test]
fn tenant_show_finds_by_id_and_slug_and_disable_disables() {
    let db = TestDb::new();
    let (_, stdout, _) = cli(&db, &["tenant", "create", "--name", "Umbrella Corp", "--time-zone", "Europe/Berlin", "--json"]);
    let created = json(&stdout);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["slug"], "umbrella-corp");
    assert_eq!(created["time_zone"], "Europe/Berlin");

    let by_slug = json(&cli(&db, &["tenant", "show", "umbrella-corp", "--json"]).1);
    let by_id = json(&cli(&db, &["tenant", "show", &id, "--json"]).1);
    assert_eq!(by_slug, by_id);

    let (code, stdout, _) = cli(&db, &["tenant", "disable", &id, "--json"]);
    assert_eq!(code, 0);
    let disabled = json(&stdout);
    assert_eq!(disabled["status"], "disabled");
    assert!(disabled["disabled_at"].is_string());

    let mut conn = db.conn();
    let actions: Vec<String> = audit_events::table
        .filter(audit_events::tenant_id.eq(&id))
        .order(audit_events::occurred_at)
        .select(audit_events::action)
        .load(&mut conn)
        .unwrap();
    assert_eq!(actions, ["tenant.create", "tenant.disable"]);
}

#[test]
fn duplicate_slug_is_a_runtime_error_with_a_clear_message() {
    let db = TestDb::new();
    assert_eq!(cli(&db, &["tenant", "create", "--name", "Acme", "--json"]).0, 0);
    let (code, stdout, stderr) = cli(&db, &["tenant", "create", "--name", "ACME", "--json"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("slug `acme` already exists"), "{stderr}");
}

#[test]
fn invalid_tenant_input_is_a_usage_error() {
    let db = TestDb::new();
    for args in [
        vec!["tenant", "create", "--name", "X", "--time-zone", "Mars/Olympus"],
        vec!["tenant", "create", "--name", "X", "--slug", "Not A Slug"],
        vec!["tenant", "create", "--name", "   "],
        vec!["tenant", "create", "--name", "X", "--plan", "platinum"],
        vec!["tenant", "show", "ten_short"],
    ] {
        let (code, _, stderr) = cli(&db, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    let (_, stdout, _) = cli(&db, &["tenant", "list", "--json"]);
    assert_eq!(json(&stdout), serde_json::json!([]), "nothing was created");
}

#[test]
fn unknown_tenant_is_a_runtime_error() {
    let db = TestDb::new();
    let (code, _, stderr) = cli(&db, &["tenant", "show", "nobody"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no tenant `nobody`"), "{stderr}");
}

#[test]
fn tenant_commands_refuse_a_database_with_pending_migrations() {
    let db = TestDb::empty();
    let (code, _, stderr) = cli(&db, &["tenant", "list", "--json"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("gatehouse migrate"), "{stderr}");
}

#[test]
fn operator_create_generates_a_password_once_and_stores_argon2id() {
    let db = TestDb::new();
    let (code, stdout, stderr) = cli(&db, &["operator", "create", "--email", "ops@example.com", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let created = json(&stdout);
    assert!(created["id"].as_str().unwrap().starts_with("opr_"));
    let password = created["password"].as_str().unwrap();
    let hash: String = operators::table.select(operators::password_hash).first(&mut db.conn()).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(gatehouse::auth::password::verify(password, &hash));

    let (code, _, stderr) = cli(&db, &["operator", "create", "--email", "OPS@example.com"]);
    assert_eq!(code, 1, "emails are unique regardless of case");
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn operator_password_can_come_from_stdin_and_must_be_long_enough() {
    use std::io::Write;
    let db = TestDb::new();
    let pipe = |password: &str| {
        let mut child = gatehouse()
            .args(["operator", "create", "--email", "a@example.com", "--password-stdin", "--json"])
            .env("DATABASE_URL", &db.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(pipe("short").0, 2);
    let (code, stdout) = pipe("a long enough passphrase");
    assert_eq!(code, 0);
    assert!(json(&stdout).get("password").is_none(), "a chosen password is never echoed");
    let hash: String = operators::table.select(operators::password_hash).first(&mut db.conn()).unwrap();
    assert!(gatehouse::auth::password::verify("a long enough passphrase", &hash));
}

#[test]
fn invalid_email_is_a_usage_error() {
    let db = TestDb::new();
    assert_eq!(cli(&db, &["operator", "create", "--email", "not-an-email"]).0, 2);
}

#[test]
fn tenant_update_sets_and_clears_prompt_rule_packs_and_names_an_unknown_pack() {
    let db = TestDb::new();
    assert_eq!(cli(&db, &["tenant", "create", "--name", "Acme", "--json"]).0, 0);
    let (code, stdout, stderr) = cli(&db, &["tenant", "update", "acme", "--prompt-rule-packs", "injection, jailbreak:flag", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["prompt_rule_packs"], serde_json::json!([{ "pack": "injection" }, { "pack": "jailbreak", "action": "flag" }]));
    let (_, shown, _) = cli(&db, &["tenant", "show", "acme"]);
    assert!(shown.contains("rule packs: injection, jailbreak:flag"), "{shown}");

    let (code, _, stderr) = cli(&db, &["tenant", "update", "acme", "--prompt-rule-packs", "jailbrake"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`jailbrake`") && stderr.contains("`exfiltration`"), "{stderr}");
    let (code, _, stderr) = cli(&db, &["tenant", "update", "acme", "--prompt-rule-packs", "injection:warn"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`warn`"), "{stderr}");
    let unchanged = json(&cli(&db, &["tenant", "show", "acme", "--json"]).1);
    assert_eq!(unchanged["prompt_rule_packs"].as_array().unwrap().len(), 2, "a refused change changed something");

    let (code, stdout, _) = cli(&db, &["tenant", "update", "acme", "--prompt-rule-packs", "none", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&stdout)["prompt_rule_packs"], serde_json::json!([]));
}
