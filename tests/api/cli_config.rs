//! Configuration errors exit with code 2 and name the key; runtime failures exit with 1.

use std::io::Write;

use crate::helpers::{gatehouse, run};

fn example() -> String {
    format!("{}/ops/gatehouse.example.toml", env!("CARGO_MANIFEST_DIR"))
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn check_config_accepts_the_example_file() {
    let (code, stdout, stderr) = run(gatehouse().args(["check-config", "--config", &example()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("configuration is valid"));
}

#[test]
fn check_config_redacts_the_database_password() {
    let (code, stdout, _) = run(gatehouse().arg("check-config").env("DATABASE_URL", "postgres://u:hunter2@db/x"));
    assert_eq!(code, 0);
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stdout.contains("[redacted]"));
}

#[test]
fn config_file_given_by_environment_is_read() {
    let f = temp_config("[server]\nlisten = \"127.0.0.1:9999\"\n");
    let (code, stdout, _) = run(gatehouse().arg("check-config").env("GATEHOUSE_CONFIG", f.path()));
    assert_eq!(code, 0);
    assert!(stdout.contains("127.0.0.1:9999"), "{stdout}");
}

#[test]
fn environment_overrides_the_file() {
    let f = temp_config("[server]\nlisten = \"127.0.0.1:9999\"\n");
    let (code, stdout, _) =
        run(gatehouse().args(["check-config", "--config"]).arg(f.path()).env("GATEHOUSE__SERVER__LISTEN", "127.0.0.1:7777"));
    assert_eq!(code, 0);
    assert!(stdout.contains("127.0.0.1:7777"), "{stdout}");
}

#[test]
fn malformed_config_file_exits_2() {
    let f = temp_config("[server\nlisten = ");
    let (code, _, stderr) = run(gatehouse().args(["check-config", "--config"]).arg(f.path()));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
}

#[test]
fn unknown_key_exits_2_and_names_it() {
    let f = temp_config("[server]\nlisten = \"127.0.0.1:1\"\nlisen_port = 3\n");
    let (code, _, stderr) = run(gatehouse().args(["check-config", "--config"]).arg(f.path()));
    assert_eq!(code, 2);
    assert!(stderr.contains("server.lisen_port"), "{stderr}");
}

#[test]
fn invalid_environment_value_exits_2_and_names_the_key() {
    let (code, _, stderr) = run(gatehouse().arg("check-config").env("GATEHOUSE__DATABASE__POOL_SIZE", "many"));
    assert_eq!(code, 2);
    assert!(stderr.contains("database.pool_size"), "{stderr}");
}

#[test]
fn out_of_range_value_exits_2_and_names_the_key() {
    let (code, _, stderr) = run(gatehouse().arg("check-config").env("GATEHOUSE__DATABASE__POOL_SIZE", "0"));
    assert_eq!(code, 2);
    assert!(stderr.contains("database.pool_size"), "{stderr}");
    let (code, _, stderr) = run(gatehouse().arg("check-config").env("GATEHOUSE__SERVER__LISTEN", "everywhere"));
    assert_eq!(code, 2);
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let (code, _, stderr) = run(gatehouse().args(["check-config", "--config", "/nonexistent/gatehouse.toml"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/gatehouse.toml"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(gatehouse().arg("frobnicate")).0, 2);
    assert_eq!(run(gatehouse().args(["tenant", "create"])).0, 2);
}

#[test]
fn serve_without_a_database_url_exits_2() {
    let (code, _, stderr) = run(gatehouse().arg("serve"));
    assert_eq!(code, 2);
    assert!(stderr.contains("database.url"), "{stderr}");
}

#[test]
fn serve_retries_an_unreachable_database_then_fails_clearly() {
    let (code, _, stderr) = run(gatehouse()
        .arg("serve")
        .env("DATABASE_URL", "postgres://nobody:secretpw@127.0.0.1:1/none")
        .env("GATEHOUSE__DATABASE__STARTUP_TIMEOUT_S", "2"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(stderr.contains("is unreachable"), "{stderr}");
    assert!(!stderr.contains("secretpw"), "the password leaked: {stderr}");
}
