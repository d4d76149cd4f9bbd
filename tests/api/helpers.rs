//! Test harness. `TestDb` gives each test its own database, cloned from a migrated template that
//! is built once per migration set (under an advisory lock, so parallel test processes share it).
//! `TestApp` runs the real `Application` on port 0 against such a database.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use gatehouse::config::{Config, Secret};
use gatehouse::startup::Application;
use gatehouse::state::AppState;
use sha2::{Digest, Sha256};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK_KEY: i64 = 0x7465_7374_5f74_706c;

/// Server-level connection settings (`TEST_DATABASE_URL`).
pub fn admin_url() -> String {
    // Every test reaches PostgreSQL through this URL, so this runs before libpq's first use of
    // OpenSSL: told first, OpenSSL registers no exit-time cleanup. Without this, the cleanup ran
    // while a server thread of the finished test was still closing its TLS connections to
    // PostgreSQL and the process died with SIGSEGV after its test had passed.
    static OPENSSL: std::sync::Once = std::sync::Once::new();
    OPENSSL.call_once(openssl_sys::init);
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `admin_url()` pointed at another database.
pub fn url_for(database: &str) -> String {
    let base = admin_url();
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let (prefix, _) = head.rsplit_once('/').expect("TEST_DATABASE_URL has a /database part");
    format!("{prefix}/{database}{query}")
}

fn admin_conn() -> PgConnection {
    PgConnection::establish(&admin_url()).unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {}: {e}", admin_url()))
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

fn database_exists(conn: &mut PgConnection, name: &str) -> bool {
    !diesel::sql_query("SELECT datname::text AS name FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .load::<Name>(conn)
        .unwrap()
        .is_empty()
}

/// Name of the template for the current migrations (a hash of migrations/).
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let mut hasher = Sha256::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<_> = walk(&dir);
        files.sort();
        for f in files {
            hasher.update(f.to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&f).unwrap());
        }
        let digest = hasher.finalize();
        let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let name = format!("gatehouse_tpl_{tag}");
        build_template(&name);
        name
    })
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn build_template(name: &str) {
    let mut admin = admin_conn();
    admin.batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})")).unwrap();
    if !database_exists(&mut admin, name) {
        let building = format!("{name}_building");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {building}")).unwrap();
        {
            let mut conn = PgConnection::establish(&url_for(&building)).unwrap();
            gatehouse::db::migrations::run_pending(&mut conn).unwrap();
            gatehouse::db::partitions::maintain(&mut conn, chrono::Utc::now(), &Default::default()).unwrap();
        }
        admin.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).unwrap();
    }
    admin.batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})")).unwrap();
}

/// A database of this test's own, dropped (connections and all) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The handle that drops the database; aliases (`share`) do not.
    owned: bool,
}

impl TestDb {
    /// A fully migrated database (from the template).
    pub fn new() -> TestDb {
        Self::create(Some(template_name()))
    }

    /// An empty database: no migrations applied.
    pub fn empty() -> TestDb {
        Self::create(None)
    }

    fn create(template: Option<&str>) -> TestDb {
        let name = format!("t_{}", gatehouse::domain::random_base62(16).to_lowercase());
        let mut admin = admin_conn();
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        // CREATE DATABASE … TEMPLATE fails while another session is connected to the template;
        // template builds and concurrent clones are short, so retry briefly.
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&sql) {
                Ok(()) => break,
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        TestDb { url: url_for(&name), name, owned: true }
    }

    /// A database this test did not create (never dropped).
    pub fn external(url: String) -> TestDb {
        TestDb { name: String::new(), url, owned: false }
    }

    /// Another handle on the same database, for a second instance (dropping it keeps the database).
    pub fn share(&self) -> TestDb {
        TestDb { name: self.name.clone(), url: self.url.clone(), owned: false }
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Installs a test subscriber when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_test_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        gatehouse::startup::tls::install_crypto_provider();
        if let Ok(filter) = std::env::var("TEST_LOG") {
            gatehouse::telemetry::init(&gatehouse::config::LogConfig { filter, ..Default::default() });
        }
    });
}

/// A config for tests: port 0, small pool, short timeouts, the given database.
pub fn test_config(database_url: &str) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.threads = 1;
    c.server.shutdown_timeout_s = 10;
    c.database.url = Secret::new(database_url);
    c.database.pool_size = 4;
    c.database.checkout_timeout_ms = 1000;
    c.database.startup_timeout_s = 10;
    c.auth.master_key = Secret::new(TEST_MASTER_KEY);
    c.auth.pepper = Secret::new(TEST_PEPPER);
    c.alignment.jobs_dir = std::env::temp_dir().join("gatehouse-test-jobs");
    c.usage.journal_dir = journal_dir();
    c
}

/// Fixed test secrets (also given to the `gatehouse` binary by `gatehouse()`).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE=";
pub const TEST_PEPPER: &str = "test-pepper-test-pepper-test-pepper-0123";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    handle: ServerHandle,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_on(TestDb::new(), |_| {}).await
    }

    pub async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_full(db, tweak, |_| {}).await
    }

    pub async fn spawn_full<R>(db: TestDb, tweak: impl FnOnce(&mut Config), routes: R) -> TestApp
    where
        R: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        init_test_logging();
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let app = Application::build_with(config, routes).await.expect("application builds");
        let port = app.port();
        let state = app.state();
        let handle = app.handle();
        let server = actix_rt::spawn(app.run_until_stopped());
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            state,
            handle,
            server: Some(server),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// Graceful stop; returns the server's result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        match self.server.take() {
            Some(join) => join.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }
}

/// The `gatehouse` binary with a clean environment (no inherited database or config settings).
pub fn gatehouse() -> Command {
    gatehouse_at(Path::new(env!("CARGO_BIN_EXE_gatehouse")))
}

