//! `gatehouse client create`, `gatehouse api-key create`, `gatehouse admin create`,
//! `gatehouse signing-key list|rotate`: scripting mirrors of the management API.

use clap::Subcommand;

use super::{CliError, Output, connect_current, print_json, tenant::resolve};
use crate::auth::seal::MasterKey;
use crate::auth::secrets::Pepper;
use crate::config::Config;
use crate::db::signing_keys::{self, SigningKeyView};
use crate::service::api_keys::{self, CreateApiKeyRequest};
use crate::service::clients::{self, CreateClientRequest};
use crate::service::{Actor, accounts};

fn split_scopes(scopes: &str) -> Vec<String> {
    scopes.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn pepper(config: &Config) -> Result<Pepper, CliError> {
    config.require_auth_secrets()?;
    Ok(Pepper::new(&config.auth.pepper))
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an OAuth2 client; prints client_id and client_secret (shown once).
    Create {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Space- or comma-separated scopes, e.g. "chat:completions models:read".
        #[arg(long)]
        scopes: String,
        /// Access-token lifetime in seconds (300..3600).
        #[arg(long)]
        token_ttl: Option<i32>,
        /// CIDR the client may authenticate from (repeatable).
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; prints the key (shown once).
    Create {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        scopes: String,
        /// live (default) or test.
        #[arg(long)]
        environment: Option<String>,
        /// Days until the key expires (max 365).
        #[arg(long)]
        expires_in_days: Option<i64>,
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a tenant admin who can sign in to the dashboard, and a management-API token
    /// confined to that tenant. Without --password-stdin a password is generated and printed once.
    Create {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// Read the admin's dashboard password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Disable a tenant admin: their dashboard sessions end at once.
    Disable {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The admin's id (adm_…).
        #[arg(long)]
        admin: String,
        #[command(flatten)]
        output: Output,
    },
}

/// `gatehouse admin create --json`: the admin, its token and, when generated, its password.
#[derive(serde::Serialize)]
struct CreatedAdmin {
    #[serde(flatten)]
    issued: accounts::IssuedToken,
    /// The generated dashboard password, shown once (absent with --password-stdin).
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// List signing keys and their states.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Rotate now: the published next key signs, the active key retires after an hour.
    Rotate {
        #[command(flatten)]
        output: Output,
    },
}

pub fn run_client(config: &Config, command: ClientCommand) -> Result<(), CliError> {
    let ClientCommand::Create { tenant, name, scopes, token_ttl, allow_ip, output } = command;
    let pepper = pepper(config)?;
    let mut conn = connect_current(config)?;
    let tenant = resolve(&mut conn, &tenant)?.id();
    let req = CreateClientRequest {
        name,
        scopes: split_scopes(&scopes),
        ip_allowlist: allow_ip,
        token_ttl_seconds: token_ttl,
        secret_expires_at: None,
    };
    let created = clients::create(&mut conn, &pepper, &tenant, &req, &Actor::cli())?;
    if output.json {
        return print_json(&created);
    }
    println!("client_id:     {}", created.client.client_id);
    println!("client_secret: {}", created.client_secret);
    println!("scopes:        {}", created.client.scopes.join(" "));
    println!("(the secret is shown once; store it now)");
    Ok(())
}

pub fn run_api_key(config: &Config, command: ApiKeyCommand) -> Result<(), CliError> {
    let ApiKeyCommand::Create { tenant, name, scopes, environment, expires_in_days, allow_ip, output } = command;
    let pepper = pepper(config)?;
    let mut conn = connect_current(config)?;
    let tenant = resolve(&mut conn, &tenant)?.id();
    let req = CreateApiKeyRequest { name, scopes: split_scopes(&scopes), environment, expires_in_days, ip_allowlist: allow_ip };
    let created = api_keys::create(&mut conn, &pepper, &tenant, &req, &Actor::cli())?;
    if output.json {
        return print_json(&created);
    }
    println!("key:    {}", created.key);
    println!("id:     {}", created.api_key.id);
    println!("scopes: {}", created.api_key.scopes.join(" "));
    println!("(the key is shown once; store it now)");
    Ok(())
}

pub fn run_admin(config: &Config, command: AdminCommand) -> Result<(), CliError> {
    let (tenant, email, password_stdin, output) = match command {
        AdminCommand::Create { tenant, email, password_stdin, output } => (tenant, email, password_stdin, output),
        AdminCommand::Disable { tenant, admin, output } => {
            let mut conn = connect_current(config)?;
            let tenant = resolve(&mut conn, &tenant)?.id();
            let ended = accounts::disable_admin(&mut conn, &tenant, &admin, &Actor::cli())?;
            if output.json {
                return print_json(&serde_json::json!({ "admin_id": admin, "disabled": true, "sessions_ended": ended }));
            }
            println!("disabled {admin}; {ended} dashboard session(s) ended");
            return Ok(());
        }
    };
    let email = super::operator::validate_email(&email)?.to_owned();
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (crate::auth::password::generate(), true)
    };
    let hash = crate::auth::password::hash(&password).map_err(|e| CliError::Usage(format!("--password-stdin: {e}")))?;
    let pepper = pepper(config)?;
    let mut conn = connect_current(config)?;
    let tenant = resolve(&mut conn, &tenant)?.id();
    let issued = accounts::create_admin(&mut conn, &pepper, &tenant, &email, Some(&hash), &Actor::cli())?;
    let created = CreatedAdmin { issued, password: generated.then_some(password) };
    if output.json {
        return print_json(&created);
    }
    println!("admin:    {} ({})", email, created.issued.admin_id.as_deref().unwrap_or_default());
    if let Some(password) = &created.password {
        println!("password: {password}");
        println!("(dashboard sign-in at /admin/login; shown once)");
    }
    println!("token:    {}", created.issued.token);
    println!("(use it as `Authorization: Bearer …` on /api/v1; shown once)");
    Ok(())
}

pub fn run_signing_key(config: &Config, command: SigningKeyCommand) -> Result<(), CliError> {
    config.require_auth_secrets()?;
    let master = MasterKey::from_config(&config.auth.master_key).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut conn = connect_current(config)?;
    let output = match command {
        SigningKeyCommand::List { output } => output,
        SigningKeyCommand::Rotate { output } => {
            let changes = crate::auth::rotation::rotate(&mut conn, &master, config.auth.signing_alg, chrono::Utc::now())?;
            crate::db::audit::insert(
                &mut conn,
                &Actor::cli().event("signing_key.rotate").details(serde_json::to_value(&changes).unwrap_or_default()),
            )?;
            if !output.json {
                println!("rotated: now signing with {}", changes.activated.join(", "));
            }
            output
        }
    };
    let keys: Vec<SigningKeyView> = signing_keys::list(&mut conn)?.into_iter().map(Into::into).collect();
    if output.json {
        return print_json(&keys);
    }
    for k in keys {
        println!("{:<44} {:<6} {:<9} created {}", k.kid, k.alg, k.state, k.created_at.to_rfc3339());
    }
    Ok(())
}
