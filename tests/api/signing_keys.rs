//! Signing-key lifecycle: next → active → retiring → retired, on schedule, sealed at rest.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use gatehouse::auth::rotation as signing_keys;
use gatehouse::auth::seal::MasterKey;
use gatehouse::config::{Secret, SigningAlg};
use gatehouse::db::schema::signing_keys as sk;

use crate::helpers::{TEST_MASTER_KEY, TestDb};

fn states(conn: &mut PgConnection) -> Vec<(String, String)> {
    sk::table.order(sk::created_at).select((sk::kid, sk::state)).load(conn).unwrap()
}

#[test]
fn keys_rotate_on_schedule_and_retire_after_the_longest_token_lifetime() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let master = MasterKey::from_config(&Secret::new(TEST_MASTER_KEY)).unwrap();
    diesel::delete(sk::table).execute(&mut conn).unwrap();
    let t0 = Utc::now();

    let first = signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, t0).unwrap();
    assert_eq!(first.created.len(), 2, "an active key and a published next key");
    let s = states(&mut conn);
    assert_eq!(s.iter().map(|(_, st)| st.as_str()).collect::<Vec<_>>(), ["active", "next"]);
    let (active, next) = (s[0].0.clone(), s[1].0.clone());
    assert!(signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, t0 + Duration::days(89)).unwrap().is_empty(), "not due yet");

    let due = t0 + Duration::days(90) + Duration::minutes(1);
    let rotated = signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, due).unwrap();
    assert_eq!(rotated.retiring, std::slice::from_ref(&active));
    assert_eq!(rotated.activated, std::slice::from_ref(&next));
    assert_eq!(rotated.created.len(), 1, "a new next key is published");

    let still = signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, due + Duration::minutes(30)).unwrap();
    assert!(still.retired.is_empty(), "a retiring key verifies for the longest token lifetime");
    let later = signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, due + Duration::minutes(62)).unwrap();
    assert_eq!(later.retired, std::slice::from_ref(&active));
    let sealed: Vec<u8> = sk::table.find(&active).select(sk::private_key_sealed).first(&mut conn).unwrap();
    assert!(sealed.is_empty(), "a retired key's private key is erased");

    // Loaded keys: retired ones are gone; the active one is unsealed with the master key only.
    let loaded = signing_keys::load(&mut conn, &master).unwrap();
    assert!(loaded.iter().all(|k| k.kid != active || k.state == gatehouse::auth::keys::KeyState::Retired));
    let wrong = MasterKey::from_config(&Secret::new(MasterKey::generate_encoded())).unwrap();
    assert!(signing_keys::load(&mut conn, &wrong).is_err(), "another master key cannot unseal");
}

#[test]
fn private_keys_are_stored_sealed() {
    let db = TestDb::new();
    let mut conn = db.conn();
    let master = MasterKey::from_config(&Secret::new(TEST_MASTER_KEY)).unwrap();
    signing_keys::maintain(&mut conn, &master, SigningAlg::ES256, 90, Utc::now()).unwrap();
    let rows: Vec<(String, Vec<u8>, serde_json::Value)> =
        sk::table.select((sk::kid, sk::private_key_sealed, sk::public_jwk)).load(&mut conn).unwrap();
    assert!(!rows.is_empty());
    for (kid, sealed, jwk) in rows {
        assert!(jwk.get("d").is_none(), "public JWK only");
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        assert!(aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &sealed).is_err(), "not a usable key as stored");
        let opened = master.open(&sealed, &format!("signing_key:{kid}")).unwrap();
        assert!(aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &opened).is_ok(), "the master key opens it");
    }
}
