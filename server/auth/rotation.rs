//! Signing-key lifecycle: next → active → retiring → retired. An active key and a published next
//! key always exist; the active key rotates on schedule or on an operator's request, and a
//! retiring key retires once no token it signed can still be valid. Keys are generated here,
//! sealed under the master key, and stored through `db::signing_keys`.

use chrono::{DateTime, Duration, Utc};
use diesel::PgConnection;
use serde::Serialize;

use crate::auth::keys::{self, LoadedKey};
use crate::auth::seal::MasterKey;
use crate::config::SigningAlg;
use crate::db::signing_keys::{self, NewSigningKey, list, set_state, with_lock};
use crate::domain::KeyState;

/// A `next` key is published this long before it signs (JWKS max-age is 300 s).
pub const PUBLISH_AHEAD: Duration = Duration::hours(1);
/// A retiring key keeps verifying for the longest token lifetime plus leeway.
pub const RETIRE_AFTER: Duration = Duration::seconds(3600 + 60);

fn seal_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

fn parse_alg(s: &str) -> SigningAlg {
    if s == "RS256" { SigningAlg::RS256 } else { SigningAlg::ES256 }
}

fn insert_new(conn: &mut PgConnection, master: &MasterKey, alg: SigningAlg, state: KeyState, now: DateTime<Utc>) -> anyhow::Result<String> {
    let key = keys::generate(alg)?;
    let sealed = master.seal(&key.pkcs8, &seal_context(&key.kid))?;
    signing_keys::insert(
        conn,
        &NewSigningKey { kid: &key.kid, alg, state, private_key_sealed: &sealed, public_jwk: &key.public_jwk },
        now,
    )?;
    Ok(key.kid)
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChanges {
    pub created: Vec<String>,
    pub activated: Vec<String>,
    pub retiring: Vec<String>,
    pub retired: Vec<String>,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        *self == KeyChanges::default()
    }
}

/// Start-up and periodic upkeep: an active key and a published next key always exist; the active
/// key rotates after `rotation_days` (once its successor has been published an hour); retiring
/// keys retire once no token they signed can still be valid.
pub fn maintain(
    conn: &mut PgConnection,
    master: &MasterKey,
    alg: SigningAlg,
    rotation_days: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<KeyChanges> {
    with_lock(conn, |conn| {
        let mut changes = KeyChanges::default();
        let rows = list(conn)?;
        let find = |state: KeyState| rows.iter().find(|r| r.state == state);
        let active = find(KeyState::Active).cloned();
        let next = find(KeyState::Next).cloned();
        match (&active, &next) {
            (None, Some(n)) => {
                set_state(conn, &n.kid, KeyState::Active, now)?;
                changes.activated.push(n.kid.clone());
                changes.created.push(insert_new(conn, master, alg, KeyState::Next, now)?);
            }
            (None, None) => {
                changes.created.push(insert_new(conn, master, alg, KeyState::Active, now)?);
                changes.created.push(insert_new(conn, master, alg, KeyState::Next, now)?);
            }
            (Some(a), n) => {
                let due = a.activated_at.unwrap_or(a.created_at) + Duration::days(i64::from(rotation_days)) <= now;
                match n {
                    None => changes.created.push(insert_new(conn, master, alg, KeyState::Next, now)?),
                    Some(n) if due && n.created_at + PUBLISH_AHEAD <= now => {
                        set_state(conn, &a.kid, KeyState::Retiring, now)?;
                        set_state(conn, &n.kid, KeyState::Active, now)?;
                        changes.retiring.push(a.kid.clone());
                        changes.activated.push(n.kid.clone());
                        changes.created.push(insert_new(conn, master, alg, KeyState::Next, now)?);
                    }
                    Some(_) => {}
                }
            }
        }
        for r in rows.iter().filter(|r| r.state == KeyState::Retiring) {
            if r.retiring_at.unwrap_or(now) + RETIRE_AFTER <= now {
                set_state(conn, &r.kid, KeyState::Retired, now)?;
                changes.retired.push(r.kid.clone());
            }
        }
        Ok(changes)
    })
}

/// Operator-requested rotation: the published next key signs from now on, the old active key
/// retires after the longest token lifetime, and a new next key is published.
pub fn rotate(conn: &mut PgConnection, master: &MasterKey, alg: SigningAlg, now: DateTime<Utc>) -> anyhow::Result<KeyChanges> {
    with_lock(conn, |conn| {
        let mut changes = KeyChanges::default();
        let rows = list(conn)?;
        if let Some(a) = rows.iter().find(|r| r.state == KeyState::Active) {
            set_state(conn, &a.kid, KeyState::Retiring, now)?;
            changes.retiring.push(a.kid.clone());
        }
        match rows.iter().find(|r| r.state == KeyState::Next) {
            Some(n) => {
                set_state(conn, &n.kid, KeyState::Active, now)?;
                changes.activated.push(n.kid.clone());
            }
            None => {
                let kid = insert_new(conn, master, alg, KeyState::Active, now)?;
                changes.created.push(kid.clone());
                changes.activated.push(kid);
            }
        }
        changes.created.push(insert_new(conn, master, alg, KeyState::Next, now)?);
        Ok(changes)
    })
}

/// Every non-retired key, the active one with its private key unsealed.
pub fn load(conn: &mut PgConnection, master: &MasterKey) -> anyhow::Result<Vec<LoadedKey>> {
    let rows = list(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let state = r.state;
        let active_pkcs8 = if state == KeyState::Active { Some(master.open(&r.private_key_sealed, &seal_context(&r.kid))?) } else { None };
        out.push(LoadedKey { kid: r.kid, alg: parse_alg(&r.alg), state, public_jwk: r.public_jwk, active_pkcs8 });
    }
    Ok(out)
}
