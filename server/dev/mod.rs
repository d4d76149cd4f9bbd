//! `gatehouse dev`: the whole platform on one machine for development and demos. Without
//! `DATABASE_URL` it provisions a private PostgreSQL cluster under the data folder (see
//! `cluster`), migrates, seeds a demo tenant, an operator with a management token, an OAuth2
//! client and an API key, starts worker simulators as the demo pools, writes a sample audio clip
//! (`sample`), serves, prints what it made (`banner`), and stops the cluster on exit. A second
//! start reuses everything.

mod banner;
pub mod cluster;
pub mod sample;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};

use crate::auth::password;
use crate::auth::seal::MasterKey;
use crate::auth::secrets::Pepper;
use crate::config::{Config, Secret};
use crate::db::api_keys as db_api_keys;
use crate::db::audit::{self, ActorKind, AuditEvent, Outcome};
use crate::db::{admins, clients, migrations, operators, partitions, redact_url, tenants};
use crate::domain::{ClientId, PoolKind, Slug, TenantId, WorkerState};
use crate::error::CliError;
use crate::service::api_keys::CreateApiKeyRequest;
use crate::service::clients::CreateClientRequest;
use crate::service::tenants::CreateTenantRequest;
use crate::service::workers::{AddWorkerRequest, CreatePoolRequest};
use crate::service::{self, Actor};
use crate::simulator::llm::{Simulator, SimulatorConfig};
use crate::startup::Application;
use cluster::PrivateCluster;

/// Database created in the private cluster.
pub const DEV_DATABASE: &str = "gatehouse";
pub const DEMO_TENANT_SLUG: &str = "demo";
pub const DEV_OPERATOR_EMAIL: &str = "admin@gatehouse.local";

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Folder for the private PostgreSQL cluster and dev credentials.
    #[arg(long, default_value = "./.gatehouse", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
}

/// Demo credentials, kept (mode 0600) in the data folder so every start can print them: the
/// database keeps only hashes. The operator's password is kept for the dashboard; the management
/// API takes the management token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub email: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    pub api_key: String,
    /// Absent from files written before dev made one.
    #[serde(default)]
    pub management_token: String,
}

