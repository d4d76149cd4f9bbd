//! Signing-key rows and their lifecycle: next → active → retiring → retired. Every transition runs
//! in one transaction under an advisory lock, so concurrent instances agree on one active key.

use chrono::{DateTime, Duration, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::signing_keys;
use crate::auth::keys::{self, KeyState, LoadedKey};
use crate::auth::seal::MasterKey;
use crate::config::SigningAlg;

/// "signkeys".
const KEY_LOCK: i64 = 0x7369_676e_6b65_7973;
/// A `next` key is published this long before it signs (JWKS max-age is 300 s).
pub const PUBLISH_AHEAD: Duration = Duration::hours(1);
/// A retiring key keeps verifying for the longest token lifetime plus leeway.
pub const RETIRE_AFTER: Duration = Duration::seconds(3600 + 60);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signing_keys, check_for_backend(diesel::pg::Pg))]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub private_key_sealed: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retiring_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// What operators see: never the private key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SigningKeyView {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retiring_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl From<SigningKeyRow> for SigningKeyView {
    fn from(r: SigningKeyRow) -> Self {
        SigningKeyView {
            kid: r.kid,
            alg: r.alg,
            state: r.state,
            created_at: r.created_at,
            activated_at: r.activated_at,
            retiring_at: r.retiring_at,
            retired_at: r.retired_at,
        }
    }
}

fn seal_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

fn parse_alg(s: &str) -> SigningAlg {
    if s == "RS256" { SigningAlg::RS256 } else { SigningAlg::ES256 }
}

pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table.order(signing_keys::created_at.desc()).select(SigningKeyRow::as_select()).load(conn)
}

fn insert_new(conn: &mut PgConnection, master: &MasterKey, alg: SigningAlg, state: KeyState, now: DateTime<Utc>) -> anyhow::Result<String> {
    let key = keys::generate(alg)?;
    let sealed = master.seal(&key.pkcs8, &seal_context(&key.kid))?;
    diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(&key.kid),
            signing_keys::alg.eq(alg.as_str()),
            signing_keys::state.eq(state.as_str()),
            signing_keys::private_key_sealed.eq(&sealed),
            signing_keys::public_jwk.eq(&key.public_jwk),
            signing_keys::created_at.eq(now),
            signing_keys::activated_at.eq((state == KeyState::Active).then_some(now)),
        ))
        .execute(conn)?;
    Ok(key.kid)
}

fn set_state(conn: &mut PgConnection, kid: &str, state: KeyState, now: DateTime<Utc>) -> QueryResult<()> {
    let q = diesel::update(signing_keys::table.find(kid));
    match state {
        KeyState::Active => q.set((signing_keys::state.eq("active"), signing_keys::activated_at.eq(Some(now)))).execute(conn),
        KeyState::Retiring => q.set((signing_keys::state.eq("retiring"), signing_keys::retiring_at.eq(Some(now)))).execute(conn),
        // A retired key can never sign again: its sealed private key is erased.
        KeyState::Retired => q
            .set((
                signing_keys::state.eq("retired"),
                signing_keys::retired_at.eq(Some(now)),
                signing_keys::private_key_sealed.eq(Vec::<u8>::new()),
            ))
            .execute(conn),
        KeyState::Next => q.set(signing_keys::state.eq("next")).execute(conn),
    }
    .map(drop)
}

fn with_lock<T>(conn: &mut PgConnection, f: impl FnOnce(&mut PgConnection) -> anyhow::Result<T>) -> anyhow::Result<T> {
    conn.transaction(|conn| {
        conn.batch_execute(&format!("SELECT pg_advisory_xact_lock({KEY_LOCK})"))?;
        f(conn)
    })
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
        let find = |state: &str| rows.iter().find(|r| r.state == state);
        let active = find("active").cloned();
        let next = find("next").cloned();
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
        for r in rows.iter().filter(|r| r.state == "retiring") {
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
        if let Some(a) = rows.iter().find(|r| r.state == "active") {
            set_state(conn, &a.kid, KeyState::Retiring, now)?;
            changes.retiring.push(a.kid.clone());
        }
        match rows.iter().find(|r| r.state == "next") {
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
        let Some(state) = KeyState::parse(&r.state) else { continue };
        let active_pkcs8 = if state == KeyState::Active { Some(master.open(&r.private_key_sealed, &seal_context(&r.kid))?) } else { None };
        out.push(LoadedKey { kid: r.kid, alg: parse_alg(&r.alg), state, public_jwk: r.public_jwk, active_pkcs8 });
    }
    Ok(out)
}
