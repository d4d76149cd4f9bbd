//! Loading, overriding and validating configuration.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bogus"), "{msg}");
    assert!(msg.contains("server.bogus"), "{msg}");
}

#[test]
fn unknown_section_is_named() {
    let msg = Config::from_toml_str("[nope]\nx = 1\n").unwrap_err().to_string();
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let msg = Config::from_toml_str("[database]\npool_size = \"many\"\n").unwrap_err().to_string();
    assert!(msg.contains("database.pool_size"), "{msg}");
}

#[test]
fn malformed_toml_is_refused() {
    let msg = Config::from_toml_str("[server\nlisten=").unwrap_err().to_string();
    assert!(msg.contains("invalid configuration"), "{msg}");
}

#[test]
fn bad_listen_address_is_named() {
    let c = Config::from_toml_str("[server]\nlisten = \"localhost\"\n").unwrap();
    let msg = c.validate().unwrap_err().to_string();
    assert!(msg.contains("server.listen"), "{msg}");
}

#[test]
fn tls_needs_both_halves() {
    let c = Config::from_toml_str("[tls]\ncert = \"/etc/hostname\"\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("tls.key"));
}

#[test]
fn zero_pool_is_refused() {
    let c = Config::from_toml_str("[database]\npool_size = 0\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("database.pool_size"));
}

#[test]
fn non_postgres_url_is_refused() {
    let c = Config::from_toml_str("[database]\nurl = \"mysql://x\"\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("database.url"));
}

#[test]
fn secrets_are_redacted_in_debug_and_serialized_output() {
    let c = Config::from_toml_str("[database]\nurl = \"postgres://u:hunter2@h/db\"\n").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
    assert_eq!(c.database_url().unwrap(), "postgres://u:hunter2@h/db");
}

#[test]
fn clamav_is_off_by_default_and_its_address_is_checked() {
    let c = Config::default();
    assert!(c.audio.clamav.address.is_empty());
    assert_eq!(c.audio.clamav.on_error, ScanFailure::Reject);
    for good in ["tcp://127.0.0.1:3310", "unix:/run/clamav/clamd.ctl"] {
        let c = Config::from_toml_str(&format!("[audio.clamav]\naddress = \"{good}\"\non_error = \"allow\"\n")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.audio.clamav.on_error, ScanFailure::Allow);
    }
    for bad in ["127.0.0.1:3310", "http://clamd:3310", "unix:clamd.ctl", "tcp://clamd"] {
        let c = Config::from_toml_str(&format!("[audio.clamav]\naddress = \"{bad}\"\n")).unwrap();
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("audio.clamav.address"), "{msg}");
    }
    let msg = Config::from_toml_str("[audio.clamav]\non_error = \"ignore\"\n").unwrap_err().to_string();
    assert!(msg.contains("audio.clamav.on_error"), "{msg}");
    let c = Config::from_toml_str("[audio.clamav]\ntimeout_ms = 0\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("audio.clamav.timeout_ms"));
}

#[test]
fn example_config_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/gatehouse.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_toml_str(&text).unwrap();
    c.validate().unwrap();
    // The example documents every key: it must set each one explicitly.
    let example: toml::Table = text.parse().unwrap();
    let defaults: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
    for (section, keys) in &defaults {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for key in keys.keys() {
            let present = example.get(section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(key));
            let commented = text.contains(&format!("# {key} = "));
            assert!(present || commented, "ops/gatehouse.example.toml does not document {section}.{key}");
        }
    }
}
