//! The jti denylist: revoked access tokens until they would have expired anyway.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::token_revocations;
use crate::domain::TenantId;

pub fn insert(
    conn: &mut PgConnection,
    jti: &str,
    tenant: &TenantId,
    client_id: &str,
    expires_at: DateTime<Utc>,
    reason: &str,
) -> QueryResult<()> {
    diesel::insert_into(token_revocations::table)
        .values((
            token_revocations::jti.eq(jti),
            token_revocations::tenant_id.eq(tenant.as_str()),
            token_revocations::client_id.eq(client_id),
            token_revocations::expires_at.eq(expires_at),
            token_revocations::reason.eq(reason),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(drop)
}

/// A denylist entry: (jti, expires_at, revoked_at).
pub type Revocation = (String, DateTime<Utc>, DateTime<Utc>);

/// Revocations recorded since `since` that still matter.
pub fn list_since(conn: &mut PgConnection, since: DateTime<Utc>) -> QueryResult<Vec<Revocation>> {
    token_revocations::table
        .filter(token_revocations::revoked_at.gt(since))
        .filter(token_revocations::expires_at.gt(Utc::now()))
        .select((token_revocations::jti, token_revocations::expires_at, token_revocations::revoked_at))
        .load(conn)
}

/// Rows for tokens that have expired are useless: purge them.
pub fn purge_expired(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::delete(token_revocations::table.filter(token_revocations::expires_at.lt(Utc::now()))).execute(conn)
}
