//! Set-up shared by the benches that need PostgreSQL: a scratch database on the server of
//! TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), migrated, with this
//! month's partitions, dropped when the bench ends.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

pub struct ScratchDb {
    admin: String,
    name: String,
    /// The scratch database's URL.
    pub url: String,
}

impl ScratchDb {
    /// A new database `gatehouse_bench_<label>_<pid>`; None when no PostgreSQL answers (the
    /// bench then skips its part and says so).
    pub fn create(label: &str) -> Option<ScratchDb> {
        // Before libpq first uses OpenSSL: no exit-time cleanup racing threads still closing
        // their connections when the bench exits.
        openssl_sys::init();
        let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(mut conn) = PgConnection::establish(&admin) else {
            eprintln!("{label}: no PostgreSQL at {admin}; skipped");
            return None;
        };
        let name = format!("gatehouse_bench_{label}_{}", std::process::id());
        conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the scratch database");
        let url = format!("{}/{name}", admin.rsplit_once('/').expect("TEST_DATABASE_URL has a /database part").0);
        let scratch = ScratchDb { admin, name, url };
        let mut conn = scratch.connect();
        gatehouse::db::migrations::run_pending(&mut conn).expect("migrate");
        let retention = gatehouse::config::Config::default().retention;
        gatehouse::db::partitions::maintain(&mut conn, chrono::Utc::now(), &retention).expect("partitions");
        Some(scratch)
    }

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the scratch database")
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}
