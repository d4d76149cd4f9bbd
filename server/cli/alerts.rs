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
    /// Silence a rule, an object (a worker, pool or tenant id, an IP, a client id) or both for a
    /// while: covered alerts are recorded as silenced and not mailed.
    Silence {
        /// One of: worker_down, pool_down, queue_saturated, error_rate, auth_failures, quota_threshold.
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        object: Option<String>,
        /// How long: 90s, 30m, 2h, 7d.
        #[arg(long = "for", value_parser = parse_duration)]
        duration_s: i64,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        output: Output,
    },
    /// The silences in force.
    Silences {
        #[command(flatten)]
        output: Output,
    },
    /// End a silence (sil_…).
    Unsilence {
        id: String,
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
        AlertsCommand::Silence { rule, object, duration_s, reason, output } => {
            let mut conn = connect_current(config)?;
            let silence = svc::add_silence(&mut conn, &svc::SilenceRequest { rule, object, duration_s, reason }, &Actor::cli())?;
            if output.json {
                return print_json(&silence);
            }
            println!("{} until {}", silence.id, silence.until.to_rfc3339());
            Ok(())
        }
        AlertsCommand::Silences { output } => {
            let mut conn = connect_current(config)?;
            let list = svc::list_silences(&mut conn)?;
            if output.json {
                return print_json(&list);
            }
            for s in list {
                let (rule, object) = (s.rule.as_deref().unwrap_or("*"), s.object.as_deref().unwrap_or("*"));
                println!("{:<27} {:<16} {:<28} until {}  {}", s.id, rule, object, s.until.to_rfc3339(), s.reason);
            }
            Ok(())
        }
        AlertsCommand::Unsilence { id, output } => {
            let mut conn = connect_current(config)?;
            svc::remove_silence(&mut conn, &id, &Actor::cli())?;
            if output.json {
                return print_json(&serde_json::json!({ "removed": id }));
            }
            println!("removed {id}");
            Ok(())
        }
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

/// `90s`, `30m`, `2h`, `7d` (a bare number is seconds) → seconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 30m, 2h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit `{other}`: use s, m, h or d")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
