//! `gatehouse dev`: the whole platform on one machine for development and demos. Without
//! `DATABASE_URL` it provisions a private PostgreSQL cluster under the data folder (see
//! `cluster`), migrates, seeds a demo tenant and an operator login, serves, and stops the cluster
//! on exit. A second start reuses everything.

pub mod cluster;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use diesel::{Connection, PgConnection};
use serde::{Deserialize, Serialize};

use crate::auth::password;
use crate::cli::CliError;
use crate::config::{Config, Secret};
use crate::db::audit::{self, ActorKind, AuditEvent, Outcome};
use crate::db::{migrations, operators, partitions, redact_url, tenants};
use crate::domain::{Slug, TimeZone};
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

/// The dev operator login, kept (mode 0600) in the data folder so every start can print it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevLogin {
    pub email: String,
    pub password: String,
}

pub fn run(mut config: Config, args: DevArgs) -> Result<(), CliError> {
    config.server.listen = args.listen.clone();
    config.validate()?;
    fs::create_dir_all(&args.data_dir).map_err(|e| {
        CliError::runtime(format!(
            "cannot create data folder {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let data_dir = fs::canonicalize(&args.data_dir).map_err(|e| {
        CliError::runtime(format!("cannot resolve {}: {e}", args.data_dir.display()))
    })?;

    // Declared before the server so it is dropped (and the cluster stopped) after it.
    let mut cluster = None;
    if config.database.url.is_empty() {
        let mut c = PrivateCluster::new(&data_dir).map_err(CliError::runtime)?;
        if c.ensure_initialized().map_err(CliError::runtime)? {
            eprintln!(
                "created a private PostgreSQL cluster in {}",
                c.pgdata().display()
            );
        }
        c.start().map_err(CliError::runtime)?;
        c.create_database_if_missing(DEV_DATABASE)
            .map_err(CliError::runtime)?;
        config.database.url = Secret::new(c.url(DEV_DATABASE));
        cluster = Some(c);
    } else {
        eprintln!(
            "using the database at {} (DATABASE_URL); no private cluster",
            redact_url(config.database.url.expose())
        );
    }

    let url = config.database_url()?.to_owned();
    let mut conn = PgConnection::establish(&url)
        .map_err(|e| CliError::runtime(format!("cannot connect to {}: {e}", redact_url(&url))))?;
    migrations::run_pending(&mut conn)?;
    partitions::maintain(&mut conn, chrono::Utc::now(), &config.retention)?;
    let seeded = seed(&mut conn, &data_dir)?;
    drop(conn);

    let result = actix_rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        let base = app.base_url(host_of(&args.listen));
        print_banner(&base, &seeded, &url);
        app.run_until_stopped().await
    });
    drop(cluster);
    result.map_err(CliError::from)
}

/// What `seed` made or found.
#[derive(Debug)]
pub struct Seeded {
    pub login: DevLogin,
    pub tenant_id: String,
    pub tenant_slug: String,
}

/// Ensures the demo tenant and the dev operator exist. Idempotent.
pub fn seed(conn: &mut PgConnection, data_dir: &Path) -> Result<Seeded, CliError> {
    let slug = Slug::parse(DEMO_TENANT_SLUG).map_err(CliError::runtime)?;
    let tenant = match tenants::find_by_slug(conn, &slug) {
        Ok(t) => t.id().to_string(),
        Err(diesel::result::Error::NotFound) => {
            let tz = TimeZone::parse("UTC").map_err(CliError::runtime)?;
            crate::cli::tenant::create(conn, "Demo", &slug, tz, "default")?.id
        }
        Err(e) => return Err(e.into()),
    };

    let login_file = data_dir.join("dev-login.json");
    let saved: Option<DevLogin> = fs::read(&login_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let existing = match operators::find_by_email(conn, DEV_OPERATOR_EMAIL) {
        Ok(op) => Some(op),
        Err(diesel::result::Error::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let login = match (existing, saved) {
        (Some(op), Some(saved)) if password::verify(&saved.password, &op.password_hash) => saved,
        (existing, _) => {
            // First start, or the saved login no longer matches (e.g. a reused DATABASE_URL):
            // set a fresh random password and save it.
            let login = DevLogin {
                email: DEV_OPERATOR_EMAIL.into(),
                password: password::generate(),
            };
            let hash = password::hash(&login.password).map_err(CliError::runtime)?;
            conn.transaction(|conn| {
                let id = match existing {
                    Some(op) => {
                        operators::update_password(conn, &op.id(), &hash)?;
                        op.id
                    }
                    None => {
                        let id = crate::domain::OperatorId::generate();
                        operators::insert(
                            conn,
                            &operators::NewOperator {
                                id: id.as_str(),
                                email: &login.email,
                                password_hash: &hash,
                            },
                        )?;
                        id.to_string()
                    }
                };
                audit::insert(
                    conn,
                    &AuditEvent::new(
                        ActorKind::System,
                        "operator.dev_login_set",
                        Outcome::Success,
                    )
                    .actor("dev")
                    .target("operator", id),
                )
            })?;
            save_login(&login_file, &login)?;
            login
        }
    };
    Ok(Seeded {
        login,
        tenant_id: tenant,
        tenant_slug: slug.to_string(),
    })
}

fn save_login(path: &Path, login: &DevLogin) -> Result<(), CliError> {
    let text = serde_json::to_vec_pretty(login).map_err(CliError::runtime)?;
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(&text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn host_of(listen: &str) -> &str {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", _)) | Some(("[::]", _)) => "127.0.0.1",
        Some((host, _)) => host,
        None => "127.0.0.1",
    }
}

fn print_banner(base: &str, seeded: &Seeded, url: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nGatehouse dev is running at {base}\n\
         \n  health:    curl -f {base}/healthz\
         \n  ready:     curl -f {base}/readyz\
         \n  operator:  {email} / {password}\
         \n  tenant:    Demo (slug {slug}, id {tenant})\
         \n  database:  export DATABASE_URL='{url}'   # for other gatehouse commands while dev runs\
         \n\nPress Ctrl-C to stop (the private PostgreSQL stops with it).\n",
        email = seeded.login.email,
        password = seeded.login.password,
        slug = seeded.tenant_slug,
        tenant = seeded.tenant_id,
    );
    let _ = out.flush();
}