/// Secrets `gatehouse dev` generates once and keeps in `<data-dir>/dev.toml`, a config file other
/// `gatehouse` commands can use while dev runs (`GATEHOUSE_CONFIG=<data-dir>/dev.toml`).
fn ensure_dev_config(config: &mut Config, data_dir: &Path, private_url: Option<&str>) -> Result<PathBuf, CliError> {
    let path = data_dir.join("dev.toml");
    let saved: Option<toml::Table> = fs::read_to_string(&path).ok().and_then(|t| t.parse().ok());
    let saved_auth =
        |key: &str| saved.as_ref().and_then(|t| t.get("auth")).and_then(|a| a.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
    if config.auth.master_key.is_empty() {
        config.auth.master_key = Secret::new(saved_auth("master_key").unwrap_or_else(MasterKey::generate_encoded));
    }
    if config.auth.pepper.is_empty() {
        config.auth.pepper = Secret::new(saved_auth("pepper").unwrap_or_else(|| crate::domain::random_base62(48)));
    }
    let mut text = String::from("# Written by `gatehouse dev`: development secrets. Do not use in production.\n");
    if let Some(url) = private_url {
        text.push_str(&format!("[database]\nurl = {}\n", toml::Value::String(url.to_owned())));
    }
    text.push_str(&format!(
        "[auth]\nmaster_key = {}\npepper = {}\n",
        toml::Value::String(config.auth.master_key.expose().to_owned()),
        toml::Value::String(config.auth.pepper.expose().to_owned()),
    ));
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

pub fn run(mut config: Config, args: DevArgs) -> Result<(), CliError> {
    config.server.listen = args.listen.clone();
    config.validate()?;
    fs::create_dir_all(&args.data_dir)
        .map_err(|e| CliError::runtime(format!("cannot create data folder {}: {e}", args.data_dir.display())))?;
    let data_dir =
        fs::canonicalize(&args.data_dir).map_err(|e| CliError::runtime(format!("cannot resolve {}: {e}", args.data_dir.display())))?;

    // A URL pointing at our own private cluster (e.g. from an exported dev.toml) is not "external".
    let cluster = PrivateCluster::new(&data_dir);
    let private_url = cluster.as_ref().ok().map(|c| c.url(DEV_DATABASE));
    let external = !config.database.url.is_empty() && Some(config.database.url.expose()) != private_url.as_deref();
    // Declared before the server so it is dropped (and the cluster stopped) after it.
    let mut running = None;
    if external {
        eprintln!("using the database at {} (DATABASE_URL); no private cluster", redact_url(config.database.url.expose()));
    } else {
        let mut c = cluster.map_err(CliError::runtime)?;
        if c.ensure_initialized().map_err(CliError::runtime)? {
            eprintln!("created a private PostgreSQL cluster in {}", c.pgdata().display());
        }
        c.start().map_err(CliError::runtime)?;
        c.create_database_if_missing(DEV_DATABASE).map_err(CliError::runtime)?;
        config.database.url = Secret::new(c.url(DEV_DATABASE));
        running = Some(c);
    }
    let own_url = (!external).then(|| config.database.url.expose().to_owned());
    let config_path = ensure_dev_config(&mut config, &data_dir, own_url.as_deref())?;
    if config.alignment.jobs_dir == crate::config::AlignmentConfig::default().jobs_dir {
        config.alignment.jobs_dir = data_dir.join("jobs");
    }
    if config.usage.journal_dir == crate::config::UsageConfig::default().journal_dir {
        config.usage.journal_dir = data_dir.join("usage-journal");
    }
    config.validate()?;

    let url = config.database_url()?.to_owned();
    let mut conn = PgConnection::establish(&url).map_err(|e| CliError::runtime(format!("cannot connect to {}: {e}", redact_url(&url))))?;
    migrations::run_pending(&mut conn)?;
    partitions::maintain(&mut conn, chrono::Utc::now(), &config.retention)?;
    let seeded = seed(&mut conn, &data_dir, &Pepper::new(&config.auth.pepper))?;
    drop(conn);

    let sample_path = sample::write(&data_dir).map_err(|e| CliError::runtime(format!("{e:#}")))?;

    let master = MasterKey::from_config(&config.auth.master_key).map_err(|e| CliError::Usage(e.to_string()))?;
    let result = actix_rt::System::new().block_on(async move {
        let simulators = start_demo_workers(&url, &master)?;
        let app = Application::build(config).await?;
        let base = app.base_url(host_of(&args.listen));
        let info = banner::DevInfo { base, seeded: &seeded, config_path, sample_path, workers: &simulators };
        let env_path = data_dir.join(banner::ENV_FILE);
        write_private(&env_path, banner::env_file(&info).as_bytes()).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let text = banner::render(&info, &env_path);
        let probe = info.base.clone();
        actix_rt::spawn(async move {
            banner::wait_until_answering(&probe, std::time::Duration::from_secs(30)).await;
            banner::print(&text);
        });
        app.run_until_stopped().await
    });
    drop(running);
    result.map_err(CliError::from)
}

/// The model the demo pool serves.
pub const DEMO_MODEL: &str = "Qwen/Qwen2.5-7B-Instruct";
/// The model the demo aligner pool serves.
pub const DEMO_ALIGNER_MODEL: &str = "Qwen/Qwen3-ForcedAligner-0.6B";

/// Ports of the demo worker simulators.
pub struct DemoWorkers {
    pub llm: Vec<u16>,
    pub aligner: u16,
}

/// Starts two LLM worker simulators and one aligner simulator on free ports and points the
/// `demo` and `demo-aligner` pools at them (replacing the workers of earlier runs, whose ports
/// are gone).
fn start_demo_workers(url: &str, master: &MasterKey) -> anyhow::Result<DemoWorkers> {
    let mut llm = Vec::new();
    for _ in 0..2 {
        let started = Simulator::start(SimulatorConfig::llm("127.0.0.1:0"))?;
        llm.push(started.port);
        actix_rt::spawn(started.server);
    }
    let started = Simulator::start(SimulatorConfig::aligner("127.0.0.1:0"))?;
    let aligner = started.port;
    actix_rt::spawn(started.server);
    let mut conn = PgConnection::establish(url)?;
    demo_pool(&mut conn, master, "demo", PoolKind::Llm, DEMO_MODEL, &llm, 16)?;
    demo_pool(&mut conn, master, "demo-aligner", PoolKind::Aligner, DEMO_ALIGNER_MODEL, &[aligner], 1)?;
    Ok(DemoWorkers { llm, aligner })
}

fn demo_pool(
    conn: &mut PgConnection,
    master: &MasterKey,
    name: &str,
    kind: PoolKind,
    model: &str,
    ports: &[u16],
    slots: i32,
) -> anyhow::Result<()> {
    let actor = Actor { id: "dev".into(), ..Actor::cli() };
    let pools = service::workers::list_pools(conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    match pools.iter().find(|p| p.name == name) {
        Some(pool) => {
            for w in &pool.workers {
                service::workers::set_worker_state(conn, &w.id, WorkerState::Removed, &actor).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        None => {
            let req = CreatePoolRequest::new(name, kind, vec![model.into()]);
            service::workers::create_pool(conn, &req, &actor).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    for port in ports {
        let req = AddWorkerRequest { base_url: format!("http://127.0.0.1:{port}"), api_key: None, slots: Some(slots) };
        service::workers::add_worker(conn, master, name, &req, &actor).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// What `seed` made or found.
#[derive(Debug)]
pub struct Seeded {
    pub credentials: DevCredentials,
    pub tenant_id: String,
    pub tenant_slug: String,
}

/// Ensures the demo tenant, the dev operator, a demo OAuth2 client and a demo API key exist, and
/// that the saved credentials still work. Idempotent.
pub fn seed(conn: &mut PgConnection, data_dir: &Path, pepper: &Pepper) -> Result<Seeded, CliError> {
    let slug = Slug::parse(DEMO_TENANT_SLUG).map_err(CliError::runtime)?;
    let tenant = match tenants::find_by_slug(conn, &slug) {
        Ok(t) => t.id(),
        Err(diesel::result::Error::NotFound) => {
            let req = CreateTenantRequest { name: "Demo".into(), slug: Some(slug.to_string()), time_zone: None, plan: None };
            TenantId::from_trusted(service::tenants::create(conn, &req, &Actor::cli())?.id)
        }
        Err(e) => return Err(e.into()),
    };

    let file = data_dir.join("dev-credentials.json");
    let saved: Option<DevCredentials> = fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let existing = match operators::find_by_email(conn, DEV_OPERATOR_EMAIL) {
        Ok(op) => Some(op),
        Err(diesel::result::Error::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let mut creds = saved.clone().unwrap_or_else(|| DevCredentials {
        email: DEV_OPERATOR_EMAIL.into(),
        password: String::new(),
        client_id: String::new(),
        client_secret: String::new(),
        api_key: String::new(),
        management_token: String::new(),
    });
    let mut changed = saved.is_none();

    let password_ok =
        existing.as_ref().is_some_and(|op| !creds.password.is_empty() && password::verify(&creds.password, &op.password_hash));
    if !password_ok {
        // First start, or the saved login no longer matches (e.g. a reused DATABASE_URL).
        creds.password = password::generate();
        let hash = password::hash(&creds.password).map_err(CliError::runtime)?;
        conn.transaction(|conn| {
            let id = match &existing {
                Some(op) => {
                    operators::update_password(conn, &op.id(), &hash)?;
                    op.id.clone()
                }
                None => {
                    let id = crate::domain::OperatorId::generate();
                    operators::insert(conn, &operators::NewOperator { id: id.as_str(), email: &creds.email, password_hash: &hash })?;
                    id.to_string()
                }
            };
            audit::insert(
                conn,
                &AuditEvent::new(ActorKind::System, "operator.dev_login_set", Outcome::Success).actor("dev").target("operator", id),
            )
        })?;
        changed = true;
    }

    let client_ok = ClientId::parse(&creds.client_id).is_ok_and(|id| {
        clients::find(conn, &tenant, &id).is_ok_and(|c| c.disabled_at.is_none() && pepper.verify(&creds.client_secret, &c.secret_hash))
    });
    if !client_ok {
        let req = CreateClientRequest {
            name: "demo client".into(),
            scopes: vec!["chat:completions".into(), "audio:align".into(), "models:read".into()],
            ip_allowlist: Vec::new(),
            token_ttl_seconds: None,
            secret_expires_at: None,
        };
        let created = service::clients::create(conn, pepper, &tenant, &req, &Actor::cli())?;
        creds.client_id = created.client.client_id;
        creds.client_secret = created.client_secret;
        changed = true;
    }

    let key_ok = crate::auth::secrets::parse_api_key(&creds.api_key).is_some_and(|parsed| {
        db_api_keys::find(conn, &tenant, parsed.id).is_ok_and(|k| k.revoked_at.is_none() && pepper.verify(&creds.api_key, &k.secret_hash))
    });
    if !key_ok {
        let req = CreateApiKeyRequest {
            name: "demo key".into(),
            scopes: vec!["chat:completions".into(), "audio:align".into(), "models:read".into()],
            environment: Some("test".into()),
            expires_in_days: None,
            ip_allowlist: Vec::new(),
        };
        creds.api_key = service::api_keys::create(conn, pepper, &tenant, &req, &Actor::cli())?.key;
        changed = true;
    }

    let token_ok = crate::auth::secrets::parse_management_token(&creds.management_token).is_some_and(|parsed| {
        admins::find_token_for_authentication(conn, parsed.id).is_ok_and(|record| {
            record.is_some_and(|r| {
                r.usable && matches!(r.owner, admins::TokenOwner::Operator(_)) && pepper.verify(&creds.management_token, &r.secret_hash)
            })
        })
    });
    if !token_ok {
        creds.management_token = service::accounts::create_operator_token(conn, pepper, DEV_OPERATOR_EMAIL, "dev", &Actor::cli())?.token;
        changed = true;
    }
    if changed {
        let text = serde_json::to_vec_pretty(&creds).map_err(CliError::runtime)?;
        write_private(&file, &text)?;
    }
    Ok(Seeded { credentials: creds, tenant_id: tenant.to_string(), tenant_slug: slug.to_string() })
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn host_of(listen: &str) -> &str {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", _)) | Some(("[::]", _)) => "127.0.0.1",
        Some((host, _)) => host,
        None => "127.0.0.1",
    }
}
