//! `gatehouse ip-rules list|add|remove [--tenant T]` and `gatehouse bans list|lift`.

use clap::Subcommand;

use super::{CliError, Output, connect_current, print_json};
use crate::config::Config;
use crate::domain::TenantId;
use crate::service::Actor;
use crate::service::ip_rules::{self as svc, CreateIpRuleRequest};

#[derive(Debug, Subcommand)]
pub enum IpRulesCommand {
    /// The platform's rules, or a tenant's with --tenant.
    List {
        /// A tenant (id or slug); omitted = the platform's list.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Add a rule: `deny` refuses the network before authentication (a tenant's: refuses its
    /// credentials from there); `allow` keeps a platform network from ever being banned, or (a
    /// tenant's) makes its credentials usable only from its allow networks.
    Add {
        /// A network (203.0.113.0/24, 2001:db8::/48) or one address.
        cidr: String,
        #[arg(long, value_parser = ["deny", "allow"])]
        action: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        output: Output,
    },
    /// Remove a rule by id (ipr_…).
    Remove {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum BansCommand {
    /// Addresses banned now, soonest to end first.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// End an address's ban now (every instance lets it in within edge.sync_ms).
    Lift {
        ip: String,
        #[command(flatten)]
        output: Output,
    },
}

fn scope(conn: &mut diesel::PgConnection, tenant: Option<String>) -> Result<Option<TenantId>, CliError> {
    tenant.map(|t| super::tenant::resolve(conn, &t).map(|t| t.id())).transpose()
}

pub fn run_ip_rules(config: &Config, command: IpRulesCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    match command {
        IpRulesCommand::List { tenant, output } => {
            let scope = scope(&mut conn, tenant)?;
            let rules = svc::list_rules(&mut conn, scope.as_ref())?;
            if output.json {
                return print_json(&rules);
            }
            for r in rules {
                println!("{:<27} {:<6} {:<43} {}", r.id, r.action.as_str(), r.cidr, r.note);
            }
            Ok(())
        }
        IpRulesCommand::Add { cidr, action, tenant, note, output } => {
            let scope = scope(&mut conn, tenant)?;
            let rule = svc::create_rule(&mut conn, scope.as_ref(), &CreateIpRuleRequest { cidr, action, note }, &Actor::cli())?;
            if output.json {
                return print_json(&rule);
            }
            println!("{} {} {}", rule.id, rule.action.as_str(), rule.cidr);
            Ok(())
        }
        IpRulesCommand::Remove { id, tenant, output } => {
            let scope = scope(&mut conn, tenant)?;
            let rule = svc::delete_rule(&mut conn, scope.as_ref(), &id, &Actor::cli())?;
            if output.json {
                return print_json(&rule);
            }
            println!("removed {} ({} {})", rule.id, rule.action.as_str(), rule.cidr);
            Ok(())
        }
    }
}

pub fn run_bans(config: &Config, command: BansCommand) -> Result<(), CliError> {
    let mut conn = connect_current(config)?;
    match command {
        BansCommand::List { output } => {
            let bans = svc::list_bans(&mut conn)?;
            if output.json {
                return print_json(&bans);
            }
            for b in bans {
                println!("{:<40} {:<14} ban {:<3} until {}", b.ip, b.reason, b.level + 1, b.until.to_rfc3339());
            }
            Ok(())
        }
        BansCommand::Lift { ip, output } => {
            let lifted = svc::lift_ban(&mut conn, &ip, &Actor::cli())?;
            if output.json {
                return print_json(&serde_json::json!({ "ip": ip, "lifted": lifted }));
            }
            println!("lifted the ban of {ip}");
            Ok(())
        }
    }
}
