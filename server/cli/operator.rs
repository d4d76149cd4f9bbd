//! `gatehouse operator create`: platform operator accounts (email + argon2id password).

use std::io::BufRead;

use clap::Subcommand;
use diesel::Connection;
use serde::Serialize;

use super::{CliError, Output, connect_current, print_json};
use crate::auth::password;
use crate::config::Config;
use crate::db::DbError;
use crate::db::audit::{self, ActorKind, AuditEvent, Outcome};
use crate::db::operators::{self, NewOperator};
use crate::domain::OperatorId;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an operator account. Without --password-stdin a password is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Management-API tokens for an operator.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a management-API token (shown once) for the operator with this email.
    Create {
        #[arg(long)]
        email: String,
        /// A label for the token, e.g. "ci".
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Serialize)]
struct Created {
    id: String,
    email: String,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Present only when Gatehouse generated the password; it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

pub fn run(config: &Config, command: OperatorCommand) -> Result<(), CliError> {
    match command {
        OperatorCommand::Token { command: TokenCommand::Create { email, name, output } } => {
            config.require_auth_secrets()?;
            let pepper = crate::auth::secrets::Pepper::new(&config.auth.pepper);
            let mut conn = connect_current(config)?;
            let issued =
                crate::service::accounts::create_operator_token(&mut conn, &pepper, email.trim(), &name, &crate::service::Actor::cli())?;
            if output.json {
                print_json(&issued)
            } else {
                println!("token: {}\n(use it as `Authorization: Bearer …` on /api/v1; shown once)", issued.token);
                Ok(())
            }
        }
        OperatorCommand::Create { email, password_stdin, output } => {
            let email = validate_email(&email)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| CliError::runtime(format!("cannot read the password from stdin: {e}")))?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (password::generate(), true)
            };
            let hash = password::hash(&password).map_err(|e| CliError::Usage(format!("password: {e}")))?;
            let mut conn = connect_current(config)?;
            let id = OperatorId::generate();
            let created = conn
                .transaction(|conn| {
                    let op = operators::insert(conn, &NewOperator { id: id.as_str(), email, password_hash: &hash })?;
                    audit::insert(
                        conn,
                        &AuditEvent::new(ActorKind::System, "operator.create", Outcome::Success)
                            .actor("cli")
                            .target("operator", id.as_str()),
                    )?;
                    diesel::QueryResult::Ok(op)
                })
                .map_err(|e| match DbError::from(e) {
                    DbError::Conflict(_) => CliError::runtime(format!("an operator with email `{email}` already exists")),
                    other => other.into(),
                })?;
            let out =
                Created { id: created.id, email: created.email, created_at: created.created_at, password: generated.then_some(password) };
            if output.json {
                print_json(&out)
            } else {
                println!("created operator {} ({})", out.email, out.id);
                if let Some(pw) = &out.password {
                    println!("password: {pw}\n(shown once; store it in your password manager)");
                }
                Ok(())
            }
        }
    }
}

pub fn validate_email(email: &str) -> Result<&str, CliError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.matches('@').count() == 1;
    if valid { Ok(email) } else { Err(CliError::Usage(format!("--email: `{email}` is not an email address"))) }
}
