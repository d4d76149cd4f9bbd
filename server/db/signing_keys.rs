//! Signing-key rows: list, insert, change state, and the advisory lock every lifecycle transition
//! (in `auth::rotation`) runs under, so concurrent instances agree on one active key.

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::signing_keys;
use crate::config::SigningAlg;
use crate::domain::KeyState;

/// "signkeys".
const KEY_LOCK: i64 = 0x7369_676e_6b65_7973;
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signing_keys, check_for_backend(diesel::pg::Pg))]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
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
    pub state: KeyState,
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

pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<SigningKeyRow>> {
    signing_keys::table.order(signing_keys::created_at.desc()).select(SigningKeyRow::as_select()).load(conn)
}

/// A freshly generated key, its private part already sealed.
pub struct NewSigningKey<'a> {
    pub kid: &'a str,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub private_key_sealed: &'a [u8],
    pub public_jwk: &'a serde_json::Value,
}

pub fn insert(conn: &mut PgConnection, key: &NewSigningKey<'_>, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(key.kid),
            signing_keys::alg.eq(key.alg.as_str()),
            signing_keys::state.eq(key.state),
            signing_keys::private_key_sealed.eq(key.private_key_sealed),
            signing_keys::public_jwk.eq(key.public_jwk),
            signing_keys::created_at.eq(now),
            signing_keys::activated_at.eq((key.state == KeyState::Active).then_some(now)),
        ))
        .execute(conn)
        .map(drop)
}

pub fn set_state(conn: &mut PgConnection, kid: &str, state: KeyState, now: DateTime<Utc>) -> QueryResult<()> {
    let q = diesel::update(signing_keys::table.find(kid));
    match state {
        KeyState::Active => q.set((signing_keys::state.eq(KeyState::Active), signing_keys::activated_at.eq(Some(now)))).execute(conn),
        KeyState::Retiring => q.set((signing_keys::state.eq(KeyState::Retiring), signing_keys::retiring_at.eq(Some(now)))).execute(conn),
        // A retired key can never sign again: its sealed private key is erased.
        KeyState::Retired => q
            .set((
                signing_keys::state.eq(KeyState::Retired),
                signing_keys::retired_at.eq(Some(now)),
                signing_keys::private_key_sealed.eq(Vec::<u8>::new()),
            ))
            .execute(conn),
        KeyState::Next => q.set(signing_keys::state.eq(KeyState::Next)).execute(conn),
    }
    .map(drop)
}

pub fn with_lock<T>(conn: &mut PgConnection, f: impl FnOnce(&mut PgConnection) -> anyhow::Result<T>) -> anyhow::Result<T> {
    conn.transaction(|conn| {
        conn.batch_execute(&format!("SELECT pg_advisory_xact_lock({KEY_LOCK})"))?;
        f(conn)
    })
}