/// A `gatehouse` binary at `path` (another build of it), with a clean environment.
pub fn gatehouse_at(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    for (key, _) in std::env::vars() {
        if key == "DATABASE_URL" || key == "RUST_LOG" || key.starts_with("GATEHOUSE") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GATEHOUSE__AUTH__MASTER_KEY", TEST_MASTER_KEY).env("GATEHOUSE__AUTH__PEPPER", TEST_PEPPER);
    // Each process its own usage journal (one process per journal).
    cmd.env("GATEHOUSE__USAGE__JOURNAL_DIR", journal_dir());
    cmd
}

/// A fresh usage journal folder.
pub fn journal_dir() -> PathBuf {
    std::env::temp_dir().join(format!("gatehouse-test-journal-{}", uuid::Uuid::new_v4()))
}

/// Runs a command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("command runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A temporary folder the `postgres` system user can traverse (tests run as root in CI).
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("gh-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// How often `eventually` and `wait_until` look again: short, so a test waits about as long as
/// the condition takes and no longer.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns true (true) or `limit` passes (false). Tests wait for what
/// they wait for with this, not with fixed sleeps.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(POLL).await; // the polling interval: the wait ends on the condition
    }
    false
}

/// `eventually` for synchronous tests.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(POLL); // the polling interval: the wait ends on the condition
    }
    false
}

/// Seeding shortcuts: real service calls on the test database (what the API and CLI do).
pub mod seed {
    use gatehouse::auth::secrets::Pepper;
    use gatehouse::config::Secret;
    use gatehouse::domain::TenantId;
    use gatehouse::service::api_keys::CreateApiKeyRequest;
    use gatehouse::service::clients::CreateClientRequest;
    use gatehouse::service::tenants::CreateTenantRequest;
    use gatehouse::service::{Actor, accounts, api_keys, clients, tenants};

    use super::{TEST_PEPPER, TestDb};

    pub fn pepper() -> Pepper {
        Pepper::new(&Secret::new(TEST_PEPPER))
    }

    pub fn tenant(db: &TestDb, name: &str) -> TenantId {
        let req = CreateTenantRequest { name: name.into(), slug: None, time_zone: None, plan: None };
        TenantId::parse(&tenants::create(&mut db.conn(), &req, &Actor::cli()).unwrap().id).unwrap()
    }

    /// (client_id, client_secret)
    pub fn client(db: &TestDb, tenant: &TenantId, scopes: &str) -> (String, String) {
        let req = CreateClientRequest {
            name: "test client".into(),
            scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            ip_allowlist: Vec::new(),
            token_ttl_seconds: None,
            secret_expires_at: None,
        };
        let c = clients::create(&mut db.conn(), &pepper(), tenant, &req, &Actor::cli()).unwrap();
        (c.client.client_id, c.client_secret)
    }

    pub fn api_key(db: &TestDb, tenant: &TenantId, scopes: &str) -> String {
        let req = CreateApiKeyRequest {
            name: "test key".into(),
            scopes: scopes.split(' ').map(str::to_owned).collect(),
            environment: None,
            expires_in_days: None,
            ip_allowlist: Vec::new(),
        };
        api_keys::create(&mut db.conn(), &pepper(), tenant, &req, &Actor::cli()).unwrap().key
    }

    /// A management token for a fresh operator.
    pub fn operator_token(db: &TestDb) -> String {
        let email = format!("op{}@example.com", gatehouse::domain::random_base62(8).to_lowercase());
        let hash = gatehouse::auth::password::hash("operator password 1").unwrap();
        let id = gatehouse::domain::OperatorId::generate();
        gatehouse::db::operators::insert(
            &mut db.conn(),
            &gatehouse::db::operators::NewOperator { id: id.as_str(), email: &email, password_hash: &hash },
        )
        .unwrap();
        accounts::create_operator_token(&mut db.conn(), &pepper(), &email, "test", &Actor::cli()).unwrap().token
    }

    /// An LLM pool `name` serving `model` on workers at these local ports (`slots` each), with
    /// the pool's default queue settings.
    pub fn llm_pool(db: &TestDb, name: &str, model: &str, ports: &[u16], slots: i32) {
        use gatehouse::service::workers::{self, AddWorkerRequest, CreatePoolRequest};
        let master = gatehouse::auth::seal::MasterKey::from_config(&Secret::new(super::TEST_MASTER_KEY)).unwrap();
        let mut conn = db.conn();
        let req = CreatePoolRequest::new(name, gatehouse::domain::PoolKind::Llm, vec![model.into()]);
        workers::create_pool(&mut conn, &req, &Actor::cli()).unwrap();
        for port in ports {
            let w = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(slots) };
            workers::add_worker(&mut conn, &master, name, &w, &Actor::cli()).unwrap();
        }
    }

    /// A management token for a fresh admin of `tenant`.
    pub fn admin_token(db: &TestDb, tenant: &TenantId) -> String {
        let email = format!("admin{}@example.com", gatehouse::domain::random_base62(8).to_lowercase());
        accounts::create_admin(&mut db.conn(), &pepper(), tenant, &email, None, &Actor::cli()).unwrap().token
    }
}

impl TestApp {
    /// POSTs a form to the token endpoint with Basic credentials.
    pub async fn token_response(&self, client_id: &str, secret: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url("/oauth2/token")).basic_auth(client_id, Some(secret)).form(form).send().await.unwrap()
    }

    /// An access token for the client (all grantable scopes unless `scope` is given).
    pub async fn access_token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self.token_response(client_id, secret, &form).await;
        assert_eq!(r.status(), 200, "token request failed");
        let body: serde_json::Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn get_with(&self, path: &str, bearer: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(bearer).send().await.unwrap()
    }
}
