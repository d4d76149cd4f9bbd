//! Platform operator accounts (installation-wide, not tenant data).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::operators;
use crate::domain::OperatorId;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = operators, check_for_backend(diesel::pg::Pg))]
pub struct Operator {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl Operator {
    pub fn id(&self) -> OperatorId {
        OperatorId::from_trusted(self.id.clone())
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = operators)]
pub struct NewOperator<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
}

pub fn insert(conn: &mut PgConnection, new: &NewOperator<'_>) -> QueryResult<Operator> {
    diesel::insert_into(operators::table).values(new).returning(Operator::as_returning()).get_result(conn)
}

pub fn find_by_email(conn: &mut PgConnection, email: &str) -> QueryResult<Operator> {
    operators::table.filter(lower(operators::email).eq(email.to_lowercase())).select(Operator::as_select()).first(conn)
}

pub fn update_password(conn: &mut PgConnection, id: &OperatorId, password_hash: &str) -> QueryResult<()> {
    diesel::update(operators::table.find(id.as_str())).set(operators::password_hash.eq(password_hash)).execute(conn).map(drop)
}
