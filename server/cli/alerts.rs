//! `gatehouse alerts test|list` and `gatehouse alerts recipient add|list|remove`.

use clap::{Args, Subcommand};
use lettre::AsyncTransport;
use lettre::message::Mailbox;

use super::{CliError, Output, connect_current, print_json};
use crate::actors::alert_mailer::mail;
use crate::config::Config;
use crate::service::Actor;
use crate::service::alerts::{self as svc, RecipientScope};

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send a test mail through the configured SMTP server (alerts.smtp_url).
    Test {
        /// The address to send it to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        output: Output,
    },
    /// The latest alerts, newest first: firing, resolved, pending and failed.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Who receives alerts.
    Recipient {
        #[command(subcommand)]
        command: RecipientCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipientCommand {
    /// Add an address: an on-call address for the platform, or a tenant's recipient.
    Add {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        output: Output,
    },
    /// List every recipient (on-call ones have no tenant).
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Remove a recipient by id (rcp_…).
    Remove {
        id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// Platform alerts (workers, pools), and tenant alerts for tenants without recipients.
    #[arg(long)]
    oncall: bool,
    /// Only this tenant's alerts (id or slug).
    #[arg(long)]
    tenant: Option<String>,
}

pub fn run(config: &Config, command: AlertsCommand) -> Result<(), CliError> {
    match command {
        AlertsCommand::Test { to, output } => send_test(config, &to, output),
        AlertsCommand::List { limit, output } => {
            let mut conn = connect_current(config)?;
            let alerts = svc::list_alerts(&mut conn, None, limit)?;
            if output.json {
                return print_json(&alerts);
            }
            for a in alerts {
                let status = if a.sent_at.is_some() {
                    "sent"
                } else if a.failed_at.is_some() {
                    "failed"
                } else {
                    "pending"
                };
                let summary = a.payload.get("summary").and_then(|v| v.as_str()).unwrap_or(&a.kind).to_owned();
                println!("{:<8} {:<8} {:<25} {}", status, a.severity, a.created_at.format("%Y-%m-%d %H:%M:%S"), summary);
            }
            Ok(())
        }
        AlertsCommand::Recipient { command } => run_recipient(config, command),
    }
}

fn run_recipient(config: &Config, command: RecipientCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    match command {
        RecipientCommand::Add { email, scope, output } => {
            let scope = match scope.tenant {
                Some(t) => RecipientScope::Tenant(super::tenant::resolve(&mut conn, &t)?.id()),
                None => RecipientScope::Oncall,
            };
            let added = svc::add_recipient(&mut conn, &email, &scope, &Actor::cli())?;
            if output.json {
                print_json(&added)
            } else {
                println!("added {} ({})", added.email, added.tenant_id.as_deref().unwrap_or("on-call"));
                Ok(())
            }
        }
        RecipientCommand::List { output } => {
            let list = svc::list_recipients(&mut conn, None)?;
            if output.json {
                return print_json(&list);
            }
            for r in list {
                println!("{:<27} {:<27} {}", r.id, r.tenant_id.as_deref().unwrap_or("on-call"), r.email);
            }
            Ok(())
        }
        RecipientCommand::Remove { id, output } => {
            svc::remove_recipient(&mut conn, None, &id, &Actor::cli())?;
            if output.json {
                return print_json(&serde_json::json!({ "removed": id }));
            }
            println!("removed {id}");
            Ok(())
        }
    }
}

fn send_test(config: &Config, to: &str, output: Output) -> Result<(), CliError> {
    if config.alerts.smtp_url.is_empty() {
        return Err(CliError::Usage("alerts.smtp_url is not set: there is no SMTP server to send through".into()));
    }
    let to: Mailbox = to.parse().map_err(|e| CliError::Usage(format!("--to: {e}")))?;
    let from: Mailbox = config.alerts.from.parse().map_err(|e| CliError::Usage(format!("alerts.from: {e}")))?;
    let link = if config.alerts.dashboard_url.is_empty() { config.issuer() } else { config.alerts.dashboard_url.clone() };
    let message = mail::message(&from, &to, &mail::test_mail(&link, chrono::Utc::now())).map_err(CliError::Runtime)?;
    let transport = mail::transport(&config.alerts).map_err(CliError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::runtime)?;
    let response = runtime.block_on(transport.send(message)).map_err(|e| CliError::runtime(format!("the test mail was not sent: {e}")))?;
    let reply: Vec<String> = response.message().map(str::to_owned).collect();
    if output.json {
        print_json(&serde_json::json!({ "sent": true, "to": to.to_string(), "smtp_reply": reply.join(" ") }))
    } else {
        println!("test mail sent to {to} ({})", reply.join(" "));
        Ok(())
    }
}
