//! The column mapping of `domain::states`: each named state is stored as its text, and a stored
//! text that is no variant (which the CHECK constraints rule out) is a deserialization error,
//! never a silent default.

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use crate::domain::{JobStatus, KeyState, PoolKind, PoolSource, RuleAction, Severity, TenantStatus, WorkerState};

macro_rules! text_column {
    ($($name:ident),+) => {$(
        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), &mut out.reborrow())
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                Ok(text.parse::<$name>()?)
            }
        }
    )+};
}

text_column!(JobStatus, KeyState, PoolKind, PoolSource, RuleAction, Severity, TenantStatus, WorkerState);
